//! Overhead of the network eBPF probes (`./dev.sh bench-net`, or `target/release/net-bench`):
//! `wrk` against `nginx` on loopback, with the `tcp` and `socket` probes off, and on with
//! nginx's master and worker snooped (every sub-item), `--runs` pairs in alternating order
//! (`--probes tcp` or `--probes socket` for one probe alone).
//!
//! Printed (Markdown, for `docs/benchmarks.md`): requests/s off and on and their ratio
//! (target ≥ 97 %), the probes' own CPU % while wrk runs, and each BPF program's run time per
//! event from the `ebpf_prog` table (`bpf_enable_stats`).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use gala_e2e::bench::{cpu_seconds, row};
use gala_e2e::{free_port, poll_until, repo_root, Daemon, Samples, Sandbox};

#[derive(Parser)]
struct Args {
    /// Off/on pairs.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Seconds of each wrk run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// wrk connections.
    #[arg(long, default_value_t = 50)]
    connections: u32,
    /// A short run that only shows the benchmark works (CI).
    #[arg(long)]
    quick: bool,
    /// The probes switched on: `tcp`, `socket` or both (for a per-probe breakdown).
    #[arg(long, value_delimiter = ',', default_values_t = [String::from("tcp"), String::from("socket")])]
    probes: Vec<String>,
    /// Keep the kernel's BPF statistics on all the time (`GALA_EBPF_STATS=1`): exact ns per
    /// run for every program, at the statistics' own cost in throughput.
    #[arg(long)]
    stats_always: bool,
    /// The probes' report_period in seconds (the default is the probes' own). Per-program
    /// figures need a report inside each wrk run: use 5 with `--stats-always`.
    #[arg(long, default_value_t = 60)]
    report_period: u32,
}

/// nginx's master process; stopped with SIGTERM (the master stops its workers) and reaped.
struct Nginx(std::process::Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// On-CPU time of `pid` in seconds: `/proc/<pid>/schedstat` (ns), else utime + stime.
fn cpu_time(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or_else(|| cpu_seconds(pid), |ns| ns / 1e9)
}

/// nginx on `port` with one worker, everything under `dir`.
fn start_nginx(dir: &Path, port: u16) -> Nginx {
    for sub in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        std::fs::create_dir_all(dir.join(sub)).expect("nginx temp dir");
    }
    let d = dir.display();
    let conf = format!(
        "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/client_body;\n  proxy_temp_path {d}/proxy;\n  \
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
         server {{ listen 127.0.0.1:{port}; location / {{ return 200 \"hello from nginx\\n\"; }} }}\n}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).expect("nginx.conf");
    let child = Command::new("nginx")
        .args(["-e", &format!("{d}/error.log"), "-p"])
        .arg(dir)
        .arg("-c")
        .arg(&path)
        .args(["-g", "daemon off;"])
        .stdin(Stdio::null())
        .spawn()
        .expect("start nginx (apt-get install nginx-light)");
    poll_until(Duration::from_secs(10), 50, || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .map_err(|e| format!("nginx does not listen on {port}: {e}"))
    });
    Nginx(child)
}

/// Pids of `nginx`'s master (`master`) and its workers.
fn nginx_pids(master: u32) -> Vec<u32> {
    let mut pids = vec![master];
    pids.extend(children(master));
    pids
}

/// Pids whose parent is `ppid`.
fn children(ppid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let parent = stat
            .rsplit_once(") ")
            .and_then(|(_, r)| r.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if parent == Some(ppid) {
            out.push(pid);
        }
    }
    out
}

/// Requests per second of one wrk run.
fn wrk(port: u16, seconds: u64, connections: u32) -> f64 {
    let out = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            &format!("http://127.0.0.1:{port}/"),
        ])
        .output()
        .expect("run wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk output:\n{text}"))
}

/// `ns_per_run` (the last statistics window) per `probe/prog` from `ebpf_prog` in a scrape.
fn bpf_costs(scrape: &str) -> BTreeMap<String, f64> {
    Samples::parse(scrape)
        .find("gala_gopher_ebpf_prog_ns_per_run", &[])
        .into_iter()
        .map(|sample| {
            let key = format!(
                "{}/{}",
                sample.labels.get("probe").map_or("", |v| v),
                sample.labels.get("prog").map_or("", |v| v)
            );
            (key, sample.value.parse().unwrap_or(0.0))
        })
        .collect()
}

/// Starts `probes` on `pids`, every sub-item, and waits until their programs are attached:
/// until each reports its `ebpf_prog` table when it reports within 10 s, else 3 s after
/// each runs.
fn probes_on(d: &Daemon, pids: &[u32], probes: &[String], report_period: u32) {
    let pids = pids
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    for (probe, items) in [
        (
            "tcp",
            r#""tcp_stats","tcp_abnormal","tcp_windows","tcp_rtt","tcp_srtt","tcp_rate","tcp_sockbuf","tcp_delay""#,
        ),
        ("socket", r#""tcp_socket","udp_socket""#),
    ] {
        if !probes.iter().any(|p| p == probe) {
            continue;
        }
        let body = format!(
            r#"{{"cmd":{{"probe":[{items}]}},"snoopers":{{"proc_id":[{pids}]}},"params":{{"report_period":{report_period}}},"state":"running"}}"#
        );
        let (status, text) = d.put(probe, &body);
        assert_eq!(status, 200, "PUT {probe}: {text}");
    }
    if report_period > 10 {
        poll_until(Duration::from_secs(30), 200, || {
            let n = probe_pids(d.pid()).len();
            (n == probes.len())
                .then_some(())
                .ok_or_else(|| format!("{n} of {} probes running", probes.len()))
        });
        std::thread::sleep(Duration::from_secs(3));
        return;
    }
    poll_until(Duration::from_secs(30), 500, || {
        let costs = bpf_costs(&d.scrape());
        let all = probes
            .iter()
            .all(|p| costs.keys().any(|k| k.starts_with(&format!("{p}/"))));
        all.then_some(())
            .ok_or_else(|| format!("not every probe in ebpf_prog: {costs:?}"))
    });
}

fn probes_off(d: &Daemon, probes: &[String]) {
    for probe in probes {
        let (status, text) = d.put(probe, r#"{"state":"stopped"}"#);
        assert_eq!(status, 200, "PUT {probe}: {text}");
    }
    poll_until(Duration::from_secs(10), 100, || {
        let left = probe_pids(d.pid());
        left.is_empty()
            .then_some(())
            .ok_or_else(|| format!("probes still running: {left:?}"))
    });
}

/// Pids of the daemon's `tcpprobe` and `endpoint` children.
fn probe_pids(daemon: u32) -> Vec<u32> {
    children(daemon)
        .into_iter()
        .filter(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            matches!(comm.trim(), "tcpprobe" | "endpoint")
        })
        .collect()
}

fn main() {
    let mut args = Args::parse();
    if args.quick {
        args.runs = 1;
        args.seconds = 3;
    }
    // In CI (the smoke run of ./dev.sh test) a machine without BPF fails the run.
    if let Err(reason) = gala_e2e::ebpf::bpf_usable() {
        gala_e2e::require::unavailable(&reason);
        return;
    }
    let sb = Sandbox::new();
    let root = repo_root();
    let meta = |p: &str| std::fs::read_to_string(root.join(p)).expect(p);
    gala_e2e::ebpf::install_builtin(
        &sb,
        "tcpprobe",
        &[("tcp_link.meta", &meta("probes/tcp/tcp_link.meta"))],
    );
    gala_e2e::ebpf::install_builtin(
        &sb,
        "endpoint",
        &[("endpoint.meta", &meta("probes/endpoint/endpoint.meta"))],
    );
    sb.write_config(
        "max_tables_num = 64; max_records_num = 65536; max_metrics_num = 128; record_timeout = 60;",
        "supervisor = { stop_grace = 2; snooper_period = 1; };",
    );
    let d = if args.stats_always {
        sb.start_with_env(&[("GALA_EBPF_STATS", "1")])
    } else {
        sb.start()
    };
    let port = free_port();
    let nginx = start_nginx(&sb.path().join("nginx"), port);
    poll_until(Duration::from_secs(10), 50, || {
        (nginx_pids(nginx.0.id()).len() >= 2)
            .then_some(())
            .ok_or_else(|| "no nginx worker".to_owned())
    });
    let pids = nginx_pids(nginx.0.id());
    // Warm-up: connections, page cache, CPU frequency.
    wrk(port, 2, args.connections);

    let (mut off, mut on, mut ratio, mut cpu) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut per_event: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    // Off and on alternate in order (off-on, on-off, ...) so that a drift of the machine
    // (CPU frequency, page cache, TIME_WAIT sockets) does not favour either.
    for i in 0..args.runs {
        let mut rps_off = 0.0;
        for on_now in [i % 2 == 1, i % 2 == 0] {
            if !on_now {
                rps_off = wrk(port, args.seconds, args.connections);
                continue;
            }
            probes_on(&d, &pids, &args.probes, args.report_period);
            let probes = probe_pids(d.pid());
            let cpu0: f64 = probes.iter().map(|&p| cpu_time(p)).sum();
            let t0 = Instant::now();
            on.push(wrk(port, args.seconds, args.connections));
            let wall = t0.elapsed().as_secs_f64();
            let cpu1: f64 = probes.iter().map(|&p| cpu_time(p)).sum();
            cpu.push(100.0 * (cpu1 - cpu0) / wall);
            // Reported every 5 s, so the last window lies inside the wrk run.
            for (prog, ns) in bpf_costs(&d.scrape()) {
                if ns > 0.0 {
                    per_event.entry(prog).or_default().push(ns);
                }
            }
            probes_off(&d, &args.probes);
        }
        off.push(rps_off);
        ratio.push(100.0 * on[i] / rps_off);
    }
    let pooled = 100.0 * on.iter().sum::<f64>() / off.iter().sum::<f64>();
    println!(
        "wrk -t1 -c{} -d{}s, nginx 1 worker, {} off/on pairs, probes on: {}, report_period {} s, BPF statistics {}",
        args.connections,
        args.seconds,
        args.runs,
        args.probes.join(" + "),
        args.report_period,
        if args.stats_always {
            "always on"
        } else {
            "sampled"
        }
    );
    println!("| figure | min | median | max |");
    println!("| --- | --- | --- | --- |");
    println!("{}", row("requests/s, probes off", &off, 0));
    println!("{}", row("requests/s, probes on", &on, 0));
    println!("{}", row("throughput on / off per pair, %", &ratio, 1));
    println!(
        "{}",
        row(
            "throughput on / off over all runs, % (target ≥ 97)",
            &[pooled],
            1
        )
    );
    println!("{}", row("probes' CPU, % of one core", &cpu, 1));
    for (prog, v) in &per_event {
        println!("{}", row(&format!("BPF ns per run, {prog}"), v, 0));
    }
    drop(nginx);
    d.terminate();
}
