//! Benchmarks of the real daemon (see docs/benchmarks.md): ingest through a real pipe into the
//! imdb against a bare pipe reader as the ceiling, scrape latency at 10k and 100k series, and
//! idle memory. Run with `./dev.sh bench` (release build).

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use gala_e2e::{Daemon, Samples, Sandbox};

/// Every generated record is this long, newline included.
const RECORD_LEN: usize = 100;

use gala_e2e::bench::{cpu_seconds, generator_sandbox_for, row};

#[derive(Parser)]
#[command(about = "gala-gopher benchmarks")]
struct Args {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Repetitions of each measurement (min / median / max are reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Records per ingest run.
    #[arg(long, default_value_t = 20_000_000)]
    records: u64,
    /// A fast smoke run (CI): every measurement once, on few records, two scrapes each.
    #[arg(long)]
    quick: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// The generator probe: writes `records` 100-byte records over `series` series to stdout.
    Generate {
        #[arg(long)]
        series: u64,
        #[arg(long)]
        records: u64,
        /// Written with the start time just before the first record, and `<file>.done` at the end.
        #[arg(long)]
        start_file: Option<std::path::PathBuf>,
        /// The table: `bench`, or `bench_tgid` / `bench_pid` (keyed by the generator's pid).
        #[arg(long, default_value = "bench")]
        table: String,
    },
}

fn main() {
    let args = Args::parse();
    if let Some(Cmd::Generate {
        series,
        records,
        start_file,
        table,
    }) = args.cmd
    {
        generate(&table, series, records, start_file.as_deref());
        return;
    }
    let (runs, records) = if args.quick {
        (1, 200_000)
    } else {
        (args.runs, args.records)
    };
    let mut rows = Vec::new();
    let mut ingest = Vec::new();
    let mut ceiling = Vec::new();
    let mut cpu = Vec::new();
    for run in 0..runs {
        let c = bare_pipe(10_000, records);
        let (r, load) = daemon_ingest("bench", 10_000, records);
        eprintln!("run {run}: ceiling {c:.0}/s, daemon {r:.0}/s, daemon CPU {load:.0} %");
        ceiling.push(c);
        ingest.push(r);
        cpu.push(load);
    }
    let ratio: Vec<f64> = ingest
        .iter()
        .zip(&ceiling)
        .map(|(i, c)| 100.0 * i / c)
        .collect();
    rows.push(row(
        "ingest, records/s (10k series, 100-byte records)",
        &ingest,
        0,
    ));
    rows.push(row(
        "ceiling: bare pipe reader + memchr splitter, records/s",
        &ceiling,
        0,
    ));
    rows.push(row("ingest / ceiling, %", &ratio, 1));
    rows.push(row("daemon CPU during ingest, % of one core", &cpu, 0));
    for (series, scrapes) in [(10_000u64, 30), (100_000, 30), (1_000_000, 3)] {
        let scrapes = if args.quick { 1 } else { scrapes };
        let s = scrape_latency("bench", series, scrapes);
        rows.push(row(
            &format!("scrape latency at {series} series, ms"),
            &s.latency_ms,
            1,
        ));
        if let Some(rate) = s.ingest {
            rows.push(row(
                &format!("ingest of {series} new series (2 records each), records/s"),
                &[rate],
                0,
            ));
        }
        rows.push(row(
            &format!("daemon RSS holding {series} series, before any scrape, MB"),
            &[s.rss_loaded_mb],
            1,
        ));
        rows.push(row(
            &format!("daemon RSS holding {series} series, after the scrapes, MB"),
            &[s.rss_after_mb],
            1,
        ));
    }
    rows.extend(labels_cost(runs, records, args.quick));
    rows.push(row("idle daemon RSS, MB", &[idle_rss()], 1));
    println!("| figure | min | median | max |\n| --- | --- | --- | --- |");
    for r in rows {
        println!("{r}");
    }
}

/// The cost of the process labels: the same 10k series keyed by the generator's pid, as
/// `pid` (nothing derived) and as `tgid` (comm and container labels derived), through ingest
/// and scrapes; alternating, `runs` times.
fn labels_cost(runs: usize, records: u64, quick: bool) -> Vec<String> {
    let (mut ingest, mut scrape) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    for _ in 0..runs {
        for (i, table) in ["bench_pid", "bench_tgid"].into_iter().enumerate() {
            ingest[i].push(daemon_ingest(table, 10_000, records).0);
            let s = scrape_latency(table, 10_000, if quick { 1 } else { 30 });
            scrape[i].extend(s.latency_ms);
        }
    }
    let ratio: Vec<f64> = (ingest[1].iter().zip(&ingest[0]))
        .map(|(on, off)| 100.0 * on / off)
        .collect();
    vec![
        row(
            "ingest, 10k series keyed by `pid` (labels off), records/s",
            &ingest[0],
            0,
        ),
        row(
            "ingest, 10k series keyed by `tgid` (labels on), records/s",
            &ingest[1],
            0,
        ),
        row("ingest with labels on / off, %", &ratio, 1),
        row(
            "scrape latency, 10k series keyed by `pid` (labels off), ms",
            &scrape[0],
            1,
        ),
        row(
            "scrape latency, 10k series keyed by `tgid` (labels on), ms",
            &scrape[1],
            1,
        ),
    ]
}

/// The records of `series` series of `table`, 100 bytes each.
fn record_block(table: &str, series: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(series as usize * RECORD_LEN);
    let pid = std::process::id();
    for i in 0..series {
        let head = if table == "bench" {
            format!("|bench|s{i:07}|")
        } else {
            format!("|{table}|{pid}|s{i:07}|")
        };
        let tail = format!("|{}.25|{}|{}|\n", i % 977, i % 13, i * 7);
        let pad = RECORD_LEN - head.len() - tail.len();
        out.extend_from_slice(head.as_bytes());
        out.extend(std::iter::repeat_n(b'n', pad));
        out.extend_from_slice(tail.as_bytes());
    }
    out
}

fn generate(table: &str, series: u64, records: u64, start_file: Option<&Path>) {
    let block = record_block(table, series);
    let mut out = std::fs::File::from(
        std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .expect("stdout"),
    );
    if let Some(f) = start_file {
        std::fs::write(f, now_ns().to_string()).expect("start file");
    }
    let mut left = records;
    while left > 0 {
        let n = left.min(series);
        if out.write_all(&block[..n as usize * RECORD_LEN]).is_err() {
            break;
        }
        left -= n;
    }
    if let Some(f) = start_file {
        std::fs::write(f.with_extension("done"), now_ns().to_string()).expect("done file");
    }
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// The ceiling: the generator into a bare reader that splits lines and fields with memchr.
fn bare_pipe(series: u64, records: u64) -> f64 {
    let start = Instant::now();
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .args([
            "generate",
            "--series",
            &series.to_string(),
            "--records",
            &records.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("generator");
    let mut out = child.stdout.take().expect("stdout");
    // The same pipe size the daemon asks for its probes.
    let _ = nix::fcntl::fcntl(
        std::os::fd::AsRawFd::as_raw_fd(&out),
        nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20),
    );
    let mut buf = vec![0u8; 256 * 1024];
    let (mut lines, mut fields, mut filled) = (0u64, 0u64, 0usize);
    loop {
        let n = out.read(&mut buf[filled..]).expect("read");
        if n == 0 {
            break;
        }
        let end = filled + n;
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', &buf[..end]) {
            fields += memchr::memchr_iter(b'|', &buf[start..nl]).count() as u64;
            lines += 1;
            start = nl + 1;
        }
        buf.copy_within(start..end, 0);
        filled = end - start;
    }
    let _ = child.wait();
    assert_eq!(lines, records);
    assert!(fields > 0);
    records as f64 / start.elapsed().as_secs_f64()
}

fn bench_sandbox(table: &str, series: u64, records: u64) -> (Sandbox, std::path::PathBuf) {
    let (sb, start_file, _) = generator_sandbox_for(table, series, records, "");
    (sb, start_file)
}

fn received(d: &Daemon) -> u64 {
    Samples::parse(&d.scrape())
        .value(
            "gala_gopher_daemon_records_received_total",
            &[("probe", "bench")],
        )
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn wait_file(path: &Path, timeout: Duration) -> u128 {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(ns) = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            return ns;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Records/s through the daemon and its CPU use (% of one core) over the run.
fn daemon_ingest(table: &str, series: u64, records: u64) -> (f64, f64) {
    let (sb, start_file) = bench_sandbox(table, series, records);
    let daemon = sb.start();
    let start_ns = wait_file(&start_file, Duration::from_secs(30));
    let cpu0 = cpu_seconds(daemon.pid());
    attach_profiler("GOPHER_BENCH_PROFILE_INGEST", daemon.pid());
    wait_file(&start_file.with_extension("done"), Duration::from_secs(600));
    let deadline = Instant::now() + Duration::from_secs(120);
    while received(&daemon) < records {
        assert!(
            Instant::now() < deadline,
            "daemon did not ingest every record"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let secs = (now_ns() - start_ns) as f64 / 1e9;
    let cpu = cpu_seconds(daemon.pid()) - cpu0;
    (records as f64 / secs, 100.0 * cpu / secs)
}

/// What [`scrape_latency`] measured.
struct ScrapeRun {
    /// Each scrape's wall time, ms.
    latency_ms: Vec<f64>,
    /// Records/s from the generator's start until the daemon went idle (1M series only: the
    /// smaller runs load too fast to time).
    ingest: Option<f64>,
    /// RSS with every series stored, before the first scrape.
    rss_loaded_mb: f64,
    /// RSS after the last scrape (its response sent).
    rss_after_mb: f64,
}

/// Scrape latencies with `series` series loaded (two records each), and the daemon's RSS
/// before and after them.
fn scrape_latency(table: &str, series: u64, scrapes: usize) -> ScrapeRun {
    let (sb, start_file) = bench_sandbox(table, series, series * 2);
    let daemon = sb.start();
    let start_ns = wait_file(&start_file, Duration::from_secs(30));
    wait_file(&start_file.with_extension("done"), Duration::from_secs(600));
    // No scrape before the RSS is read: wait until the daemon's CPU time stands still.
    let idle_ns = wait_idle(daemon.pid());
    let rss_loaded_mb = rss_mb(daemon.pid());
    assert_eq!(received(&daemon), series * 2, "every record stored");
    let ingest =
        (series >= 1_000_000).then(|| (series * 2) as f64 / ((idle_ns - start_ns) as f64 / 1e9));
    if attach_profiler("GOPHER_BENCH_PROFILE", daemon.pid()) {
        std::thread::sleep(Duration::from_millis(500));
    }
    let mut latency_ms = Vec::new();
    let mut buf = Vec::new();
    for _ in 0..scrapes {
        let t = Instant::now();
        let len = scrape_len(sb.metrics_port, &mut buf);
        latency_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(len as u64 > series * 50);
    }
    drop(buf);
    let s = Samples::parse(&daemon.scrape());
    let sum: f64 = s
        .value("gala_gopher_daemon_scrape_duration_seconds_sum", &[])
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let count: f64 = s
        .value("gala_gopher_daemon_scrape_duration_seconds_count", &[])
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    eprintln!(
        "{series} series: server-side render {:.1} ms on average",
        1000.0 * sum / count
    );
    ScrapeRun {
        latency_ms,
        ingest,
        rss_loaded_mb,
        rss_after_mb: rss_mb(daemon.pid()),
    }
}

/// Waits until process `pid` has used no CPU for 100 ms; returns when its last CPU time was
/// seen to grow (wall clock, ns).
fn wait_idle(pid: u32) -> u128 {
    let deadline = Instant::now() + Duration::from_secs(600);
    let (mut last, mut last_change, mut still) = (cpu_seconds(pid), now_ns(), 0);
    while still < 10 {
        assert!(Instant::now() < deadline, "the daemon never went idle");
        std::thread::sleep(Duration::from_millis(10));
        let cpu = cpu_seconds(pid);
        if cpu > last {
            (last, last_change, still) = (cpu, now_ns(), 0);
        } else {
            still += 1;
        }
    }
    last_change
}

/// Developer aid: runs the shell command in `var` (e.g. `perf record -p PID -- sleep 3`)
/// with `PID` replaced by the daemon's pid; returns whether one was started.
fn attach_profiler(var: &str, pid: u32) -> bool {
    let Ok(cmd) = std::env::var(var) else {
        return false;
    };
    Command::new("sh")
        .arg("-c")
        .arg(cmd.replace("PID", &pid.to_string()))
        .spawn()
        .is_ok()
}

/// One `GET /metrics` as a scraper does it: the whole response read into a reused buffer.
fn scrape_len(port: u16, buf: &mut Vec<u8>) -> usize {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("request");
    buf.clear();
    s.read_to_end(buf).expect("response");
    assert!(buf.starts_with(b"HTTP/1.1 200"), "scrape failed");
    buf.len()
}

/// RSS of a daemon with no probe after it has served one scrape.
fn idle_rss() -> f64 {
    let sb = Sandbox::new();
    sb.write_config(
        "max_tables_num = 1024; max_records_num = 1024; max_metrics_num = 64; record_timeout = 60;",
        "",
    );
    let daemon = sb.start();
    std::thread::sleep(Duration::from_secs(2));
    daemon.scrape();
    rss_mb(daemon.pid())
}
