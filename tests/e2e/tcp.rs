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

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use gala_e2e::ebpf::{NftTable, OfflineProbe, LOADED};
use gala_e2e::{free_port, poll_until, KillOnDrop, Python, Samples, Sandbox};

const META: &str = include_str!("../../probes/tcp/tcp_link.meta");

const ALL_SUBITEMS: &str = r#"["tcp_stats","tcp_abnormal","tcp_windows","tcp_rtt","tcp_srtt","tcp_rate","tcp_sockbuf","tcp_delay"]"#;

/// A scriptable TCP peer: one command per stdin line, one answer line per command.
pub(crate) const PEER: &str = r#"
import socket, struct, sys, threading, time
conns, listeners = [], {}
def out(s):
    print(s, flush=True)
def recv_exact(c, n):
    got = 0
    while got < n:
        b = c.recv(min(65536, n - got))
        if not b:
            break
        got += len(b)
    return got
def stream(c, secs, chunk, gap):
    end = time.time() + secs
    data = b"s" * chunk
    try:
        while time.time() < end:
            c.sendall(data)
            if gap:
                time.sleep(gap)
    except OSError:
        pass
out("ready")
for line in sys.stdin:
    a = line.split()
    try:
        if a[0] == "listen":
            l = socket.socket()
            l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            l.bind(("127.0.0.1", int(a[1])))
            l.listen(16)
            port = l.getsockname()[1]
            listeners[port] = l
            out(port)
        elif a[0] == "accept":
            c, _ = listeners[int(a[1])].accept()
            conns.append(c)
            out(len(conns) - 1)
        elif a[0] == "connect":
            conns.append(socket.create_connection(("127.0.0.1", int(a[1]))))
            out(len(conns) - 1)
        elif a[0] == "connect_to":
            conns.append(socket.create_connection((a[1], int(a[2]))))
            out(len(conns) - 1)
        elif a[0] == "connect6":
            conns.append(socket.create_connection(("::1", int(a[1]))))
            out(len(conns) - 1)
        elif a[0] == "send":
            conns[int(a[1])].sendall(b"x" * int(a[2]))
            out("ok")
        elif a[0] == "recv":
            out(recv_exact(conns[int(a[1])], int(a[2])))
        elif a[0] == "stream":
            threading.Thread(target=stream, daemon=True,
                             args=(conns[int(a[1])], float(a[2]), int(a[3]), float(a[4]))).start()
            out("ok")
        elif a[0] == "rst":
            c = conns[int(a[1])]
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
            out("ok")
        elif a[0] == "refused":
            s = socket.socket()
            try:
                s.connect(("127.0.0.1", int(a[1])))
                out("connected")
            except ConnectionRefusedError:
                out("refused")
            s.close()
        else:
            out("err unknown command")
    except Exception as e:
        out("err " + repr(e))
"#;

/// The Python peer process.
pub(crate) struct Peer(Python);

impl Peer {
    pub(crate) fn spawn() -> Peer {
        let mut peer = Peer(Python::spawn(PEER));
        assert_eq!(peer.0.line(), "ready");
        peer
    }

    pub(crate) fn pid(&self) -> u32 {
        self.0.pid()
    }

    /// Runs one command; panics on an `err` answer.
    pub(crate) fn cmd(&mut self, line: &str) -> String {
        self.0.send(line);
        let answer = self.0.line();
        assert!(!answer.starts_with("err"), "peer `{line}`: {answer}");
        answer
    }
}

/// Field names of a table of the probe's meta file.
fn fields(table: &str) -> Vec<String> {
    let tables = gala_meta::parse_meta_file(
        std::path::Path::new("tcp_link.meta"),
        META,
        &Default::default(),
    )
    .expect("tcp_link.meta");
    let t = tables.iter().find(|t| t.name == table).expect("table");
    t.fields.iter().map(|f| f.name.clone()).collect()
}

/// One record line as field name → value.
pub(crate) type Row = HashMap<String, String>;

/// `tcpprobe` run offline (no daemon): its configuration from `GALA_GOPHER_CONFIG`, its
/// records read from stdout.
pub(crate) struct Offline {
    probe: OfflineProbe,
    /// How many of the probe's lines [`Offline::read_for`] has taken.
    read: usize,
    metric_fields: Vec<String>,
    flow_fields: Vec<String>,
    /// Every `tcp_metric` record so far.
    pub(crate) metrics: Vec<Row>,
    /// Every `proc_flow_perf` record so far.
    flows: Vec<Row>,
}

impl Offline {
    /// Starts the probe snooping `pid` and waits until its programs are attached.
    pub(crate) fn start(pid: u32, params: &str) -> Offline {
        let config = format!(
            r#"{{"subitems":{ALL_SUBITEMS},"snoopers":[{{"process":{{"pid":{pid}}}}}],"params":{{"reportPeriod":5,{params}}}}}"#
        );
        let probe = OfflineProbe::start("tcpprobe", &config);
        // Logged once the snooper map holds the pid.
        let seen = probe.wait_for_line(Duration::from_secs(20), |l| {
            l.contains("scope: only 1 tgids")
        });
        for line in &seen {
            assert!(!line.contains("[ERROR]"), "{line}");
            if line.contains(LOADED) {
                assert!(
                    line.contains("tcp_abnormal") && line.contains("tcp_delay"),
                    "{line}"
                );
            }
        }
        Offline {
            probe,
            read: seen.len(),
            metric_fields: fields("tcp_metric"),
            flow_fields: fields("proc_flow_perf"),
            metrics: Vec::new(),
            flows: Vec::new(),
        }
    }

    /// Reads the records printed within `wait`.
    pub(crate) fn read_for(&mut self, wait: Duration) {
        std::thread::sleep(wait);
        let lines = self.probe.lines();
        for line in &lines[self.read..] {
            let values: Vec<&str> = line.split('|').collect();
            // "|table|v1|...|vN|" splits into "", table, v1..vN, "".
            if values.len() < 3 {
                continue;
            }
            let (names, store) = match values[1] {
                "tcp_metric" => (&self.metric_fields, &mut self.metrics),
                "proc_flow_perf" => (&self.flow_fields, &mut self.flows),
                _ => continue,
            };
            let vals = &values[2..values.len() - 1];
            assert_eq!(vals.len(), names.len(), "{line}");
            store.push(
                names
                    .iter()
                    .cloned()
                    .zip(vals.iter().map(|v| v.to_string()))
                    .collect(),
            );
        }
        self.read = lines.len();
    }

    /// The `tcp_metric` records of `tgid` in `role` towards server port `port`.
    pub(crate) fn tracker(&self, tgid: u32, role: &str, port: u16) -> Vec<&Row> {
        let (tgid, port) = (tgid.to_string(), port.to_string());
        self.metrics
            .iter()
            .filter(|r| r["tgid"] == tgid && r["role"] == role && r["server_port"] == port)
            .collect()
    }

    /// Sum of a gauge over every period of a tracker.
    fn sum(&self, tgid: u32, role: &str, port: u16, field: &str) -> u64 {
        self.tracker(tgid, role, port)
            .iter()
            .map(|r| {
                r[field]
                    .parse::<u64>()
                    .unwrap_or_else(|_| panic!("{field} = {:?}", r[field]))
            })
            .sum()
    }

    /// Reads records until `field` of the tracker sums to at least `want` (or 20 s pass),
    /// then one more period, and returns the sum.
    fn wait_sum(&mut self, tgid: u32, role: &str, port: u16, field: &str, want: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.sum(tgid, role, port, field) < want && Instant::now() < deadline {
            self.read_for(Duration::from_millis(500));
        }
        self.read_for(Duration::from_secs(6));
        self.sum(tgid, role, port, field)
    }
}

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

/// An nft table that drops about 10 % of the segments sent from local port `port` (with 30 %,
/// retransmissions are lost in a row and RTO backoff stalls the stream for seconds).
fn drop_from_port(port: u16) -> NftTable {
    let table = NftTable::new("tcp");
    table.chain("out", "output").rule(
        "out",
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
