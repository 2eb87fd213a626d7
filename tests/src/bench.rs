//! What the benchmark binaries share: the generator probe's sandbox, a process's CPU time,
//! and the min / median / max table rows of `docs/benchmarks.md`.

use std::path::PathBuf;

use crate::{workspace_bin, Sandbox};

/// The generator probe's table (`gopher-bench generate`).
pub const BENCH_META: &str = include_str!("../fixtures/bench.meta");

/// A sandbox whose probes.init starts `gopher-bench generate` as custom probe `bench`
/// (`series` keys, `records` records, waiting for its start file), with a config holding
/// twice `series` per table and `extra` appended; returns the sandbox, the generator's start
/// file and the config file.
pub fn generator_sandbox(series: u64, records: u64, extra: &str) -> (Sandbox, PathBuf, PathBuf) {
    generator_sandbox_for("bench", series, records, extra)
}

/// [`generator_sandbox`] writing the records of `table` of [`BENCH_META`].
pub fn generator_sandbox_for(
    table: &str,
    series: u64,
    records: u64,
    extra: &str,
) -> (Sandbox, PathBuf, PathBuf) {
    let mut sb = Sandbox::new();
    let start_file = sb.path().join("gen.start");
    let script = format!(
        "#!/bin/sh\n{} generate --table {table} --series {series} --records {records} --start-file {}\nexec sleep 3600\n",
        workspace_bin("gopher-bench").display(),
        start_file.display()
    );
    sb.add_custom_probe("bench", &script, BENCH_META);
    sb.write_probes_init("bench {\"state\": \"running\"}\n");
    let conf = sb.write_config(
        &format!(
            "max_tables_num = 16; max_records_num = {}; max_metrics_num = 64; record_timeout = 600;",
            series * 2
        ),
        extra,
    );
    (sb, start_file, conf)
}

/// CPU time (utime + stime) of process `pid` in seconds, from `/proc`; 0 if it is gone.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|u| u.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks / hz
}

/// `| name | min | median | max |` of `v` with `decimals` decimals.
pub fn row(name: &str, v: &[f64], decimals: usize) -> String {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let f = |x: f64| format!("{x:.decimals$}");
    format!(
        "| {name} | {} | {} | {} |",
        f(s[0]),
        f(s[s.len() / 2]),
        f(s[s.len() - 1])
    )
}
