//! Kafka egress benchmark (see docs/benchmarks.md): records/s a generator probe gets delivered
//! to a real broker (tansu on loopback, memory storage) through `metric.out_channel = "kafka"`,
//! and the daemon's CPU while doing it. Run with `./dev.sh bench-kafka` (release build, the
//! test dependencies installed under `target/test-deps/python`).

use std::time::{Duration, Instant};

use clap::Parser;
use gala_e2e::bench::{cpu_seconds, generator_sandbox, row};
use gala_e2e::tansu::Broker;
use gala_e2e::{Daemon, Samples};

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
    let broker = Broker::start(&[("gala_gopher", 3)]);
    // The queue holds a whole run: the generator writes faster than any broker takes, and
    // the benchmark measures delivery, not drops (which are counted and reported).
    let extra = format!(
        "kafka = {{ kafka_broker = \"{}\"; queue_buffering_max_messages = {}; }};",
        broker.addr(),
        records.max(1000) + 1000
    );
    let (sb, start_file, conf) = generator_sandbox(series, records, &extra);
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
