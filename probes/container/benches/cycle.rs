//! CPU cost of one collection cycle over 200 containers (2 processes each, beside 400 host
//! processes) in a generated tree, for the hybrid and the pure v2 layouts, and two scopes: the
//! 200 containers snooped by id (whitelist), and every container (an empty blacklist, which
//! adds a pass over `/proc` to each cycle to find new containers).
//! `cargo bench -p gala-container --bench cycle`; docs/benchmarks.md records the figures.

use std::time::{Duration, Instant};

use gala_container::fixture::{self, Layout};
use gala_container::{CgroupMode, Collector, Host, Scope, TABLES};
use nix::sys::resource::{getrusage, UsageWho};

const CONTAINERS: usize = 200;
const CYCLES: u32 = 50;
/// A tmpfs on every Debian system.
const SHM: &str = "/dev/shm";

/// User + system CPU time of this process.
fn cpu_time() -> Duration {
    let u = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let d =
        |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, (t.tv_usec() * 1000) as u32);
    d(u.user_time()) + d(u.system_time())
}

fn main() {
    for layout in [Layout::Hybrid, Layout::Unified] {
        // In memory, as procfs and cgroupfs are (on a disk filesystem directory reads dominate).
        let dir = tempfile::tempdir_in(SHM)
            .or_else(|_| tempfile::tempdir())
            .expect("tempdir");
        fixture::generate(dir.path(), layout, CONTAINERS, 2, 400).expect("fixture");
        let host = Host::detect(dir.path(), CgroupMode::Auto).expect("host");
        let listed = Scope {
            all_but: false,
            ids: (0..CONTAINERS).map(fixture::container_id).collect(),
            hints: Vec::new(),
        };
        let all = Scope {
            all_but: true,
            ..Scope::default()
        };
        for (name, scope) in [("snooped by id", listed), ("all (blacklist)", all)] {
            measure(
                &format!("{layout:?}, {name}"),
                Collector::new(host.clone()),
                &scope,
            );
        }
    }
}

/// Runs a first cycle (which finds the containers with a pass over `/proc`), then `CYCLES`
/// steady ones, and prints their CPU and wall time.
fn measure(name: &str, mut collector: Collector, scope: &Scope) {
    let records = CONTAINERS * TABLES.len();
    let first_cpu = cpu_time();
    let first = collector.cycle(scope);
    let first_cost = cpu_time() - first_cpu;
    assert_eq!(first.records.len(), records, "{:?}", first.log);
    let cpu0 = cpu_time();
    let wall0 = Instant::now();
    for _ in 0..CYCLES {
        assert_eq!(collector.cycle(scope).records.len(), records);
    }
    let cpu = (cpu_time() - cpu0) / CYCLES;
    let wall = wall0.elapsed() / CYCLES;
    println!(
        "{name}: {CONTAINERS} containers: first cycle {:.2} ms CPU; steady cycle {:.2} ms CPU, {:.2} ms wall (mean of {CYCLES})",
        first_cost.as_secs_f64() * 1e3,
        cpu.as_secs_f64() * 1e3,
        wall.as_secs_f64() * 1e3
    );
}
