//! Metadata: the entity description of every loaded table, published at start, every
//! [`PERIOD`], and whenever the set of tables changes (docs/reference/meta-and-records.md §6).
//!
//! One message per table, the original's shape byte for byte (spaces after `:` and `,`), but
//! JSON-escaped. A [`MetadataPublisher`] thread renders them from the [`Registry`] and hands
//! them to a [`MetadataOutput`]: the meta log `<logs.meta_dir>/gopher_meta.log` (one message
//! per line, 100 MB then renamed to `.1`, [`MetaLogFile`]) or the meta Kafka topic
//! ([`KafkaMetaOutput`], `meta.out_channel = "kafka"`).
//!
//! The registry is fixed after start, so its set of tables never changes while the daemon
//! runs; [`MetadataPublisher::republish`] is the hook a future meta reload calls, and the
//! daemon calls it on SIGHUP so an operator (or a consumer that lost its state) can have the
//! metadata sent again at once.
//!
//! Every message is counted in `gala_gopher_daemon_metadata_messages_total{channel,outcome}`
//! (`written`, `write_error`); write errors are logged, rate-limited.

use std::io;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gala_meta::{FieldType, Registry, TableMeta};

use crate::clock;
use crate::egress::json::push_str;
use crate::egress::kafka::KafkaProducer;
use crate::labels::{CONTAINER_LABELS, PROCESS_LABELS, PROC_LABELS};
use crate::logfile::{LogFileError, RotatingFile};
use crate::ratelimit::{RateLimiter, Verdict};
use crate::selfmetrics;

/// How often the metadata is published again (the original's 600 s).
pub const PERIOD: Duration = Duration::from_secs(600);
/// Name of the meta log in `logs.meta_dir`.
pub const FILE_NAME: &str = "gopher_meta.log";
/// Most bytes of the meta log before it is renamed to `.1` (the original's 100 MB).
pub const MAX_FILE_BYTES: u64 = 100 * 1024 * 1024;

/// How long the publisher waits at shutdown for queued Kafka messages to be delivered.
pub const KAFKA_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Why metadata could not be published.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// The meta log could not be opened or written.
    #[error(transparent)]
    File(#[from] LogFileError),
    /// The publisher thread could not be started.
    #[error("start the metadata publisher thread: {0}")]
    Thread(#[source] io::Error),
}

/// Renders the metadata message of `table` (no trailing newline):
///
/// ```text
/// {"timestamp": <ms>, "meta_name": "<table>", "entity_name": "<entity>", "version": "<version>", "keys": ["machine_id", <keys>], "labels": ["hostname", <labels>, <extras>], "metrics": [<counters and gauges>]}
/// ```
///
/// Fields keep their meta order and full names; the extras are those of docs/reference/meta-and-records.md §6 (for `tgid`
/// tables, then for entity `proc`, then for entity `container`). Every string is escaped.
pub fn render(table: &TableMeta, timestamp_ms: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + 16 * table.fields.len());
    out.extend_from_slice(b"{\"timestamp\": ");
    out.extend_from_slice(timestamp_ms.to_string().as_bytes());
    out.extend_from_slice(b", \"meta_name\": ");
    push_str(&mut out, table.name.as_bytes());
    out.extend_from_slice(b", \"entity_name\": ");
    push_str(&mut out, table.entity.as_bytes());
    out.extend_from_slice(b", \"version\": ");
    push_str(&mut out, table.version.as_bytes());

    let of_type = |ty: FieldType| {
        table
            .fields
            .iter()
            .filter(move |f| f.ty == ty)
            .map(|f| f.name.as_str())
    };
    out.extend_from_slice(b", \"keys\": ");
    push_list(
        &mut out,
        std::iter::once("machine_id").chain(of_type(FieldType::Key)),
    );

    let mut extras: Vec<&str> = Vec::new();
    if table.is_process_level() {
        extras.extend(PROCESS_LABELS);
    }
    match table.entity.as_str() {
        "proc" => extras.extend(PROC_LABELS),
        "container" => extras.extend(CONTAINER_LABELS),
        _ => {}
    }
    out.extend_from_slice(b", \"labels\": ");
    push_list(
        &mut out,
        std::iter::once("hostname")
            .chain(of_type(FieldType::Label))
            .chain(extras),
    );

    out.extend_from_slice(b", \"metrics\": ");
    push_list(
        &mut out,
        table
            .fields
            .iter()
            .filter(|f| matches!(f.ty, FieldType::Counter | FieldType::Gauge))
            .map(|f| f.name.as_str()),
    );
    out.push(b'}');
    out
}

/// Writes `["a", "b", ...]`.
fn push_list<'a>(out: &mut Vec<u8>, items: impl Iterator<Item = &'a str>) {
    out.push(b'[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        push_str(out, item.as_bytes());
    }
    out.push(b']');
}

/// Where metadata messages go.
pub trait MetadataOutput: Send {
    /// The `channel` label of the counters: `logs` or `kafka`.
    fn channel(&self) -> &'static str;

    /// Sends one message (without newline).
    fn send(&mut self, message: &[u8]) -> Result<(), MetadataError>;

    /// Called once when the publisher stops: delivers what is still queued.
    fn finish(&mut self) {}
}

/// The meta log file, `<logs.meta_dir>/gopher_meta.log`: one message per line.
#[derive(Debug)]
pub struct MetaLogFile {
    file: RotatingFile,
    line: Vec<u8>,
}

impl MetaLogFile {
    /// Creates `dir` (0750) and opens the meta log in it (0640, appending); the file is renamed
    /// to `.1` when it would exceed `max_file_bytes`.
    pub fn open(dir: &Path, max_file_bytes: u64) -> Result<Self, MetadataError> {
        Ok(MetaLogFile {
            file: RotatingFile::open(dir, FILE_NAME, max_file_bytes)?,
            line: Vec::new(),
        })
    }

    /// The current file.
    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

impl MetadataOutput for MetaLogFile {
    fn channel(&self) -> &'static str {
        "logs"
    }

    fn send(&mut self, message: &[u8]) -> Result<(), MetadataError> {
        // One write per line, so a rotation never splits a message.
        self.line.clear();
        self.line.extend_from_slice(message);
        self.line.push(b'\n');
        Ok(self.file.append(&self.line)?)
    }
}

/// The meta Kafka topic (`meta.kafka_topic`) through the shared producer: messages are handed
/// to librdkafka's queue, whose delivery and drops the producer counts
/// (`gala_gopher_daemon_kafka_messages_total{channel="meta"}`).
pub struct KafkaMetaOutput {
    producer: KafkaProducer,
}

impl KafkaMetaOutput {
    /// Publishes through `producer`, which is bound to the meta topic.
    pub fn new(producer: KafkaProducer) -> Self {
        KafkaMetaOutput { producer }
    }
}

impl MetadataOutput for KafkaMetaOutput {
    fn channel(&self) -> &'static str {
        "kafka"
    }

    fn send(&mut self, message: &[u8]) -> Result<(), MetadataError> {
        self.producer.send(message);
        Ok(())
    }

    fn finish(&mut self) {
        self.producer.flush(KAFKA_FLUSH_TIMEOUT);
    }
}

enum Command {
    Republish,
    Stop,
}

/// The handle of the publisher thread.
pub struct MetadataPublisher {
    tx: Sender<Command>,
    thread: JoinHandle<()>,
}

impl MetadataPublisher {
    /// Starts the thread: it publishes every table of `registry` to `output` at once, then
    /// every `period`, and on [`MetadataPublisher::republish`].
    pub fn start(
        registry: Arc<Registry>,
        output: Box<dyn MetadataOutput>,
        period: Duration,
    ) -> Result<Self, MetadataError> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("metadata".into())
            .spawn(move || run(&registry, output, period, &rx))
            .map_err(MetadataError::Thread)?;
        Ok(MetadataPublisher { tx, thread })
    }

    /// Publishes every table again now: the hook for a change of the set of tables (and
    /// SIGHUP). The period restarts from here.
    pub fn republish(&self) {
        let _ = self.tx.send(Command::Republish);
    }

    /// Stops the thread after the round in progress and lets the output deliver what is queued
    /// (blocks until done).
    pub fn finish(self) {
        let _ = self.tx.send(Command::Stop);
        if self.thread.join().is_err() {
            tracing::error!("metadata publisher panicked");
        }
    }
}

fn run(
    registry: &Registry,
    mut output: Box<dyn MetadataOutput>,
    period: Duration,
    rx: &Receiver<Command>,
) {
    let channel = output.channel();
    let written = selfmetrics::metadata_messages(channel, "written");
    let failed = selfmetrics::metadata_messages(channel, "write_error");
    let mut error_log = RateLimiter::new(Duration::from_secs(60), 1);
    loop {
        let now = clock::wall_ms();
        for (_, table) in registry.iter() {
            match output.send(&render(table, now)) {
                Ok(()) => written.increment(1),
                Err(e) => {
                    failed.increment(1);
                    if let Verdict::Log { suppressed } = error_log.check(Instant::now()) {
                        tracing::error!(channel, suppressed, table = table.name, "metadata: {e}");
                    }
                }
            }
        }
        match rx.recv_timeout(period) {
            Ok(Command::Republish) | Err(RecvTimeoutError::Timeout) => {}
            Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    output.finish();
}

#[cfg(test)]
mod tests {
    use super::*;
    use gala_meta::{Field, MetaLimits};
    use parking_lot::Mutex;

    fn table(name: &str, entity: &str, version: &str, fields: &[(&str, FieldType)]) -> TableMeta {
        let fields = fields.iter().map(|&(n, ty)| Field::new(n, ty)).collect();
        TableMeta::new(name, entity, version, fields, "t.meta", 1)
    }

    fn text(t: &TableMeta) -> String {
        String::from_utf8(render(t, 1700000000123)).unwrap()
    }

    use FieldType::*;

    #[test]
    fn every_field_type() {
        let t = table(
            "tcp_tx_rx",
            "tcp_link",
            "1.0.0",
            &[
                ("src_ip", Key),
                ("role", Label),
                ("dst_ip", Key),
                ("rx_bytes", Counter),
                ("srtt", Gauge),
                ("rtt_hist", Histogram),
                ("q", Summary),
            ],
        );
        assert_eq!(
            text(&t),
            r#"{"timestamp": 1700000000123, "meta_name": "tcp_tx_rx", "entity_name": "tcp_link", "version": "1.0.0", "keys": ["machine_id", "src_ip", "dst_ip"], "labels": ["hostname", "role"], "metrics": ["rx_bytes", "srtt"]}"#
        );
    }

    #[test]
    fn tgid_table_gets_the_process_labels() {
        let t = table(
            "proc_io",
            "task",
            "1.0.0",
            &[("TGID", Key), ("fd", Label), ("reads", Counter)],
        );
        assert_eq!(
            text(&t),
            r#"{"timestamp": 1700000000123, "meta_name": "proc_io", "entity_name": "task", "version": "1.0.0", "keys": ["machine_id", "TGID"], "labels": ["hostname", "fd", "comm", "container_id", "container_name", "container_image", "pod_id", "pod", "pod_namespace"], "metrics": ["reads"]}"#
        );
        // A metric column named tgid does not make the table process level.
        let t = table("t", "e", "1", &[("k", Key), ("tgid", Gauge)]);
        assert!(text(&t).contains(r#""labels": ["hostname"]"#));
    }

    #[test]
    fn proc_and_container_entities() {
        let t = table("proc", "proc", "1.0.0", &[("tgid", Key), ("utime", Gauge)]);
        assert_eq!(
            text(&t),
            r#"{"timestamp": 1700000000123, "meta_name": "proc", "entity_name": "proc", "version": "1.0.0", "keys": ["machine_id", "tgid"], "labels": ["hostname", "comm", "container_id", "container_name", "container_image", "pod_id", "pod", "pod_namespace", "cmdline", "start_time"], "metrics": ["utime"]}"#
        );
        let t = table(
            "container_basic",
            "container",
            "1.0.0",
            &[("container_id", Key), ("name", Label), ("cpu", Counter)],
        );
        assert_eq!(
            text(&t),
            r#"{"timestamp": 1700000000123, "meta_name": "container_basic", "entity_name": "container", "version": "1.0.0", "keys": ["machine_id", "container_id"], "labels": ["hostname", "name", "container_name", "container_image", "pod_id", "pod", "pod_namespace"], "metrics": ["cpu"]}"#
        );
    }

    #[test]
    fn full_names_are_kept() {
        let long = "f".repeat(63);
        let t = table("t", "e", "1", &[(&long, Key)]);
        assert!(text(&t).contains(&format!("\"{long}\"")));
    }

    #[test]
    fn strings_are_escaped() {
        // Names are validated at load; the version is free text. Escape everything anyway.
        let t = table("t\"1", "e\\2", "1.0\"\\\n", &[("k\"", Key), ("g\\", Gauge)]);
        let s = text(&t);
        assert_eq!(
            s,
            r#"{"timestamp": 1700000000123, "meta_name": "t\"1", "entity_name": "e\\2", "version": "1.0\"\\\n", "keys": ["machine_id", "k\""], "labels": ["hostname"], "metrics": ["g\\"]}"#
        );
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["version"], "1.0\"\\\n");
        assert_eq!(v["keys"][1], "k\"");
    }

    #[test]
    fn version_comes_from_the_meta_file() {
        let src = r#"version = "2.\"x\"";
measurements: ({ table_name: "t"; entity_name: "e"; fields: ({ description: "a \"q\" \\ d"; type: "key"; name: "k"; }); });"#;
        let tables =
            gala_meta::parse_meta_file(Path::new("x.meta"), src, &MetaLimits::default()).unwrap();
        let s = text(&tables[0]);
        assert!(s.contains(r#""version": "2.\"x\"""#), "{s}");
        serde_json::from_str::<serde_json::Value>(&s).unwrap();
    }

    /// Collects messages; fails the ones whose text contains `fail`.
    #[derive(Clone, Default)]
    struct Capture {
        sent: Arc<Mutex<Vec<String>>>,
        finishes: Arc<Mutex<usize>>,
    }

    impl MetadataOutput for Capture {
        fn channel(&self) -> &'static str {
            "test"
        }
        fn send(&mut self, message: &[u8]) -> Result<(), MetadataError> {
            let s = String::from_utf8(message.to_vec()).unwrap();
            if s.contains("fail") {
                return Err(MetadataError::Thread(io::Error::other("boom")));
            }
            self.sent.lock().push(s);
            Ok(())
        }
        fn finish(&mut self) {
            *self.finishes.lock() += 1;
        }
    }

    fn registry(names: &[&str]) -> Arc<Registry> {
        let mut r = Registry::new();
        r.add_tables(
            names
                .iter()
                .map(|n| table(n, "e", "1", &[("k", Key), ("v", Gauge)]))
                .collect(),
        )
        .unwrap();
        Arc::new(r)
    }

    fn wait_for(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn names(c: &Capture) -> Vec<String> {
        c.sent
            .lock()
            .iter()
            .map(|s| {
                let v: serde_json::Value = serde_json::from_str(s).unwrap();
                v["meta_name"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    #[test]
    fn publishes_at_start_and_every_period() {
        let c = Capture::default();
        let p = MetadataPublisher::start(
            registry(&["a", "b"]),
            Box::new(c.clone()),
            Duration::from_millis(50),
        )
        .unwrap();
        wait_for("three rounds", || c.sent.lock().len() >= 6);
        p.finish();
        let n = names(&c);
        assert_eq!(&n[..6], ["a", "b", "a", "b", "a", "b"]);
        assert_eq!(n.len() % 2, 0, "rounds are whole");
        assert_eq!(*c.finishes.lock(), 1, "finished once");
    }

    #[test]
    fn republish_sends_again_at_once() {
        let c = Capture::default();
        let p = MetadataPublisher::start(registry(&["a"]), Box::new(c.clone()), PERIOD).unwrap();
        wait_for("first round", || c.sent.lock().len() == 1);
        p.republish();
        p.republish();
        wait_for("two more rounds", || c.sent.lock().len() == 3);
        p.finish();
        assert_eq!(names(&c), ["a", "a", "a"]);
    }

    #[test]
    fn a_failing_message_does_not_stop_the_others() {
        let c = Capture::default();
        let p =
            MetadataPublisher::start(registry(&["a", "fail", "b"]), Box::new(c.clone()), PERIOD)
                .unwrap();
        wait_for("first round", || c.sent.lock().len() == 2);
        p.finish();
        assert_eq!(names(&c), ["a", "b"]);
        assert_eq!(*c.finishes.lock(), 1);
    }

    #[test]
    fn meta_log_holds_one_line_per_table_and_rotates() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("meta");
        let reg = registry(&["a", "b"]);
        let one = render(reg.table(gala_meta::TableId(0)), clock::wall_ms()).len() as u64 + 1;
        // Two lines fit; the third round's first line rotates.
        let out = MetaLogFile::open(&dir, 2 * one).unwrap();
        let p = MetadataPublisher::start(reg, Box::new(out), PERIOD).unwrap();
        let cur = dir.join(FILE_NAME);
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        wait_for("first round", || read(&cur).lines().count() == 2);
        p.republish();
        wait_for("rotation", || dir.join("gopher_meta.log.1").exists());
        p.finish();
        let (c, b) = (read(&cur), read(&dir.join("gopher_meta.log.1")));
        assert_eq!((b.lines().count(), c.lines().count()), (2, 2));
        for line in b.lines().chain(c.lines()) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["keys"][0], "machine_id");
        }
        assert!(c.ends_with('\n'));
    }

    #[test]
    fn open_error_names_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let blocker = tmp.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let err = MetaLogFile::open(&blocker.join("meta"), MAX_FILE_BYTES).unwrap_err();
        assert!(
            err.to_string().contains(&*blocker.to_string_lossy()),
            "{err}"
        );
    }
}
