//! The tcp eBPF probe (`tcpprobe`) against real loopback traffic. One end of every
//! connection is a Python peer process (the snooped one); the other end is this test
//! process, which is never snooped.
//!
//! - offline (stdout, exact sums over all periods): application bytes in/out match what
//!   was sent, segments are plausible, srtt and handshake srtt histograms are filled,
//!   receive/send delays reach `proc_flow_perf`; connections established before the probe
//!   started are reported with the right role once they carry traffic; resets sent
//!   (SO_LINGER 0) and received (connect to a closed port) are counted;
//! - under the daemon: an `nft` rule dropping part of the server's segments makes
//!   `retran_packets` rise and raises the `retran_packets` event above `drops_thr`; the
//!   `ebpf_prog` cost table shows the probe's programs; a process outside the snoopers has
//!   no series, appears once added over REST and ages out once removed.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use gala_e2e::ebpf::NftTable;
use gala_e2e::{free_port, poll_until, KillOnDrop, Samples, Sandbox};

use gala_e2e::tcp_peer::{Offline, Peer, Row, ALL_SUBITEMS, META};

/// Number of values counted in a histogram field (`N ub1 c1 ... ubN cN sum max`).
fn hist_count(text: &str) -> u64 {
    let t: Vec<u64> = text
        .split(' ')
        .map(|v| v.parse().expect("histogram number"))
        .collect();
    let n = t[0] as usize;
    t[2 * n]
}

fn hist_total(rows: &[&Row], field: &str) -> u64 {
    rows.iter().map(|r| hist_count(&r[field])).sum()
}

/// Writes `n` bytes to `s` from a thread (the peer reads them meanwhile).
fn write_in_background(mut s: TcpStream, n: usize) -> std::thread::JoinHandle<TcpStream> {
    std::thread::spawn(move || {
        s.write_all(&vec![b'y'; n]).expect("write");
        s
    })
}

fn read_exact(s: &mut TcpStream, n: usize) {
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).expect("read");
}

#[test]
fn bytes_segments_and_rtt_of_both_roles() {
    gala_e2e::require_bpf!();
    let mut peer = Peer::spawn();
    let pid = peer.pid();
    let mut probe = Offline::start(pid, r#""samplePeriod":100"#);

    // The peer serves: it reads 300000 bytes and answers 120000.
    let (to_server, from_server) = (300_000usize, 120_000usize);
    let sport: u16 = peer.cmd("listen 0").parse().expect("port");
    let conn = TcpStream::connect(("127.0.0.1", sport)).expect("connect");
    let idx = peer.cmd(&format!("accept {sport}"));
    let writer = write_in_background(conn, to_server);
    assert_eq!(
        peer.cmd(&format!("recv {idx} {to_server}")),
        to_server.to_string()
    );
    let mut conn = writer.join().expect("writer");
    peer.cmd(&format!("send {idx} {from_server}"));
    read_exact(&mut conn, from_server);

    // The peer is a client: it sends 200000 bytes to our listener.
    let to_us = 200_000usize;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let cport_server = listener.local_addr().expect("addr").port();
    let cidx = peer.cmd(&format!("connect {cport_server}"));
    let (mut accepted, _) = listener.accept().expect("accept");
    peer.cmd(&format!("send {cidx} {to_us}"));
    read_exact(&mut accepted, to_us);

    // Over IPv6 too.
    let listener6 = TcpListener::bind("[::1]:0").expect("bind ::1");
    let port6 = listener6.local_addr().expect("addr").port();
    let idx6 = peer.cmd(&format!("connect6 {port6}"));
    let (mut accepted6, _) = listener6.accept().expect("accept");
    peer.cmd(&format!("send {idx6} 7000"));
    read_exact(&mut accepted6, 7000);

    let rx = probe.wait_sum(pid, "server", sport, "rx_bytes", to_server as u64);
    assert_eq!(rx, to_server as u64, "server rx_bytes = bytes we sent");
    assert_eq!(
        probe.sum(pid, "server", sport, "tx_bytes"),
        from_server as u64
    );
    let tx = probe.wait_sum(pid, "client", cport_server, "tx_bytes", to_us as u64);
    assert_eq!(tx, to_us as u64, "client tx_bytes = bytes it sent");
    assert_eq!(probe.sum(pid, "client", cport_server, "rx_bytes"), 0);

    // Loopback segments are up to 64 KiB (GSO): at least bytes/64Ki, far fewer than bytes.
    let segs_in = probe.sum(pid, "server", sport, "segs_in");
    assert!(
        (to_server as u64 / 65536..=to_server as u64 / 100).contains(&segs_in),
        "server segs_in {segs_in}"
    );
    let segs_out = probe.sum(pid, "client", cport_server, "segs_out");
    assert!(
        (to_us as u64 / 65536..=to_us as u64 / 100).contains(&segs_out),
        "client segs_out {segs_out}"
    );

    let server = probe.tracker(pid, "server", sport);
    let first = server[0];
    assert_eq!(first["comm"], "python3");
    assert_eq!(first["client_ip"], "127.0.0.1");
    assert_eq!(first["server_ip"], "127.0.0.1");
    assert_eq!(first["protocol"], "2");
    assert_eq!(
        first["client_port"], "0",
        "no client port without report_cport"
    );
    assert!(hist_total(&server, "srtt") > 0, "srtt sampled: {first:?}");
    assert!(hist_total(&server, "snd_wnd") > 0);
    assert!(hist_total(&server, "sk_rcvbuf") > 0);
    assert!(hist_total(&server, "rto") > 0);
    assert_eq!(
        hist_total(&server, "syn_srtt"),
        1,
        "one handshake seen by the server"
    );
    assert_eq!(probe.wait_sum(pid, "client", port6, "tx_bytes", 7000), 7000);
    let v6 = probe.tracker(pid, "client", port6)[0];
    assert_eq!(
        (v6["protocol"].as_str(), v6["server_ip"].as_str()),
        ("10", "::1")
    );
    let client = probe.tracker(pid, "client", cport_server);
    assert!(hist_total(&client, "srtt") > 0);
    assert_eq!(
        hist_total(&client, "syn_srtt"),
        0,
        "handshake srtt is server-side"
    );

    // Receive delays of the server (data queued → recv), send delays of both (send → ACK).
    let flow = |role: &str, port: u16| -> Vec<&Row> {
        probe
            .flows
            .iter()
            .filter(|r| {
                r["tgid"] == pid.to_string()
                    && r["role"] == role
                    && r["server_port"] == port.to_string()
            })
            .collect()
    };
    assert!(
        hist_total(&flow("server", sport), "sys_delay") > 0,
        "{:?}",
        probe.flows
    );
    assert!(hist_total(&flow("client", cport_server), "net_delay") > 0);
    assert_eq!(flow("server", sport)[0]["remote_ip"], "127.0.0.1");
    drop(conn);
}

#[test]
fn connections_older_than_the_probe_and_resets() {
    gala_e2e::require_bpf!();
    let mut peer = Peer::spawn();
    let pid = peer.pid();

    // Before the probe: the peer accepts one connection and makes one.
    let sport: u16 = peer.cmd("listen 0").parse().expect("port");
    let mut to_peer = TcpStream::connect(("127.0.0.1", sport)).expect("connect");
    let sidx = peer.cmd(&format!("accept {sport}"));
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let our_port = listener.local_addr().expect("addr").port();
    let cidx = peer.cmd(&format!("connect {our_port}"));
    let (mut from_peer, _) = listener.accept().expect("accept");

    let mut probe = Offline::start(pid, r#""samplePeriod":100"#);
    peer.cmd(&format!("send {sidx} 50000"));
    read_exact(&mut to_peer, 50_000);
    from_peer.write_all(&[b'z'; 30_000]).expect("write");
    assert_eq!(peer.cmd(&format!("recv {cidx} 30000")), "30000");

    let tx = probe.wait_sum(pid, "server", sport, "tx_bytes", 50_000);
    assert_eq!(
        tx, 50_000,
        "the older server connection, found by its listening port"
    );
    let rx = probe.wait_sum(pid, "client", our_port, "rx_bytes", 30_000);
    assert_eq!(rx, 30_000, "the older client connection");

    // A reset sent: the peer closes its client connection with SO_LINGER 0.
    peer.cmd(&format!("rst {cidx}"));
    let mut buf = [0u8; 16];
    let got = from_peer.read(&mut buf);
    assert!(got.is_err(), "we see the reset: {got:?}");
    let sent = probe.wait_sum(pid, "client", our_port, "send_rsts", 1);
    assert_eq!(sent, 1);

    // A reset received: the peer connects to a closed port.
    let closed = free_port();
    assert_eq!(peer.cmd(&format!("refused {closed}")), "refused");
    let received = probe.wait_sum(pid, "client", closed, "receive_rsts", 1);
    assert_eq!(received, 1);
    assert_eq!(probe.sum(pid, "client", closed, "tx_bytes"), 0);
    let _ = to_peer.shutdown(Shutdown::Both);
}

/// An nft table that drops about 10 % of the segments from local port `port` on their way
/// in (with 30 %, retransmissions are lost in a row and RTO backoff stalls the stream for
/// seconds). Dropped at the receiver, as a lossy network would: a drop in the sender's
/// `output` hook fails the transmission itself (`-EPERM`), which kernels before 6.x leave
/// queued for the next send instead of retransmitting.
fn drop_from_port(port: u16) -> NftTable {
    let table = NftTable::new("tcp");
    table.chain("in", "input").rule(
        "in",
        &format!("tcp sport {port} numgen random mod 10 < 1 drop"),
    );
    table
}

/// A sandbox with tcpprobe installed and a running daemon whose records expire after
/// `record_timeout` seconds.
fn daemon(record_timeout: u32) -> (Sandbox, gala_e2e::Daemon) {
    let imdb = format!("max_tables_num = 1024; max_records_num = 1024; max_metrics_num = 64; record_timeout = {record_timeout};");
    // The BPF statistics always on (not sampled): the test counts a program's runs.
    let env = [("GALA_EBPF_STATS", "1")];
    gala_e2e::ebpf::builtin_daemon("tcpprobe", &[("tcp_link.meta", META)], &imdb, &env)
}

fn put_tcp(d: &gala_e2e::Daemon, pid: u32, params: &str) {
    let body = format!(
        r#"{{"cmd":{{"probe":{ALL_SUBITEMS}}},"snoopers":{{"proc_id":[{pid}]}},"params":{{"report_period":5{params}}},"state":"running"}}"#
    );
    let (status, text) = d.put("tcp", &body);
    assert_eq!(status, 200, "{text}");
}

fn value(s: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.find(name, labels)
        .iter()
        .map(|x| x.value.parse::<f64>().unwrap_or(0.0))
        .sum()
}

#[test]
fn retransmissions_raise_the_event_and_the_cost_shows() {
    gala_e2e::require_bpf!();
    let (sb, d) = daemon(60);
    let mut peer = Peer::spawn();
    let pid = peer.pid();
    put_tcp(&d, pid, r#","report_event":1,"drops_thr":10"#);
    d.wait_for(Duration::from_secs(30), "the probe's ebpf_prog rows", |s| {
        !s.find("gala_gopher_ebpf_prog_run_count", &[("probe", "tcp")])
            .is_empty()
    });

    let sport: u16 = peer.cmd("listen 0").parse().expect("port");
    let mut conn = TcpStream::connect(("127.0.0.1", sport)).expect("connect");
    let idx = peer.cmd(&format!("accept {sport}"));
    let _rule = drop_from_port(sport);
    peer.cmd(&format!("stream {idx} 12 65536 0"));
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        while let Ok(n) = conn.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        total
    });

    let (tgid, port) = (pid.to_string(), sport.to_string());
    let labels = [
        ("tgid", tgid.as_str()),
        ("role", "server"),
        ("server_port", port.as_str()),
    ];
    let s = d.wait_for(Duration::from_secs(30), "retran_packets > 10", |s| {
        value(s, "gala_gopher_tcp_link_retran_packets", &labels) > 10.0
    });
    assert!(value(&s, "gala_gopher_tcp_link_tx_bytes", &labels) > 0.0);
    let event = sb.wait_event(Duration::from_secs(15), "retran_packets", |e| {
        e["Resource"]["metric"] == "gala_gopher_tcp_link_retran_packets"
    });
    let id = event["Attributes"]["entity_id"]
        .as_str()
        .expect("entity_id");
    assert!(
        id.ends_with(&format!(
            "_tcp_link_{pid}_server_127.0.0.1_127.0.0.1_{sport}_2"
        )),
        "{id}"
    );
    // The cost table of a period may be printed before its first retransmission.
    d.wait_for(
        Duration::from_secs(15),
        "the retransmit program's runs are counted",
        |s| {
            value(
                s,
                "gala_gopher_ebpf_prog_run_count",
                &[("probe", "tcp"), ("prog", "tcp_retrans")],
            ) > 0.0
        },
    );
    drop(peer);
    let _ = reader.join();
}

#[test]
fn snoopers_added_and_removed_over_rest() {
    gala_e2e::require_bpf!();
    let (_sb, d) = daemon(8);
    // A stand-in snooper (the REST API needs one) and the peer, outside the snoopers.
    let stand_in = KillOnDrop(Command::new("sleep").arg("300").spawn().expect("sleep"));
    let stand_in_pid = stand_in.0.id();
    let mut peer = Peer::spawn();
    let pid = peer.pid();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let idx = peer.cmd(&format!("connect {port}"));
    let (mut accepted, _) = listener.accept().expect("accept");
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while matches!(accepted.read(&mut buf), Ok(n) if n > 0) {}
    });
    peer.cmd(&format!("stream {idx} 120 1000 0.05"));

    put_tcp(&d, stand_in_pid, "");
    let tgid = pid.to_string();
    let series = |s: &Samples| {
        !s.find("gala_gopher_tcp_link_tx_bytes", &[("tgid", &tgid)])
            .is_empty()
    };
    // Two full report periods after the probe reports: nothing of the peer.
    d.wait_for(Duration::from_secs(30), "the probe's ebpf_prog rows", |s| {
        !s.find("gala_gopher_ebpf_prog_run_count", &[("probe", "tcp")])
            .is_empty()
    });
    let until = Instant::now() + Duration::from_secs(11);
    while Instant::now() < until {
        assert!(
            !series(&Samples::parse(&d.scrape())),
            "an unsnooped process has records"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // Added: it appears within a report period (plus the daemon's snooper period).
    let added = Instant::now();
    put_tcp(&d, pid, "");
    let s = d.wait_for(Duration::from_secs(12), "the peer's series", |s| {
        value(s, "gala_gopher_tcp_link_tx_bytes", &[("tgid", &tgid)]) > 0.0
    });
    eprintln!("appeared after {:?}", added.elapsed());
    let role = s.find("gala_gopher_tcp_link_tx_bytes", &[("tgid", &tgid)])[0]
        .labels
        .get("role")
        .cloned();
    assert_eq!(
        role.as_deref(),
        Some("client"),
        "a connection older than the snooping"
    );

    // Removed: its series ages out (record_timeout 8 s).
    put_tcp(&d, stand_in_pid, "");
    poll_until(Duration::from_secs(30), 500, || {
        if series(&Samples::parse(&d.scrape())) {
            Err("the removed process's series is still there".to_owned())
        } else {
            Ok(())
        }
    });
    drop(stand_in);
}

/// Whether the `conntrack` tool (package `conntrack`) runs.
fn conntrack_tool() -> Result<(), String> {
    match Command::new("conntrack").arg("--version").output() {
        Ok(out) if out.status.success() => Ok(()),
        _ => Err("no `conntrack` tool (apt-get install conntrack)".to_owned()),
    }
}

/// `cluster_ip_backend` 1: the peer connects to a "service" address that an nft DNAT rule
/// (as kube-proxy's) translates to our listener; its client tracker shows the backend
/// (our listener's address and port), found in conntrack, not the service address.
#[test]
fn cluster_ip_backend_1_reports_the_dnat_backend() {
    gala_e2e::require_bpf!();
    gala_e2e::require!(conntrack_tool());
    let mut peer = Peer::spawn();
    let pid = peer.pid();
    let mut probe = Offline::start(pid, r#""samplePeriod":100,"clusterIpBackend":1"#);

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let backend = listener.local_addr().expect("addr").port();
    let service = free_port();
    let nat = NftTable::new("dnat");
    gala_e2e::ebpf::nft(&[
        "add",
        "chain",
        "inet",
        nat.name(),
        "out",
        "{ type nat hook output priority -100; }",
    ]);
    nat.rule(
        "out",
        &format!("ip daddr 127.0.0.2 tcp dport {service} dnat ip to 127.0.0.1:{backend}"),
    );
    let idx = peer.cmd(&format!("connect_to 127.0.0.2 {service}"));
    let (mut accepted, _) = listener.accept().expect("accept");
    peer.cmd(&format!("send {idx} 5000"));
    read_exact(&mut accepted, 5000);

    let deadline = Instant::now() + Duration::from_secs(20);
    while probe.tracker(pid, "client", backend).is_empty() && Instant::now() < deadline {
        probe.read_for(Duration::from_millis(500));
    }
    // One more report period: the bytes are in.
    probe.read_for(Duration::from_secs(6));
    let rows = probe.tracker(pid, "client", backend);
    assert!(
        !rows.is_empty(),
        "no client tracker towards the backend port {backend}"
    );
    for r in &rows {
        assert_eq!(r["server_ip"], "127.0.0.1", "{r:?}");
    }
    assert!(
        probe.tracker(pid, "client", service).is_empty(),
        "the service port {service} is still reported"
    );
    let tx: u64 = rows
        .iter()
        .map(|r| r["tx_bytes"].parse::<u64>().unwrap_or(0))
        .sum();
    assert_eq!(tx, 5000, "client tx_bytes through the service address");
    drop(nat);
}
