//! The tcp probe's test peers, for the eBPF suite (`tcp`) and the guest suite (`tcp_kprobe`):
//! a scriptable Python peer process (the snooped end of a connection) and `tcpprobe` run
//! offline with its records parsed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::ebpf::{OfflineProbe, LOADED};
use crate::Python;

/// The tcp probe's meta file.
pub const META: &str = include_str!("../../probes/tcp/tcp_link.meta");

/// Every sub-item of the tcp probe, as the JSON array of a configuration.
pub const ALL_SUBITEMS: &str = r#"["tcp_stats","tcp_abnormal","tcp_windows","tcp_rtt","tcp_srtt","tcp_rate","tcp_sockbuf","tcp_delay"]"#;

/// A scriptable TCP peer: one command per stdin line, one answer line per command.
pub const PEER: &str = r#"
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
pub struct Peer(Python);

impl Peer {
    /// Starts the peer and waits until it is ready.
    pub fn spawn() -> Peer {
        let mut peer = Peer(Python::spawn(PEER));
        assert_eq!(peer.0.line(), "ready");
        peer
    }

    /// The peer's pid (the process the probe snoops).
    pub fn pid(&self) -> u32 {
        self.0.pid()
    }

    /// Runs one command; panics on an `err` answer.
    pub fn cmd(&mut self, line: &str) -> String {
        self.0.send(line);
        let answer = self.0.line();
        assert!(!answer.starts_with("err"), "peer `{line}`: {answer}");
        answer
    }
}

/// Field names of a table of the probe's meta file.
pub fn fields(table: &str) -> Vec<String> {
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
pub type Row = HashMap<String, String>;

/// `tcpprobe` run offline (no daemon): its configuration from `GALA_GOPHER_CONFIG`, its
/// records read from stdout.
pub struct Offline {
    probe: OfflineProbe,
    /// How many of the probe's lines [`Offline::read_for`] has taken.
    read: usize,
    metric_fields: Vec<String>,
    flow_fields: Vec<String>,
    /// Every `tcp_metric` record so far.
    pub metrics: Vec<Row>,
    /// Every `proc_flow_perf` record so far.
    pub flows: Vec<Row>,
}

impl Offline {
    /// Starts the probe snooping `pid` and waits until its programs are attached.
    pub fn start(pid: u32, params: &str) -> Offline {
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
    pub fn read_for(&mut self, wait: Duration) {
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
    pub fn tracker(&self, tgid: u32, role: &str, port: u16) -> Vec<&Row> {
        let (tgid, port) = (tgid.to_string(), port.to_string());
        self.metrics
            .iter()
            .filter(|r| r["tgid"] == tgid && r["role"] == role && r["server_port"] == port)
            .collect()
    }

    /// Sum of a gauge over every period of a tracker.
    pub fn sum(&self, tgid: u32, role: &str, port: u16, field: &str) -> u64 {
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
    pub fn wait_sum(&mut self, tgid: u32, role: &str, port: u16, field: &str, want: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.sum(tgid, role, port, field) < want && Instant::now() < deadline {
            self.read_for(Duration::from_millis(500));
        }
        self.read_for(Duration::from_secs(6));
        self.sum(tgid, role, port, field)
    }
}
