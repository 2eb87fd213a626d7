//! Sub-item `net`: TCP and UDP counters of the host's IPv4 stack from `/proc/net/snmp`,
//! looked up by the names in each protocol's header row; tables `system_tcp` and
//! `system_udp`.

use std::collections::HashMap;

use crate::collector::{delta, Collector, Context, Previous, Report};
use crate::error::CollectError;
use crate::record;

/// The file, and the constant key of both tables.
pub const SNMP: &str = "/proc/net/snmp";

/// The `Tcp:` counters reported, in table order after the key. `CurrEstab` is a gauge, the
/// others are counters.
pub const TCP_FIELDS: [&str; 5] = ["CurrEstab", "InSegs", "OutSegs", "RetransSegs", "InErrs"];

/// The `Udp:` counters reported, in table order after the key.
pub const UDP_FIELDS: [&str; 2] = ["InDatagrams", "OutDatagrams"];

/// Parses `/proc/net/snmp`: per protocol (`Tcp`, `Udp`, ...), its values by header name.
/// Each protocol is a header row of names and a value row, both starting with `Proto:`.
/// A value that is not a number (or a row shorter than its header) leaves the name out;
/// values are signed because some are (`Tcp: MaxConn` is -1).
pub fn parse_snmp(text: &str) -> HashMap<&str, HashMap<&str, i64>> {
    let mut out: HashMap<&str, HashMap<&str, i64>> = HashMap::new();
    let mut header: Option<(&str, Vec<&str>)> = None;
    for line in text.lines() {
        let Some((proto, rest)) = line.split_once(':') else {
            continue;
        };
        let proto = proto.trim();
        match header.take() {
            // The value row follows the header row of the same protocol.
            Some((name, names)) if name == proto => {
                let values = out.entry(proto).or_default();
                for (key, word) in names.iter().zip(rest.split_ascii_whitespace()) {
                    if let Ok(v) = word.parse() {
                        values.insert(key, v);
                    }
                }
            }
            _ => header = Some((proto, rest.split_ascii_whitespace().collect())),
        }
    }
    out
}

/// The values of `fields` in one protocol's row, `None` where absent or negative.
fn pick<const N: usize>(
    rows: &HashMap<&str, HashMap<&str, i64>>,
    proto: &str,
    fields: [&str; N],
) -> Option<[Option<u64>; N]> {
    let row = rows.get(proto)?;
    Some(fields.map(|f| row.get(f).and_then(|&v| u64::try_from(v).ok())))
}

/// One round's counters.
#[derive(Debug, Clone, Copy, Default)]
struct SnmpSample {
    tcp: Option<[Option<u64>; 5]>,
    udp: Option<[Option<u64>; 2]>,
}

/// `cur - prev` rendered, empty when either is unknown.
fn delta_text(cur: Option<u64>, prev: Option<u64>) -> String {
    match (cur, prev) {
        (Some(c), Some(p)) => delta(c, p).to_string(),
        _ => String::new(),
    }
}

/// The `net` collector.
#[derive(Debug, Default)]
pub struct NetCollector {
    previous: Previous<&'static str, SnmpSample>,
}

impl Collector for NetCollector {
    fn collect(&mut self, ctx: &Context<'_>, out: &mut Report) -> Result<(), CollectError> {
        let text = ctx.root.read(SNMP)?;
        let rows = parse_snmp(&text);
        let sample = SnmpSample {
            tcp: pick(&rows, "Tcp", TCP_FIELDS),
            udp: pick(&rows, "Udp", UDP_FIELDS),
        };
        if sample.tcp.is_none() && sample.udp.is_none() {
            return Err(CollectError::Parse {
                path: ctx.root.path(SNMP),
                what: "no Tcp: or Udp: rows".into(),
            });
        }
        for (proto, row, fields) in [
            ("tcp", sample.tcp.map(|r| r.to_vec()), &TCP_FIELDS[..]),
            ("udp", sample.udp.map(|r| r.to_vec()), &UDP_FIELDS[..]),
        ] {
            match row {
                None => out.warn(proto, format!("{SNMP} has no {proto} rows")),
                Some(values) => {
                    let missing: Vec<&str> = fields
                        .iter()
                        .zip(&values)
                        .filter(|(_, v)| v.is_none())
                        .map(|(f, _)| *f)
                        .collect();
                    if !missing.is_empty() {
                        out.warn(
                            format!("{proto}-fields"),
                            format!("{SNMP}: no {} in its {proto} row", missing.join(", ")),
                        );
                    }
                }
            }
        }
        self.previous.begin();
        let Some((_, prev)) = self.previous.advance(SNMP, ctx.now, sample) else {
            return Ok(());
        };
        if let (Some(cur), Some(old)) = (sample.tcp, prev.tcp) {
            let d = |i: usize| delta_text(cur[i], old[i]);
            let estab = cur[0].map_or_else(String::new, |v| v.to_string());
            record!(out, "system_tcp", SNMP, estab, d(1), d(2), d(3), d(4));
        }
        if let (Some(cur), Some(old)) = (sample.udp, prev.udp) {
            let d = |i: usize| delta_text(cur[i], old[i]);
            record!(out, "system_udp", SNMP, d(0), d(1));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNMP_TEXT: &str = "\
Ip: Forwarding DefaultTTL InReceives
Ip: 1 64 1000
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors
Tcp: 1 200 120000 -1 10 20 1 2 7 5000 4000 30 2 5 0
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 800 3 0 700 0 0 0 0 0
UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
UdpLite: 0 0 0 0 0 0 0 0 0
";

    #[test]
    fn rows_by_header_name() {
        let rows = parse_snmp(SNMP_TEXT);
        assert_eq!(rows["Tcp"]["MaxConn"], -1);
        assert_eq!(
            pick(&rows, "Tcp", TCP_FIELDS),
            Some([Some(7), Some(5000), Some(4000), Some(30), Some(2)])
        );
        assert_eq!(pick(&rows, "Udp", UDP_FIELDS), Some([Some(800), Some(700)]));
        assert_eq!(rows["UdpLite"]["InDatagrams"], 0);
        assert!(pick(&rows, "Icmp", UDP_FIELDS).is_none());
    }

    #[test]
    fn columns_in_another_order_or_missing() {
        // A kernel that moved a column, dropped one and cut the value row short.
        let rows = parse_snmp(
            "Tcp: InSegs CurrEstab OutSegs InErrs RetransSegs\nTcp: 11 3 12 x\nUdp: OutDatagrams\nUdp: 9\n",
        );
        assert_eq!(
            pick(&rows, "Tcp", TCP_FIELDS),
            Some([Some(3), Some(11), Some(12), None, None])
        );
        assert_eq!(pick(&rows, "Udp", UDP_FIELDS), Some([None, Some(9)]));
    }

    #[test]
    fn a_header_without_values_is_no_row() {
        let rows = parse_snmp("Tcp: CurrEstab InSegs\nUdp: InDatagrams OutDatagrams\nUdp: 1 2\n");
        assert!(pick(&rows, "Tcp", TCP_FIELDS).is_none());
        assert_eq!(pick(&rows, "Udp", UDP_FIELDS), Some([Some(1), Some(2)]));
        assert!(parse_snmp("").is_empty());
        assert!(parse_snmp("garbage\n\n").is_empty());
    }

    #[test]
    fn deltas_clamp_and_unknowns_stay_empty() {
        assert_eq!(delta_text(Some(10), Some(4)), "6");
        assert_eq!(delta_text(Some(3), Some(4)), "0");
        assert_eq!(delta_text(None, Some(4)), "");
        assert_eq!(delta_text(Some(3), None), "");
    }
}
