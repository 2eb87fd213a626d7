//! From the kernel's cumulative counters to the records of one report period: per-key
//! deltas (a counter that went backwards — an LRU eviction or a reload — restarts from 0),
//! which endpoints are reported (every listener of a process in scope, every other endpoint
//! active in the last [`IDLE_AFTER`]), the record fields in meta order, and the events.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use gala_ebpf::addr::{family_text, ip_text, AF_INET};
use gala_ebpf::Histogram;

use crate::bpf::*;

/// An endpoint without any change for this long is no longer reported.
pub const IDLE_AFTER: Duration = Duration::from_secs(600);

/// `estab_latency` bucket bounds, ns: 3, 10, 50, 100, 500, 1000, 10000 ms.
pub const ESTAB_BOUNDS: &[u64] = &[
    3_000_000,
    10_000_000,
    50_000_000,
    100_000_000,
    500_000_000,
    1_000_000_000,
    10_000_000_000,
];

/// Per-key deltas of cumulative counter arrays.
#[derive(Debug)]
pub struct Deltas<K, const N: usize> {
    prev: HashMap<K, ([u64; N], Instant)>,
}

impl<K, const N: usize> Default for Deltas<K, N> {
    fn default() -> Self {
        Deltas {
            prev: HashMap::new(),
        }
    }
}

/// What one [`Deltas::update`] found.
#[derive(Debug)]
pub struct Update<K, const N: usize> {
    /// Deltas of the keys active within [`IDLE_AFTER`] (zero deltas included).
    pub deltas: HashMap<K, [u64; N]>,
    /// Keys without a change for [`IDLE_AFTER`]: forgotten here, to be deleted from the
    /// kernel map (else they would count as new next time).
    pub idle: Vec<K>,
}

impl<K: Hash + Eq + Copy, const N: usize> Deltas<K, N> {
    /// Takes the current cumulative values of every key.
    pub fn update(
        &mut self,
        now: Instant,
        current: impl IntoIterator<Item = (K, [u64; N])>,
    ) -> Update<K, N> {
        let mut deltas = HashMap::new();
        let mut idle = Vec::new();
        let mut seen = HashMap::new();
        for (key, cur) in current {
            let (delta, last) = match self.prev.get(&key) {
                Some((prev, last)) => {
                    let mut d = [0u64; N];
                    for i in 0..N {
                        d[i] = if cur[i] >= prev[i] {
                            cur[i] - prev[i]
                        } else {
                            cur[i]
                        };
                    }
                    let changed = d.iter().any(|&x| x != 0);
                    (d, if changed { now } else { *last })
                }
                None => (cur, now),
            };
            if now.duration_since(last) < IDLE_AFTER {
                deltas.insert(key, delta);
                seen.insert(key, (cur, last));
            } else {
                idle.push(key);
            }
        }
        self.prev = seen;
        Update { deltas, idle }
    }

    /// Forgets everything (a new BPF object starts from zero).
    pub fn clear(&mut self) {
        self.prev.clear();
    }
}

/// A listen endpoint to report this period.
#[derive(Debug, Clone)]
pub struct Listener {
    /// Its stats key (owner tgid, family, port, listen address).
    pub key: TcpKey,
    /// Several processes share it.
    pub multi: bool,
    /// The kernel's listen drops over the period (`sk_drops` delta), when sock_diag saw it.
    pub listendrop: Option<u64>,
}

/// Who a record names: the tgid printed (the pgid for a shared listener) and its comm.
pub trait Names {
    /// `(tgid, comm)` for owner `tgid`; `multi`: print the process group instead.
    fn name(&mut self, tgid: u32, multi: bool) -> (u32, String);
}

/// One `endpoint_tcp` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpRow {
    /// The fields in meta order.
    pub values: Vec<String>,
    /// The stats key.
    pub key: TcpKey,
    /// The tgid printed.
    pub tgid: u32,
}

/// The wildcard address of `family` in record form (all zero: `0.0.0.0` or `::`).
const WILDCARD: [u8; 16] = [0; 16];

fn role_text(role: u8) -> &'static str {
    if role == ROLE_CLIENT {
        "client"
    } else {
        "server"
    }
}

fn opt(v: Option<u64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// Which server fields have a hook on this kernel beyond the tracepoints (kprobes): the
/// others are printed empty.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sources {
    /// `syn_overflow` (`kprobe/tcp_conn_request`).
    pub syn_overflow: bool,
    /// `synack_sent` (`kprobe/tcp_v4_send_synack`, `tcp_v6_send_synack`).
    pub synack_sent: bool,
}

/// The `toa_client_ip` of a key: the TOA address of a server endpoint's TOA entry, else
/// `client_ip`.
pub fn toa_text(key: &TcpKey, client_ip: &str) -> String {
    if key.role == ROLE_SERVER && key.toa != 0 {
        ip_text(u16::from(key.toa), &key.client)
    } else {
        client_ip.to_owned()
    }
}

/// The fields of one `endpoint_tcp` record (pure). A server endpoint's `client_ip` is the
/// wildcard of its family and its `toa_client_ip` too, but for the connections whose SYN
/// carried a TOA address (their own entry); fields of the other role are empty, and so are
/// `syn_overflow` and `synack_sent` where `src` says no hook gives them.
#[allow(clippy::too_many_arguments)]
pub fn tcp_row(
    key: &TcpKey,
    tgid: u32,
    comm: &str,
    multi: bool,
    d: &[u64; C_NUM],
    listendrop: Option<u64>,
    estab: &Histogram,
    src: Sources,
) -> TcpRow {
    let server = key.role == ROLE_SERVER;
    let client_ip = if server {
        ip_text(key.family, &WILDCARD)
    } else {
        ip_text(key.family, &key.client)
    };
    let toa_ip = toa_text(key, &client_ip);
    let s = |slot: usize| if server { Some(d[slot]) } else { None };
    let k = |slot: usize, hooked: bool| if hooked { s(slot) } else { None };
    let c = |slot: usize| if server { None } else { Some(d[slot]) };
    let values = vec![
        tgid.to_string(),
        comm.to_owned(),
        role_text(key.role).to_owned(),
        client_ip,
        toa_ip,
        ip_text(key.family, &key.server),
        key.port.to_string(),
        family_text(key.family).to_owned(),
        if multi { "1" } else { "0" }.to_owned(),
        opt(if server {
            Some(listendrop.unwrap_or(d[C_LISTEN_DROP]))
        } else {
            None
        }),
        opt(s(C_ACCEPT_OVERFLOW)),
        opt(k(C_SYN_OVERFLOW, src.syn_overflow)),
        opt(s(C_PASSIVE_OPEN)),
        opt(s(C_PASSIVE_FAIL)),
        opt(s(C_RETRAN_SYNACK)),
        opt(c(C_RETRAN_SYN)),
        opt(s(C_REQ_DROP)),
        opt(c(C_ACTIVE_OPEN)),
        opt(c(C_ACTIVE_FAIL)),
        opt(c(C_SYN_SENT)),
        opt(c(C_SYN_DROP)),
        opt(k(C_SYNACK_SENT, src.synack_sent)),
        estab.encode(),
    ];
    TcpRow {
        values,
        key: *key,
        tgid,
    }
}

/// Field positions of the event metrics in a [`TcpRow`].
pub const TCP_EVENT_FIELDS: &[(usize, &str, &str)] = &[
    (9, "listendrop", "TCP listen drops"),
    (10, "accept_overflow", "TCP accept queue overflow"),
    (11, "syn_overflow", "TCP syn queue overflow"),
    (14, "retran_synacks", "TCP SYN-ACK retransmits"),
    (16, "req_drops", "TCP request drops"),
];

/// The events of a row: `(metric, entity id, message)` for each non-zero event metric.
pub fn tcp_events(row: &TcpRow) -> Vec<(&'static str, String, String)> {
    let v = &row.values;
    let id = format!("{}_{}_{}_{}_{}_{}", v[0], v[2], v[3], v[5], v[6], v[7]);
    TCP_EVENT_FIELDS
        .iter()
        .filter_map(|&(i, metric, what)| {
            let n: u64 = v[i].parse().ok()?;
            (n > 0).then(|| {
                (
                    metric,
                    id.clone(),
                    format!(
                        "{what}({n}) on {}:{} of process {} ({}).",
                        v[5], v[6], v[0], v[1]
                    ),
                )
            })
        })
        .collect()
}

/// Builds the `endpoint_tcp` records of a period: every listener, then every other endpoint
/// with a delta (a listener's TOA entries shared like the listener), both only for owners
/// `in_scope`.
pub fn tcp_rows(
    listeners: &[Listener],
    deltas: &HashMap<TcpKey, [u64; C_NUM]>,
    estab: &HashMap<TcpKey, Histogram>,
    in_scope: impl Fn(u32) -> bool,
    names: &mut impl Names,
    src: Sources,
) -> Vec<TcpRow> {
    let empty = Histogram::new(ESTAB_BOUNDS);
    let zero = [0u64; C_NUM];
    let mut rows = Vec::new();
    let mut done = std::collections::HashSet::new();
    for l in listeners.iter().filter(|l| in_scope(l.key.tgid)) {
        if !done.insert(l.key) {
            continue;
        }
        let (tgid, comm) = names.name(l.key.tgid, l.multi);
        let d = deltas.get(&l.key).unwrap_or(&zero);
        let h = estab.get(&l.key).unwrap_or(&empty);
        rows.push(tcp_row(
            &l.key,
            tgid,
            &comm,
            l.multi,
            d,
            l.listendrop,
            h,
            src,
        ));
    }
    let mut rest: Vec<_> = deltas
        .iter()
        .filter(|(k, _)| !done.contains(*k) && in_scope(k.tgid))
        .collect();
    rest.sort_by_key(|(k, _)| (k.tgid, k.role, k.port, k.client, k.server));
    for (key, d) in rest {
        let listener = TcpKey {
            toa: 0,
            client: WILDCARD,
            ..*key
        };
        let multi = key.toa != 0 && listeners.iter().any(|l| l.multi && l.key == listener);
        let (tgid, comm) = names.name(key.tgid, multi);
        let h = estab.get(key).unwrap_or(&empty);
        rows.push(tcp_row(key, tgid, &comm, multi, d, None, h, src));
    }
    rows
}

/// Per listener inode, the `sk_drops` increase since `prev` (`None`: this is the baseline,
/// all zero). A listener absent from `prev` was created since: all its drops are new.
/// Returns the deltas and the next `prev`.
pub fn drop_deltas(
    prev: Option<&HashMap<u64, u64>>,
    now: &[crate::diag::ListenDiag],
) -> (HashMap<u64, u64>, HashMap<u64, u64>) {
    let mut out = HashMap::new();
    let mut next = HashMap::new();
    for d in now {
        let delta = match prev {
            None => 0,
            Some(p) => d.drops.saturating_sub(p.get(&d.ino).copied().unwrap_or(0)),
        };
        out.insert(d.ino, delta);
        next.insert(d.ino, d.drops);
    }
    (out, next)
}

/// The fields of one `endpoint_udp` record (pure).
pub fn udp_row(key: &UdpKey, d: &[u64; 3]) -> Vec<String> {
    vec![
        key.tgid.to_string(),
        ip_text(key.family, &key.laddr),
        key.lport.to_string(),
        ip_text(key.family, &key.raddr),
        key.rport.to_string(),
        family_text(key.family).to_owned(),
        d[0].to_string(),
        d[1].to_string(),
        d[2].to_string(),
    ]
}

/// [`UdpVal`] as a counter array (drops, sends, rcvs).
pub fn udp_counters(v: &UdpVal) -> [u64; 3] {
    [v.drops, v.sends, v.rcvs]
}

/// The listener's stats key.
pub fn server_key(tgid: u32, family: u16, addr: &[u8; 16], port: u16) -> TcpKey {
    TcpKey {
        tgid,
        family,
        port,
        role: ROLE_SERVER,
        server: *addr,
        ..Default::default()
    }
}

/// The BPF listener lookup key: the address normalised to IPv6 (`::ffff:a.b.c.d`).
pub fn listen_key(netns: u32, family: u16, addr: &[u8; 16], port: u16) -> ListenKey {
    let mut norm = *addr;
    if family == AF_INET {
        norm = [0; 16];
        norm[10] = 0xff;
        norm[11] = 0xff;
        norm[12..].copy_from_slice(&addr[..4]);
    }
    ListenKey {
        netns,
        port,
        pad: 0,
        addr: norm,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gala_ebpf::addr::AF_INET6;

    struct Fixed;
    impl Names for Fixed {
        fn name(&mut self, tgid: u32, multi: bool) -> (u32, String) {
            if multi {
                (tgid - 1, "leader".into())
            } else {
                (tgid, format!("p{tgid}"))
            }
        }
    }

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut o = [0; 16];
        o[..4].copy_from_slice(&a);
        o
    }

    fn client_key() -> TcpKey {
        TcpKey {
            tgid: 42,
            family: AF_INET,
            port: 8080,
            role: ROLE_CLIENT,
            client: v4([127, 0, 0, 1]),
            server: v4([127, 0, 0, 2]),
            ..Default::default()
        }
    }

    #[test]
    fn deltas_restart_and_age() {
        let t0 = Instant::now();
        let mut d: Deltas<u32, 2> = Deltas::default();
        let out = d.update(t0, [(1, [5, 0])]).deltas;
        assert_eq!(out[&1], [5, 0], "first sight: everything is new");
        let out = d.update(t0 + Duration::from_secs(5), [(1, [7, 0])]).deltas;
        assert_eq!(out[&1], [2, 0]);
        let out = d.update(t0 + Duration::from_secs(10), [(1, [3, 1])]).deltas;
        assert_eq!(out[&1], [3, 1], "went backwards: counted from 0");
        let u = d.update(t0 + Duration::from_secs(20), [(1, [3, 1]), (2, [0, 0])]);
        assert_eq!(u.deltas[&1], [0, 0], "idle but recent: reported as 0");
        assert!(u.idle.is_empty());
        let late = t0 + Duration::from_secs(10) + IDLE_AFTER;
        let u = d.update(late, [(1, [3, 1])]);
        assert!(
            u.deltas.is_empty(),
            "idle for IDLE_AFTER: no longer reported"
        );
        assert_eq!(u.idle, vec![1]);
        let u = d.update(late, [(1, [4, 1])]);
        assert_eq!(u.deltas[&1], [4, 1], "forgotten: seen anew");
    }

    #[test]
    fn listener_key_is_normalised_like_bpf() {
        let k = listen_key(9, AF_INET, &v4([10, 0, 0, 1]), 80);
        let want: std::net::Ipv6Addr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(k.addr, want.octets());
        let six: std::net::Ipv6Addr = "fe80::1".parse().unwrap();
        assert_eq!(
            listen_key(9, AF_INET6, &six.octets(), 80).addr,
            six.octets()
        );
    }

    #[test]
    fn server_row_has_wildcard_client_and_server_fields_only() {
        let key = server_key(100, AF_INET, &v4([0, 0, 0, 0]), 80);
        let mut d = [0u64; C_NUM];
        d[C_LISTEN_DROP] = 1;
        d[C_ACCEPT_OVERFLOW] = 2;
        d[C_PASSIVE_OPEN] = 3;
        d[C_ACTIVE_OPEN] = 99; // not a server field
        let mut h = Histogram::new(ESTAB_BOUNDS);
        h.record(1_000_000);
        let row = tcp_row(&key, 100, "srv", false, &d, Some(7), &h, Sources::default());
        let v = &row.values;
        assert_eq!(v.len(), 23);
        assert_eq!(
            &v[..9],
            &["100", "srv", "server", "0.0.0.0", "0.0.0.0", "0.0.0.0", "80", "2", "0"]
        );
        assert_eq!(v[9], "7", "sock_diag's listendrop wins over the BPF count");
        assert_eq!(v[10], "2");
        assert_eq!(v[11], "");
        assert_eq!(v[12], "3");
        assert_eq!(v[17], "", "active_open is a client field");
        assert!(v[22].starts_with("8 3000000 1 "));
        let six = server_key(1, AF_INET6, &[0; 16], 443);
        let row = tcp_row(&six, 1, "x", false, &d, None, &h, Sources::default());
        assert_eq!(row.values[3], "::");
        assert_eq!(row.values[9], "1", "no sock_diag: the BPF count");
    }

    #[test]
    fn client_row_and_events() {
        let mut d = [0u64; C_NUM];
        d[C_ACTIVE_FAIL] = 4;
        d[C_SYN_SENT] = 5;
        let h = Histogram::new(ESTAB_BOUNDS);
        let all = Sources {
            syn_overflow: true,
            synack_sent: true,
        };
        let row = tcp_row(&client_key(), 42, "cli", false, &d, None, &h, all);
        let v = &row.values;
        assert_eq!(
            &v[2..8],
            &["client", "127.0.0.1", "127.0.0.1", "127.0.0.2", "8080", "2"]
        );
        assert_eq!((v[18].as_str(), v[19].as_str()), ("4", "5"));
        assert_eq!(v[9], "");
        assert_eq!((v[11].as_str(), v[21].as_str()), ("", ""), "server fields");
        assert!(tcp_events(&row).is_empty(), "client fields raise no event");

        let key = server_key(100, AF_INET, &v4([0, 0, 0, 0]), 80);
        let mut d = [0u64; C_NUM];
        d[C_ACCEPT_OVERFLOW] = 2;
        d[C_RETRAN_SYNACK] = 1;
        let row = tcp_row(&key, 100, "srv", false, &d, Some(0), &h, Sources::default());
        let ev = tcp_events(&row);
        let metrics: Vec<&str> = ev.iter().map(|e| e.0).collect();
        assert_eq!(metrics, ["accept_overflow", "retran_synacks"]);
        assert_eq!(ev[0].1, "100_server_0.0.0.0_0.0.0.0_80_2");
        assert!(ev[0].2.contains("accept queue overflow(2)"));
    }

    #[test]
    fn rows_cover_listeners_then_active_endpoints_in_scope() {
        let lkey = server_key(11, AF_INET, &v4([0, 0, 0, 0]), 80);
        let listeners = vec![Listener {
            key: lkey,
            multi: true,
            listendrop: None,
        }];
        let mut deltas = HashMap::new();
        deltas.insert(client_key(), [1; C_NUM]);
        let mut other = client_key();
        other.tgid = 7; // out of scope
        deltas.insert(other, [1; C_NUM]);
        let mut toa = lkey;
        toa.toa = AF_INET as u8;
        toa.client = v4([203, 0, 113, 9]);
        deltas.insert(toa, [2; C_NUM]);
        let rows = tcp_rows(
            &listeners,
            &deltas,
            &HashMap::new(),
            |t| t != 7,
            &mut Fixed,
            Sources::default(),
        );
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].values[0], "10", "multi: the process group");
        assert_eq!(rows[0].values[1], "leader");
        assert_eq!(rows[0].values[8], "1");
        assert_eq!(
            rows[0].values[12], "0",
            "a quiet listener is reported with zeros"
        );
        assert_eq!(rows[2].values[0], "42");
        let toa_row = &rows[1].values;
        assert_eq!(
            &toa_row[..9],
            &[
                "10",
                "leader",
                "server",
                "0.0.0.0",
                "203.0.113.9",
                "0.0.0.0",
                "80",
                "2",
                "1"
            ],
            "a TOA entry: the listener's row with the TOA address, shared like it"
        );
        assert_eq!(toa_row[12], "2");
    }

    #[test]
    fn kprobe_fields_are_empty_without_their_hooks() {
        let key = server_key(100, AF_INET6, &[0; 16], 80);
        let mut d = [0u64; C_NUM];
        d[C_SYN_OVERFLOW] = 3;
        d[C_SYNACK_SENT] = 4;
        let h = Histogram::new(ESTAB_BOUNDS);
        let none = tcp_row(&key, 1, "s", false, &d, None, &h, Sources::default());
        assert_eq!(
            (none.values[11].as_str(), none.values[21].as_str()),
            ("", "")
        );
        let src = Sources {
            syn_overflow: true,
            synack_sent: true,
        };
        let row = tcp_row(&key, 1, "s", false, &d, None, &h, src);
        assert_eq!(
            (row.values[11].as_str(), row.values[21].as_str()),
            ("3", "4")
        );
        assert_eq!(row.values[4], "::", "no TOA: the wildcard");
        let ev: Vec<&str> = tcp_events(&row).iter().map(|e| e.0).collect();
        assert_eq!(ev, ["syn_overflow"]);
        let mut toa = key;
        toa.toa = AF_INET as u8;
        toa.client = v4([198, 51, 100, 7]);
        let row = tcp_row(&toa, 1, "s", false, &d, None, &h, src);
        assert_eq!(
            (row.values[3].as_str(), row.values[4].as_str()),
            ("::", "198.51.100.7"),
            "an IPv4 TOA address on an IPv6 listener"
        );
    }

    #[test]
    fn listener_drop_deltas() {
        let diag = |ino, drops| crate::diag::ListenDiag {
            ino,
            drops,
            backlog: 0,
            max_backlog: 1,
        };
        let (d, prev) = drop_deltas(None, &[diag(1, 50)]);
        assert_eq!(d[&1], 0, "baseline");
        let (d, _) = drop_deltas(Some(&prev), &[diag(1, 53), diag(2, 4)]);
        assert_eq!((d[&1], d[&2]), (3, 4), "a new listener's drops are all new");
    }

    #[test]
    fn udp_record() {
        let key = UdpKey {
            tgid: 3,
            family: AF_INET,
            lport: 5353,
            laddr: v4([127, 0, 0, 1]),
            ..Default::default()
        };
        assert_eq!(
            udp_row(&key, &[1, 2, 3]),
            ["3", "127.0.0.1", "5353", "0.0.0.0", "0", "2", "1", "2", "3"]
        );
    }
}
