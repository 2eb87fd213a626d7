//! CPU cost of one collection cycle over 200 containers (2 processes each, beside 400 host
//! processes) in a generated tree, for the hybrid and the pure v2 layouts, every container
//! reported (an empty blacklist: the costliest scope, with a `/proc` pass each cycle).
//! `cargo bench -p gala-container --bench cycle`; docs/benchmarks.md records the figures.

use std::time::{Duration, Instant};

use gala_container::fixture::{self, Layout};
use gala_container::{CgroupMode, Collector, Host, Scope};
use nix::sys::resource::{getrusage, UsageWho};

const CONTAINERS: usize = 200;
const CYCLES: u32 = 50;

/// User + system CPU time of this process.
fn cpu_time() -> Duration {
    let u = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let d = |t: nix::sys::time::TimeVal| {
        Duration::new(t.tv_sec() as u64, (t.tv_usec() * 1000) as u32)
    };
    d(u.user_time()) + d(u.system_time())
}

fn main() {
    for layout in [Layout::Hybrid, Layout::Unified] {
        let dir = tempfile::tempdir().expect("tempdir");
        fixture::generate(dir.path(), layout, CONTAINERS, 2, 400).expect("fixture");
        let host = Host::detect(dir.path(), CgroupMode::Auto).expect("host");
        let mut collector = Collector::new(host);
        let scope = Scope {
            all_but: true,
            ..Scope::default()
        };
        // The first cycle finds the containers (a full /proc pass); later ones are the steady state.
        let first_cpu = cpu_time();
        let first = collector.cycle(&scope);
        let first_cost = cpu_time() - first_cpu;
        assert_eq!(collector.containers().count(), CONTAINERS);
        assert_eq!(first.records.len(), CONTAINERS * 7, "{:?}", first.log);
        let cpu0 = cpu_time();
        let wall0 = Instant::now();
        for _ in 0..CYCLES {
            let cycle = collector.cycle(&scope);
            assert_eq!(cycle.records.len(), CONTAINERS * 7);
        }
        let cpu = (cpu_time() - cpu0) / CYCLES;
        let wall = wall0.elapsed() / CYCLES;
        println!(
            "{layout:?}: {CONTAINERS} containers: first cycle {:.2} ms CPU; steady cycle {:.2} ms CPU, {:.2} ms wall (mean of {CYCLES})",
            first_cost.as_secs_f64() * 1e3,
            cpu.as_secs_f64() * 1e3,
            wall.as_secs_f64() * 1e3
        );
    }
}
