//! The socket eBPF probe (`endpoint`) under the real daemon, against real loopback traffic
//! made by this test process (snooped by its pid: the probe excludes only itself):
//!
//! - a listener with backlog 1 that never accepts, flooded by connects: `listendrop` > 0
//!   for that listener, the `listendrop` event in the event log, the two connections the
//!   accept queue holds as `passive_open`, and on the client side `syn_sent`, `active_open`,
//!   `active_open_failed` (connects given up) and `retran_syn`;
//! - a connect to a closed port counts `active_open_failed`; a served connect counts
//!   `active_open` (client) and `passive_open` (server) with `estab_latency`;
//! - UDP to a socket with a tiny receive buffer that is not read: `udp_rcv_drops` equals the
//!   datagrams sent minus those the queue held, `bind_sends`/`bind_rcvs` equal the bytes
//!   sent and received;
//! - a UDP socket made by a snooped process after the probe started is counted from its
//!   first send (the UDP programs are attached on demand);
//! - a process outside the snoopers produces no records until it is added over REST;
//! - `nft` drops of outgoing SYNs count `syn_drop` and `retran_syn`; drops of the
//!   handshake ACK make the listener retransmit its SYN-ACK (`retran_synacks` and its event).
//!
//! Gauges are per-period values and `/metrics` holds the latest report of each series; the
//! tests scrape far more often than the 5 s period and add up each series' successive
//! values (see [`Tally`]).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use gala_e2e::ebpf::NftTable;
use gala_e2e::{KillOnDrop, Python, Samples, Sandbox};

const META: &str = include_str!("../../probes/endpoint/endpoint.meta");

/// A sandbox with the endpoint probe installed and a running daemon.
fn daemon() -> (Sandbox, gala_e2e::Daemon) {
    let metas = [("endpoint.meta", META)];
    gala_e2e::ebpf::builtin_daemon("endpoint", &metas, gala_e2e::IMDB_DEFAULT, &[])
}

/// Starts (or updates) the socket probe for `pids`.
fn put_socket(d: &gala_e2e::Daemon, pids: &[u32], report_event: bool) {
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    let body = format!(
        r#"{{"cmd":{{"probe":["tcp_socket","udp_socket"]}},"snoopers":{{"proc_id":[{}]}},"params":{{"report_period":5,"report_event":{}}},"state":"running"}}"#,
        pids.join(","),
        u8::from(report_event)
    );
    let (status, text) = d.put("socket", &body);
    assert_eq!(status, 200, "{text}");
}

/// What the scrapes showed of every series: its values in order, a repeat of the previous
/// value dropped. `/metrics` holds the latest report of each series and the probe reports
/// per-period counts, so the sum of a series' values is its total as long as two
/// consecutive periods do not have the very same non-zero value (bursts here are short).
#[derive(Default)]
struct Tally(std::collections::BTreeMap<Series, Vec<f64>>);

/// A series: metric name and label pairs.
type Series = (String, Vec<(String, String)>);

impl Tally {
    fn scrape(&mut self, d: &gala_e2e::Daemon) {
        for s in Samples::parse(&d.scrape()).0 {
            let labels = s.labels.clone().into_iter().collect();
            let v = s.value.parse::<f64>().unwrap_or(f64::NAN);
            let seq = self.0.entry((s.name, labels)).or_default();
            if seq.last() != Some(&v) {
                seq.push(v);
            }
        }
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = (&'a Vec<(String, String)>, &'a Vec<f64>)> + 'a {
        self.0.iter().filter_map(move |((n, l), v)| {
            let hit = n == name
                && labels
                    .iter()
                    .all(|(k, want)| l.iter().any(|(lk, lv)| lk == k && lv == want));
            hit.then_some((l, v))
        })
    }

    /// Total of `gala_gopher_<field>` over the matching series.
    fn sum(&self, field: &str, labels: &[(&str, &str)]) -> f64 {
        let name = format!("gala_gopher_{field}");
        self.matching(&name, labels)
            .flat_map(|(_, v)| v.iter())
            .filter(|v| v.is_finite())
            .sum()
    }

    /// Total of the latest value of each matching series (for cumulative values: a
    /// histogram's `_count` rises over the periods instead of starting again).
    fn latest(&self, field: &str, labels: &[(&str, &str)]) -> f64 {
        let name = format!("gala_gopher_{field}");
        self.matching(&name, labels)
            .filter_map(|(_, v)| v.last())
            .filter(|v| v.is_finite())
            .sum()
    }

    fn seen(&self, field: &str, labels: &[(&str, &str)]) -> bool {
        let name = format!("gala_gopher_{field}");
        let found = self.matching(&name, labels).next().is_some();
        found
    }

    /// Whether any endpoint series has label `key` = `value`.
    fn any_endpoint(&self, key: &str, value: &str) -> bool {
        self.0.keys().any(|(n, l)| {
            n.starts_with("gala_gopher_endpoint_") && l.iter().any(|(k, v)| k == key && v == value)
        })
    }

    /// Scrapes until `done` holds (or panics after `timeout`, naming `what`).
    fn until(
        &mut self,
        d: &gala_e2e::Daemon,
        timeout: Duration,
        what: &str,
        done: impl Fn(&Tally) -> bool,
    ) {
        let end = Instant::now() + timeout;
        loop {
            self.scrape(d);
            if done(self) {
                return;
            }
            assert!(Instant::now() < end, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A listener on a free port of 127.0.0.1 whose accept queue holds `backlog` + 1
/// connections.
fn listener(backlog: i32) -> TcpListener {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    // listen() again on a listening socket sets its backlog.
    // SAFETY: plain syscall on a socket we own.
    assert_eq!(unsafe { libc::listen(l.as_raw_fd(), backlog) }, 0);
    l
}

/// A TCP port of 127.0.0.1 nobody listens on, reserved for as long as the socket lives
/// (bound, not listening: connects to it are refused).
struct ClosedPort(libc::c_int, u16);

impl ClosedPort {
    fn new() -> ClosedPort {
        // SAFETY: plain syscalls on a socket we own; the address struct is ours.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0, "socket");
            let mut a: libc::sockaddr_in = std::mem::zeroed();
            a.sin_family = libc::AF_INET as libc::sa_family_t;
            a.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            assert_eq!(
                libc::bind(fd, (&a as *const libc::sockaddr_in).cast(), len),
                0
            );
            let mut len = len;
            assert_eq!(
                libc::getsockname(fd, (&mut a as *mut libc::sockaddr_in).cast(), &mut len),
                0
            );
            ClosedPort(fd, u16::from_be(a.sin_port))
        }
    }
}

impl Drop for ClosedPort {
    fn drop(&mut self) {
        // SAFETY: closing the fd we own.
        unsafe { libc::close(self.0) };
    }
}

fn me() -> String {
    std::process::id().to_string()
}

#[test]
fn flooded_listener_counts_listen_drops_and_the_client_side() {
    gala_e2e::require_bpf!();
    let l = listener(1);
    let port = l.local_addr().unwrap().port();
    let (sb, d) = daemon();
    put_socket(&d, &[std::process::id()], true);
    let me = me();
    let p = port.to_string();
    let server = [
        ("tgid", me.as_str()),
        ("role", "server"),
        ("server_port", p.as_str()),
    ];
    let client = [
        ("tgid", me.as_str()),
        ("role", "client"),
        ("server_port", p.as_str()),
    ];
    let mut t = Tally::default();
    // The listener existed before the probe: it is preloaded and reported with zeros.
    t.until(&d, Duration::from_secs(30), "the preloaded listener", |t| {
        t.seen("endpoint_tcp_passive_open", &server)
    });
    assert!(t.seen("endpoint_tcp_listendrop", &[("multi", "0")]));

    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // The accept queue takes two; the rest are dropped at the listener and given up by the
    // client after the first SYN retransmit (the initial RTO is 1 s).
    let held: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("queued"))
        .collect();
    let tries: Vec<_> = (0..6)
        .map(|_| {
            std::thread::spawn(move || {
                TcpStream::connect_timeout(&addr, Duration::from_millis(1500))
            })
        })
        .collect();
    let failed = tries
        .into_iter()
        .map(|h| h.join().expect("connect thread"))
        .filter(Result::is_err)
        .count();
    assert_eq!(failed, 6, "the full accept queue let a connect through");
    t.until(
        &d,
        Duration::from_secs(30),
        "listen drops and client counts",
        |t| {
            t.sum("endpoint_tcp_listendrop", &server) > 0.0
                && t.sum("endpoint_tcp_passive_open", &server) >= 2.0
                && t.sum("endpoint_tcp_active_open", &client) >= 2.0
                && t.sum("endpoint_tcp_active_open_failed", &client) >= 1.0
                && t.sum("endpoint_tcp_retran_syn", &client) >= 1.0
        },
    );
    assert!(t.sum("endpoint_tcp_syn_sent", &client) >= 8.0);
    // Server-side fields only on the server row, client-side ones only on the client row.
    assert!(!t.seen("endpoint_tcp_active_open", &server));
    assert!(!t.seen("endpoint_tcp_listendrop", &client));
    // The handshake latency of the two accepted connections.
    assert!(t.sum("endpoint_tcp_estab_latency_count", &server) >= 2.0);
    // (Other tests of this process have listeners too: pick ours by its entity id.)
    let id = format!("{me}_server_0.0.0.0_127.0.0.1_{port}_2");
    let event = sb.wait_event(Duration::from_secs(10), "listendrop", |e| {
        e["Resource"]["metric"] == "gala_gopher_endpoint_tcp_listendrop"
            && e["Body"]
                .as_str()
                .is_some_and(|b| b.contains(&format!("Entity({id})")))
    });
    let body = event["Body"].as_str().expect("Body");
    assert!(body.contains("TCP listen drops("), "{body}");
    drop(held);
    drop(l);
}

#[test]
fn connects_count_opens_failures_and_latency() {
    gala_e2e::require_bpf!();
    let served = listener(16);
    let port = served.local_addr().unwrap().port();
    let closed_port = ClosedPort::new();
    let closed = closed_port.1;
    let (_sb, d) = daemon();
    put_socket(&d, &[std::process::id()], false);
    let me = me();
    let (p, c) = (port.to_string(), closed.to_string());
    let server = [
        ("tgid", me.as_str()),
        ("role", "server"),
        ("server_port", p.as_str()),
    ];
    let mut t = Tally::default();
    t.until(&d, Duration::from_secs(30), "the preloaded listener", |t| {
        t.seen("endpoint_tcp_passive_open", &server)
    });
    let accept = std::thread::spawn(move || {
        for _ in 0..3 {
            let (mut s, _) = served.accept().expect("accept");
            let _ = s.write_all(b"hi");
        }
    });
    for _ in 0..3 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let mut buf = [0u8; 2];
        s.read_exact(&mut buf).expect("greeting");
    }
    accept.join().expect("server thread");
    for _ in 0..2 {
        let e = TcpStream::connect(("127.0.0.1", closed)).expect_err("closed port");
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    }
    let to_served = [
        ("tgid", me.as_str()),
        ("role", "client"),
        ("server_port", p.as_str()),
        ("client_ip", "127.0.0.1"),
        ("server_ip", "127.0.0.1"),
        ("protocol", "2"),
    ];
    let to_closed = [
        ("tgid", me.as_str()),
        ("role", "client"),
        ("server_port", c.as_str()),
    ];
    t.until(&d, Duration::from_secs(30), "opens and failures", |t| {
        t.sum("endpoint_tcp_active_open", &to_served) >= 3.0
            && t.sum("endpoint_tcp_passive_open", &server) >= 3.0
            && t.sum("endpoint_tcp_active_open_failed", &to_closed) >= 2.0
    });
    assert_eq!(t.sum("endpoint_tcp_active_open", &to_served), 3.0);
    assert_eq!(t.sum("endpoint_tcp_active_open_failed", &to_served), 0.0);
    assert_eq!(t.sum("endpoint_tcp_active_open", &to_closed), 0.0);
    assert_eq!(t.sum("endpoint_tcp_syn_sent", &to_closed), 2.0);
    assert_eq!(t.sum("endpoint_tcp_passive_open_failed", &server), 0.0);
    // The listen endpoint's client fields are the wildcard.
    assert!(t.seen(
        "endpoint_tcp_passive_open",
        &[
            ("server_port", p.as_str()),
            ("client_ip", "0.0.0.0"),
            ("toa_client_ip", "0.0.0.0"),
            ("server_ip", "127.0.0.1"),
        ]
    ));
    for labels in [&to_served[..], &server[..]] {
        assert_eq!(
            t.latest("endpoint_tcp_estab_latency_count", labels),
            3.0,
            "{labels:?}"
        );
    }
}

#[test]
fn udp_drops_and_bytes_match_what_was_sent() {
    gala_e2e::require_bpf!();
    let rx = UdpSocket::bind("127.0.0.1:0").expect("bind rx");
    let small: libc::c_int = 1024;
    // SAFETY: setsockopt reads an int we own.
    let rc = unsafe {
        libc::setsockopt(
            rx.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&small as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    let rport = rx.local_addr().unwrap().port();
    let tx = UdpSocket::bind("127.0.0.1:0").expect("bind tx");
    let tport = tx.local_addr().unwrap().port();
    let (_sb, d) = daemon();
    put_socket(&d, &[std::process::id()], false);
    let me = me();
    let (rp, tp) = (rport.to_string(), tport.to_string());
    let rx_row = [("tgid", me.as_str()), ("local_port", rp.as_str())];
    let tx_row = [
        ("tgid", me.as_str()),
        ("local_port", tp.as_str()),
        ("local_ip", "127.0.0.1"),
        ("remote_ip", "0.0.0.0"),
        ("remote_port", "0"),
        ("protocol", "2"),
    ];
    let mut t = Tally::default();
    // The probe is up once the listener-less process has a row: wait for the ebpf_prog table.
    t.until(&d, Duration::from_secs(30), "the probe's programs", |t| {
        t.seen("ebpf_prog_run_count", &[("prog", "ep_udp_drop")])
    });
    // Three datagrams read, then a flood the queue cannot hold, then what it held.
    rx.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = [0u8; 2048];
    for _ in 0..3 {
        tx.send_to(&[1u8; 100], ("127.0.0.1", rport)).expect("send");
        assert_eq!(rx.recv(&mut buf).expect("recv"), 100);
    }
    let flood = 200;
    for _ in 0..flood {
        tx.send_to(&[2u8; 1000], ("127.0.0.1", rport))
            .expect("send");
    }
    rx.set_nonblocking(true).expect("nonblocking");
    let mut held = 0;
    while let Ok(n) = rx.recv(&mut buf) {
        assert_eq!(n, 1000);
        held += 1;
    }
    assert!(held < flood, "the tiny buffer held everything");
    let sent = 3.0 * 100.0 + f64::from(flood) * 1000.0;
    let received = 300.0 + f64::from(held) * 1000.0;
    let dropped = f64::from(flood - held);
    t.until(&d, Duration::from_secs(30), "UDP counts", |t| {
        t.sum("endpoint_udp_bind_sends", &tx_row) >= sent
            && t.sum("endpoint_udp_bind_rcvs", &rx_row) >= received
            && t.sum("endpoint_udp_udp_rcv_drops", &rx_row) >= dropped
    });
    // One more period: nothing is counted twice.
    std::thread::sleep(Duration::from_secs(6));
    t.scrape(&d);
    assert_eq!(t.sum("endpoint_udp_bind_sends", &tx_row), sent);
    assert_eq!(t.sum("endpoint_udp_bind_rcvs", &rx_row), received);
    assert_eq!(t.sum("endpoint_udp_udp_rcv_drops", &rx_row), dropped);
    assert_eq!(t.sum("endpoint_udp_udp_rcv_drops", &tx_row), 0.0);
    assert_eq!(t.sum("endpoint_udp_bind_rcvs", &tx_row), 0.0);
}

/// The UDP send/recv programs are attached only while a process in scope has a UDP
/// socket: a snooped process without one that then makes one is counted from its first
/// send, half a second later — sooner than the next refresh (the 5 s report), which only
/// the `cgroup/sock_create` program can make happen.
#[test]
fn a_udp_socket_made_after_the_probe_started_is_counted() {
    gala_e2e::require_bpf!();
    let script = "\
import socket, sys, time
sys.stdin.readline()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('127.0.0.1', 0))
r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
r.bind(('127.0.0.1', 0))
time.sleep(0.5)
for _ in range(5):
    s.sendto(b'u' * 321, r.getsockname())
print(s.getsockname()[1], flush=True)
time.sleep(600)
";
    let mut py = Python::spawn(script);
    let pid = py.pid();
    let (_sb, d) = daemon();
    put_socket(&d, &[pid], false);
    let mut t = Tally::default();
    t.until(&d, Duration::from_secs(30), "the probe's programs", |t| {
        t.seen("ebpf_prog_run_count", &[("prog", "ep_udp_drop")])
    });
    // The probe has refreshed (no UDP socket in scope); the process makes its sockets now.
    py.send("go");
    let port = py.line();
    let tgid = pid.to_string();
    let row = [("tgid", tgid.as_str()), ("local_port", port.as_str())];
    t.until(&d, Duration::from_secs(30), "the new socket's bytes", |t| {
        t.sum("endpoint_udp_bind_sends", &row) >= 5.0 * 321.0
    });
    assert_eq!(t.sum("endpoint_udp_bind_sends", &row), 5.0 * 321.0);
}

/// A Python process listening on a free port of 127.0.0.1, and that port.
fn python_listener() -> (KillOnDrop, u16) {
    let script = "import socket,time\ns=socket.socket()\ns.bind(('127.0.0.1',0))\ns.listen(128)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(600)\n";
    let mut py = Python::spawn(script);
    let port = py.line().parse().expect("the listener's port");
    (py.into_child(), port)
}

#[test]
fn processes_outside_the_snoopers_have_no_records_until_added() {
    gala_e2e::require_bpf!();
    let (other, other_port) = python_listener();
    let other_pid = other.0.id();
    let mine = listener(1);
    let port = mine.local_addr().unwrap().port();
    let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let (_sb, d) = daemon();
    put_socket(&d, &[other_pid], false);
    let (op, p, me) = (other_port.to_string(), port.to_string(), me());
    let mut t = Tally::default();
    t.until(
        &d,
        Duration::from_secs(30),
        "the snooped process's listener",
        |t| {
            t.seen(
                "endpoint_tcp_passive_open",
                &[
                    ("tgid", &other_pid.to_string()),
                    ("server_port", op.as_str()),
                ],
            )
        },
    );
    // Traffic of this (unsnooped) process for two periods, scraped all along.
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let other_addr: SocketAddr = format!("127.0.0.1:{other_port}").parse().unwrap();
    let work = |t: &mut Tally, secs: u64| {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            let _ = TcpStream::connect_timeout(&addr, Duration::from_millis(100));
            let _ = udp.send_to(b"x", ("127.0.0.1", 9));
            let _ = TcpStream::connect_timeout(&other_addr, Duration::from_millis(100));
            t.scrape(&d);
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    work(&mut t, 11);
    let ours = |t: &Tally| t.any_endpoint("tgid", &me) || t.any_endpoint("server_port", &p);
    assert!(!ours(&t), "records of a process outside the snoopers");
    // The server side of connects to the snooped process is the snooped process's.
    assert!(t.sum("endpoint_tcp_passive_open", &[("server_port", op.as_str())]) >= 1.0);
    // Added over REST: its listener and traffic appear.
    put_socket(&d, &[other_pid, std::process::id()], false);
    let mine = [("tgid", me.as_str()), ("server_port", p.as_str())];
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30)
        && t.sum("endpoint_tcp_listendrop", &mine) == 0.0
    {
        work(&mut t, 1);
    }
    assert!(
        t.sum("endpoint_tcp_listendrop", &mine) > 0.0,
        "no listen drops after adding this process"
    );
    drop(other);
}

/// An nft table that drops outgoing SYNs to `syn_port` and the pure ACKs arriving at
/// `ack_port`.
fn drop_syns_and_acks(syn_port: u16, ack_port: u16) -> NftTable {
    let table = NftTable::new("endpoint");
    table
        .chain("out", "output")
        .chain("in", "input")
        .rule(
            "out",
            &format!("tcp dport {syn_port} tcp flags & (syn|ack) == syn drop"),
        )
        .rule(
            "in",
            &format!("tcp dport {ack_port} tcp flags & (syn|ack|fin|rst) == ack drop"),
        );
    table
}

#[test]
fn dropped_syns_and_handshake_acks_count_syn_drop_and_synack_retransmits() {
    gala_e2e::require_bpf!();
    let served = listener(16);
    let port = served.local_addr().unwrap().port();
    let blocked_port = ClosedPort::new();
    let blocked = blocked_port.1;
    let _nft = drop_syns_and_acks(blocked, port);
    let (sb, d) = daemon();
    put_socket(&d, &[std::process::id()], true);
    let me = me();
    let (p, b) = (port.to_string(), blocked.to_string());
    let server = [
        ("tgid", me.as_str()),
        ("role", "server"),
        ("server_port", p.as_str()),
    ];
    let to_blocked = [
        ("tgid", me.as_str()),
        ("role", "client"),
        ("server_port", b.as_str()),
    ];
    let mut t = Tally::default();
    t.until(&d, Duration::from_secs(30), "the preloaded listener", |t| {
        t.seen("endpoint_tcp_retran_synacks", &server)
    });
    // The SYN never leaves: the first one and its retransmit are dropped on output.
    let addr: SocketAddr = format!("127.0.0.1:{blocked}").parse().unwrap();
    let e = TcpStream::connect_timeout(&addr, Duration::from_millis(1500)).expect_err("blocked");
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
    // The handshake's ACK never arrives: the server retransmits its SYN-ACK (after 1 s).
    let _client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    t.until(
        &d,
        Duration::from_secs(30),
        "syn_drop and retran_synacks",
        |t| {
            t.sum("endpoint_tcp_syn_drop", &to_blocked) >= 2.0
                && t.sum("endpoint_tcp_retran_synacks", &server) >= 1.0
        },
    );
    assert!(t.sum("endpoint_tcp_retran_syn", &to_blocked) >= 1.0);
    assert_eq!(t.sum("endpoint_tcp_active_open", &to_blocked), 0.0);
    assert_eq!(t.sum("endpoint_tcp_passive_open", &server), 0.0);
    let id = format!("{me}_server_0.0.0.0_127.0.0.1_{port}_2");
    sb.wait_event(Duration::from_secs(10), "retran_synacks", |e| {
        e["Resource"]["metric"] == "gala_gopher_endpoint_tcp_retran_synacks"
            && e["Body"]
                .as_str()
                .is_some_and(|b| b.contains(&format!("Entity({id})")))
    });
    drop(served);
}

/// Whether this kernel has kprobes, which `syn_overflow`, `synack_sent` and TOA need (the
/// probe's own check, `gala_ebpf::Kernel::kprobes`); without them those fields are empty.
fn kprobes() -> bool {
    std::path::Path::new("/sys/bus/event_source/devices/kprobe/type").exists()
}

/// A TCP socket bound to a free port of 127.0.0.1, not connected yet: the fd and the port.
fn bound_tcp_socket() -> (std::os::fd::OwnedFd, u16) {
    use std::os::fd::FromRawFd;
    let closed = std::mem::ManuallyDrop::new(ClosedPort::new());
    // SAFETY: the socket of `closed`, which is never dropped, so it is handed over once.
    (
        unsafe { std::os::fd::OwnedFd::from_raw_fd(closed.0) },
        closed.1,
    )
}

/// Connects the bound socket `fd` to 127.0.0.1:`port` (blocking).
fn connect_from(fd: &std::os::fd::OwnedFd, port: u16) {
    // SAFETY: connect on a socket we own with an address struct we own.
    unsafe {
        let mut a: libc::sockaddr_in = std::mem::zeroed();
        a.sin_family = libc::AF_INET as libc::sa_family_t;
        a.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        a.sin_port = port.to_be();
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        assert_eq!(
            libc::connect(fd.as_raw_fd(), (&a as *const libc::sockaddr_in).cast(), len),
            0,
            "connect: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Without kprobes `syn_overflow` and `synack_sent` are empty (no series), everywhere
/// else they count: the check of both contracts, on the kernel the test runs on.
fn kprobe_fields_are_empty(t: &Tally, server: &[(&str, &str)]) -> bool {
    !t.seen("endpoint_tcp_syn_overflow", server) && !t.seen("endpoint_tcp_synack_sent", server)
}

/// A backlog-1 listener that never accepts: client A's handshake ACK is dropped (nft), so its
/// request stays in the SYN queue; B1 and B2 then find the SYN queue full (the kernel answers
/// them with syncookies and they fill the accept queue); A's first data segment completes its
/// handshake into the full accept queue and is dropped. `accept_overflow` counts that on every
/// kernel (drop reason on 6.11+, `kprobe/tcp_v4_syn_recv_sock` before); `syn_overflow`
/// (`kprobe/tcp_conn_request`) and `synack_sent` (`kprobe/tcp_v4_send_synack`) count where
/// kprobes exist (the 5.10 and 6.1 guests) and are empty where they do not (this 6.18 host).
#[test]
fn unanswered_handshakes_fill_the_syn_queue_then_the_accept_queue() {
    gala_e2e::require_bpf!();
    let l = listener(1);
    let port = l.local_addr().unwrap().port();
    let (a, a_port) = bound_tcp_socket();
    let nft = NftTable::new("endpoint_synq");
    nft.chain("in", "input").rule(
        "in",
        &format!(
            "tcp sport {a_port} tcp dport {port} tcp flags & (syn|ack|fin|rst|psh) == ack drop"
        ),
    );
    let (_sb, d) = daemon();
    put_socket(&d, &[std::process::id()], false);
    let me = me();
    let p = port.to_string();
    let server = [
        ("tgid", me.as_str()),
        ("role", "server"),
        ("server_port", p.as_str()),
        ("toa_client_ip", "0.0.0.0"),
    ];
    let mut t = Tally::default();
    t.until(&d, Duration::from_secs(30), "the preloaded listener", |t| {
        t.seen("endpoint_tcp_passive_open", &server)
    });
    connect_from(&a, port);
    let b: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(5)))
        .collect::<Result<_, _>>()
        .expect("B1 and B2 connect (syncookies)");
    // SAFETY: write on a socket we own from a buffer we own.
    let n = unsafe { libc::write(a.as_raw_fd(), b"x".as_ptr().cast(), 1) };
    assert_eq!(n, 1, "A's first data segment");
    let hooked = kprobes();
    t.until(&d, Duration::from_secs(30), "the overflows", |t| {
        t.sum("endpoint_tcp_accept_overflow", &server) >= 1.0
            && t.sum("endpoint_tcp_passive_open", &server) >= 2.0
            && (!hooked
                || (t.sum("endpoint_tcp_syn_overflow", &server) >= 2.0
                    && t.sum("endpoint_tcp_synack_sent", &server) >= 3.0))
    });
    if hooked {
        // A's SYN found the queue empty: B1 and B2 only (A's SYN-ACK retransmits are sends).
        assert_eq!(t.sum("endpoint_tcp_syn_overflow", &server), 2.0);
    } else {
        // One more report period: the fields stay empty.
        std::thread::sleep(Duration::from_secs(6));
        t.scrape(&d);
        assert!(
            kprobe_fields_are_empty(&t, &server),
            "kprobe fields without kprobes"
        );
    }
    drop((b, a, nft, l));
}

/// One SYN from 127.0.0.1:`sport` to 127.0.0.1:`dport` over a raw socket, carrying the TOA
/// option (kind 254, length 8: `toa_port`, then `toa_ip`), as a load balancer in front of the
/// server would send it.
fn raw_syn_with_toa(sport: u16, dport: u16, toa_ip: std::net::Ipv4Addr, toa_port: u16) {
    let mut seg = [0u8; 28];
    seg[0..2].copy_from_slice(&sport.to_be_bytes());
    seg[2..4].copy_from_slice(&dport.to_be_bytes());
    seg[4..8].copy_from_slice(&0x1000_0000u32.to_be_bytes()); // sequence number
    seg[12] = 7 << 4; // data offset: 20 bytes of header, 8 of options
    seg[13] = 0x02; // SYN
    seg[14..16].copy_from_slice(&65535u16.to_be_bytes());
    seg[20] = 254;
    seg[21] = 8;
    seg[22..24].copy_from_slice(&toa_port.to_be_bytes());
    seg[24..28].copy_from_slice(&toa_ip.octets());
    // The checksum over the IPv4 pseudo header (127.0.0.1 → 127.0.0.1, TCP, length).
    let mut pseudo = Vec::with_capacity(12 + seg.len());
    pseudo.extend_from_slice(&[127, 0, 0, 1, 127, 0, 0, 1, 0, 6]);
    pseudo.extend_from_slice(&(seg.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(&seg);
    let mut sum: u32 = pseudo
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    seg[16..18].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    // SAFETY: plain syscalls on a socket we own, with buffers and an address struct we own.
    unsafe {
        let fd = libc::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_TCP,
        );
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        let mut a: libc::sockaddr_in = std::mem::zeroed();
        a.sin_family = libc::AF_INET as libc::sa_family_t;
        a.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let sent = libc::sendto(
            fd,
            seg.as_ptr().cast(),
            seg.len(),
            0,
            (&a as *const libc::sockaddr_in).cast(),
            len,
        );
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        assert_eq!(sent, seg.len() as isize, "raw SYN: {err}");
    }
}

/// A SYN carrying a TOA address (the real client behind a load balancer): where kprobes
/// exist (`kprobe/tcp_conn_request` parses the option) the listener's SYN-ACK for it counts
/// on the listener's TOA endpoint — `toa_client_ip` the TOA address; without kprobes there is
/// no such endpoint and `synack_sent` is empty. The source port is bound and not listening,
/// so the SYN-ACK is answered with a reset.
#[test]
fn a_syn_carrying_a_toa_address_counts_on_its_toa_endpoint() {
    gala_e2e::require_bpf!();
    let l = listener(16);
    let port = l.local_addr().unwrap().port();
    let src = ClosedPort::new();
    let (_sb, d) = daemon();
    put_socket(&d, &[std::process::id()], false);
    let me = me();
    let p = port.to_string();
    let toa_ip = std::net::Ipv4Addr::new(203, 0, 113, 7);
    let toa_text = toa_ip.to_string();
    let listener_row = [
        ("tgid", me.as_str()),
        ("role", "server"),
        ("server_port", p.as_str()),
        ("toa_client_ip", "0.0.0.0"),
    ];
    let toa_row = [
        ("tgid", me.as_str()),
        ("role", "server"),
        ("server_port", p.as_str()),
        ("client_ip", "0.0.0.0"),
        ("server_ip", "127.0.0.1"),
        ("toa_client_ip", toa_text.as_str()),
    ];
    let mut t = Tally::default();
    t.until(&d, Duration::from_secs(30), "the preloaded listener", |t| {
        t.seen("endpoint_tcp_passive_open", &listener_row)
    });
    raw_syn_with_toa(src.1, port, toa_ip, 40_000);
    if kprobes() {
        t.until(&d, Duration::from_secs(30), "the TOA endpoint", |t| {
            t.sum("endpoint_tcp_synack_sent", &toa_row) >= 1.0
        });
        assert_eq!(
            t.sum("endpoint_tcp_synack_sent", &listener_row),
            0.0,
            "the SYN-ACK counted on the listener's own row"
        );
    } else {
        // Two report periods.
        let end = Instant::now() + Duration::from_secs(11);
        while Instant::now() < end {
            t.scrape(&d);
            std::thread::sleep(Duration::from_millis(500));
        }
        assert!(
            !t.any_endpoint("toa_client_ip", &toa_text),
            "a TOA endpoint without kprobes"
        );
        assert!(
            kprobe_fields_are_empty(&t, &listener_row),
            "kprobe fields without kprobes"
        );
    }
    drop((src, l));
}
