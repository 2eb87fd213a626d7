//! Each built-in probe's own sub-item table — the one it plans its work from — names the
//! same sub-items as the daemon's catalogue (`framework/src/probes/catalogue.rs`), which the
//! REST API checks `cmd.probe` against: a name on one side only would be accepted and do
//! nothing, or be refused though the probe has it.

use gala_gopher::probes::catalogue::BUILTIN_PROBES;

/// The catalogue's sub-items of probe `name`, sorted.
fn catalogue(name: &str) -> Vec<&'static str> {
    let probe = BUILTIN_PROBES
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("{name} is not in the catalogue"));
    sorted(probe.subitems.iter().map(|(s, _)| *s))
}

/// The names, sorted, without the eBPF probes' core entry (`""`, not a sub-item).
fn sorted(names: impl Iterator<Item = &'static str>) -> Vec<&'static str> {
    let mut v: Vec<&str> = names.filter(|n| !n.is_empty()).collect();
    v.sort_unstable();
    v
}

#[test]
fn tcp_subitems_match_the_catalogue() {
    let own = sorted(gala_tcpprobe::SUBITEMS.iter().map(|s| s.name));
    assert_eq!(own, catalogue(gala_tcpprobe::NAME));
}

#[test]
fn socket_subitems_match_the_catalogue() {
    let own = sorted(gala_endpoint::SUBITEMS.iter().map(|s| s.name));
    assert_eq!(own, catalogue(gala_endpoint::NAME));
}

#[test]
fn io_subitems_match_the_catalogue() {
    let own = sorted(gala_ioprobe::SUBITEMS.iter().map(|s| s.name));
    assert_eq!(own, catalogue(gala_ioprobe::NAME));
}

#[test]
fn proc_subitems_match_the_catalogue() {
    let own = sorted(gala_taskprobe::SUBITEMS.iter().map(|s| s.name));
    assert_eq!(own, catalogue(gala_taskprobe::NAME));
}

#[test]
fn baseinfo_subitems_match_the_catalogue() {
    let own = sorted(gala_baseinfo::SUBITEMS.iter().map(|s| s.name));
    assert_eq!(own, catalogue("baseinfo"));
}
