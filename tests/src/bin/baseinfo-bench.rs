//! baseinfo benchmark (`./dev.sh bench-baseinfo`, or `target/release/baseinfo-bench`):
//!
//! 1. CPU time of one baseinfo collection cycle with every host-wide sub-item, against the
//!    CPU time node_exporter (default collectors) spends on one scrape, on this machine in
//!    the same run;
//! 2. one cycle of the `proc` sub-item with 2,000 extra snooped processes (target ≤ 100 ms).
//!
//! Each figure is measured `--runs` times; min / median / max are printed as a Markdown
//! table for `docs/benchmarks.md`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use gala_baseinfo::{Baseinfo, Context, HostRoot, SystemInfo};
use gala_e2e::bench::{cpu_seconds, row};
use gala_e2e::{http_get, start_node_exporter, KillOnDrop};
use gala_probe_sdk::Config;

#[derive(Parser)]
struct Args {
    /// Repetitions of each measurement.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Cycles (or scrapes) per repetition.
    #[arg(long, default_value_t = 50)]
    cycles: usize,
    /// Extra processes for the proc measurement.
    #[arg(long, default_value_t = 2000)]
    procs: usize,
    /// A short run that only shows the benchmark works (CI).
    #[arg(long)]
    quick: bool,
}

/// CPU time (user + system) this process has used.
fn own_cpu() -> Duration {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
        .expect("getrusage");
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    tv(usage.user_time()) + tv(usage.system_time())
}

/// Prints one table row with two decimals.
fn print_row(what: &str, v: Vec<f64>) {
    println!("{}", row(what, &v, 2));
}

fn run(
    config: &Config,
    baseinfo: &mut Baseinfo,
    root: &HostRoot,
    system: &SystemInfo,
    origin: Instant,
) {
    let ctx = Context {
        root,
        config,
        now: origin.elapsed() + Duration::from_secs(1),
        system,
    };
    let round = baseinfo.collect(&ctx);
    std::hint::black_box(round);
}

fn main() {
    let mut args = Args::parse();
    if args.quick {
        args.runs = 1;
        args.cycles = 3;
        args.procs = 50;
    }
    let root = HostRoot::default();
    let system = SystemInfo::detect();
    let origin = Instant::now();
    println!("| figure | min | median | max |");
    println!("| --- | --- | --- | --- |");

    // 1. Host-wide sub-items.
    let host_wide = Config::offline_from(
        "baseinfo",
        Some(r#"{"subitems":["cpu","mem","nic","net","disk","fs","host"]}"#),
    )
    .expect("config");
    let mut per_cycle = Vec::new();
    let mut baseinfo = Baseinfo::default();
    baseinfo.configure(&host_wide);
    run(&host_wide, &mut baseinfo, &root, &system, origin);
    for _ in 0..args.runs {
        let before = own_cpu();
        for _ in 0..args.cycles {
            run(&host_wide, &mut baseinfo, &root, &system, origin);
        }
        per_cycle.push((own_cpu() - before).as_secs_f64() * 1000.0 / args.cycles as f64);
    }
    print_row(
        "baseinfo CPU per cycle (cpu mem nic net disk fs host), ms",
        per_cycle,
    );

    // node_exporter, default collectors, same machine.
    match start_node_exporter() {
        None => println!("| node_exporter CPU per scrape, ms | not installed | | |"),
        Some((ne, port)) => {
            let pid = ne.0.id();
            for _ in 0..3 {
                let _ = http_get(port, "/metrics");
            }
            let mut per_scrape = Vec::new();
            for _ in 0..args.runs {
                let before = cpu_seconds(pid);
                for _ in 0..args.cycles {
                    let _ = http_get(port, "/metrics").expect("scrape");
                }
                per_scrape.push((cpu_seconds(pid) - before) * 1000.0 / args.cycles as f64);
            }
            print_row(
                "node_exporter CPU per scrape (default collectors), ms",
                per_scrape,
            );
        }
    }

    // 2. proc with many snooped processes.
    let children: Vec<KillOnDrop> = (0..args.procs)
        .map(|_| {
            KillOnDrop(
                Command::new("sleep")
                    .arg("600")
                    .stdin(Stdio::null())
                    .spawn()
                    .expect("spawn sleep"),
            )
        })
        .collect();
    let pids: Vec<String> = children
        .iter()
        .map(|c| format!(r#"{{"process":{{"pid":{}}}}}"#, c.0.id()))
        .collect();
    let proc_config = Config::offline_from(
        "baseinfo",
        Some(&format!(
            r#"{{"subitems":["proc"],"snoopers":[{}]}}"#,
            pids.join(",")
        )),
    )
    .expect("config");
    let mut wall = Vec::new();
    let mut cpu = Vec::new();
    let mut baseinfo = Baseinfo::default();
    baseinfo.configure(&proc_config);
    run(&proc_config, &mut baseinfo, &root, &system, origin);
    for _ in 0..args.runs {
        let started = Instant::now();
        let before = own_cpu();
        run(&proc_config, &mut baseinfo, &root, &system, origin);
        cpu.push((own_cpu() - before).as_secs_f64() * 1000.0);
        wall.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    print_row(
        &format!("proc cycle with {} snooped processes, wall ms", args.procs),
        wall,
    );
    print_row(
        &format!("proc cycle with {} snooped processes, CPU ms", args.procs),
        cpu,
    );
}
