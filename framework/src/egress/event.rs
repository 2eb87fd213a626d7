//! Events (`|event|...|` lines of probes) to the event log `<logs.event_dir>/gopher_event_<n>`.
//!
//! This is `event.out_channel = "logs"` (docs/reference/meta-and-records.md §5, docs/reference/config-and-egress.md §9).
//! Each probe's validator converts its parsed [`EventLine`]s with [`ProbeEvents::submit`]: the
//! event gets its entity id (EID) and JSON line, is de-duplicated per EID over
//! `event.timeout` ([`Dedup`]), and is queued (at most [`QUEUE_LEN`] events) to one writer
//! thread, so file I/O never blocks probe ingress. The writer appends one JSON object per line
//! to `gopher_event_<n>`, 50 MB per file plus one `.1` backup ([`RotatingFile`]).
//!
//! `<n>` is the original's file number: 0 at start; when the current file disappears (removed
//! or moved away by an operator or a log collector) the writer continues in `gopher_event_<n+1>`.
//! Unlike the original, the file of a previous run is appended to, not deleted.
//!
//! What happens to each event is counted in `gala_gopher_daemon_events_total{probe,outcome}`
//! (`written`, `suppressed`, `dropped`); drops also in
//! `gala_gopher_daemon_events_dropped_total{probe,reason}` (`queue_full`, `write_error`,
//! `closed`). Malformed events (EID ≥ 256 bytes, metric name ≥ 64 bytes) are the ingress's
//! `bad_event` drops.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gala_meta::record::EventLine;
use metrics::Counter;
use parking_lot::Mutex;

use crate::clock;
use crate::egress::json::push_str;
use crate::logfile::{LogFileError, RotatingFile};
use crate::ratelimit::{RateLimiter, Verdict};
use crate::selfmetrics;

/// Prefix of the event files; the suffix is the decimal file number.
pub const FILE_PREFIX: &str = "gopher_event_";
/// Most bytes of one event file (the original's 100 MB shared by the file and its backup).
pub const MAX_FILE_BYTES: u64 = 50 * 1024 * 1024;
/// Events waiting for the writer thread; more are dropped (`queue_full`).
pub const QUEUE_LEN: usize = 4096;
/// EIDs remembered for de-duplication (the original SDK's table size).
pub const DEDUP_CAPACITY: usize = 1000;
/// Longest EID accepted, in bytes (the original's 256-byte buffer with its NUL).
pub const MAX_ENTITY_ID_LEN: usize = 255;
/// Longest `Resource.metric` accepted, in bytes (the original's 64-byte buffer with its NUL).
pub const MAX_METRIC_LEN: usize = 63;

/// Why an event line cannot become an event (counted by ingress as `bad_event`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// `<machine_id>_<entity_name>_<entity_id>` is too long.
    #[error("entity id is {len} bytes long (at most {MAX_ENTITY_ID_LEN})")]
    EntityIdTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// `gala_gopher_<entity_name>_<metric>` is too long.
    #[error("metric name is {len} bytes long (at most {MAX_METRIC_LEN})")]
    MetricTooLong {
        /// Its length in bytes.
        len: usize,
    },
}

/// Why the event log could not be started.
#[derive(Debug, thiserror::Error)]
pub enum EventLogError {
    /// The directory or the first file could not be created.
    #[error(transparent)]
    File(#[from] LogFileError),
    /// The writer thread could not be started.
    #[error("start the event log writer thread: {0}")]
    Thread(#[source] io::Error),
}

/// An event converted for output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventJson {
    /// The EID, `<machine_id>_<entity_name>_<entity_id with / as :>`: the de-duplication key.
    pub entity_id: String,
    /// The JSON object and its `\n`.
    pub line: Vec<u8>,
}

/// The EID of `ev`: `<machine_id>_<entity_name>_<entity_id>`, every `/` of the reported entity
/// id replaced by `:`. Invalid UTF-8 becomes U+FFFD.
pub fn entity_id(machine_id: &str, ev: &EventLine<'_>) -> Result<String, EventError> {
    let name = String::from_utf8_lossy(ev.entity_name);
    let id = String::from_utf8_lossy(ev.entity_id);
    let mut eid = String::with_capacity(machine_id.len() + name.len() + id.len() + 2);
    eid.push_str(machine_id);
    eid.push('_');
    eid.push_str(&name);
    eid.push('_');
    eid.extend(id.chars().map(|c| if c == '/' { ':' } else { c }));
    if eid.len() > MAX_ENTITY_ID_LEN {
        return Err(EventError::EntityIdTooLong { len: eid.len() });
    }
    Ok(eid)
}

/// `Resource.metric` of `ev`: `gala_gopher_<entity_name>_<metric>`.
pub fn metric_name(ev: &EventLine<'_>) -> Result<String, EventError> {
    let name = format!(
        "gala_gopher_{}_{}",
        String::from_utf8_lossy(ev.entity_name),
        String::from_utf8_lossy(ev.metric)
    );
    if name.len() > MAX_METRIC_LEN {
        return Err(EventError::MetricTooLong { len: name.len() });
    }
    Ok(name)
}

/// Converts `ev` into the event JSON of docs/reference/meta-and-records.md §5.3, keys in the original's
/// order:
///
/// ```text
/// {"Timestamp":<ms>,"event_id":"<ms>_<EID>","Attributes":{"entity_id":"<EID>","event_id":"<ms>_<EID>","event_type":"sys"},
///  "Resource":{"metric":"gala_gopher_<entity>_<metric>","labels":{"Host":"<machine_id>","PID":"..","COMM":"..","IP":"..","ContainerID":"..","POD":"..","Device":".."}},
///  "SeverityText":"..","SeverityNumber":<n>,"Body":".."}
/// ```
///
/// `<ms>` is `wall_ms` cut to whole seconds. Every string is JSON-escaped; every label is
/// present, empty ones as `""` (as the original); an empty `SeverityNumber` is written as `0`
/// (the original wrote nothing, which is not JSON).
pub fn render(ev: &EventLine<'_>, machine_id: &str, wall_ms: u64) -> Result<EventJson, EventError> {
    let eid = entity_id(machine_id, ev)?;
    let metric = metric_name(ev)?;
    let ms = wall_ms / 1000 * 1000;
    let event_id = format!("{ms}_{eid}");
    let mut out = Vec::with_capacity(256 + 2 * eid.len() + ev.body.len());
    out.extend_from_slice(b"{\"Timestamp\":");
    out.extend_from_slice(ms.to_string().as_bytes());
    out.extend_from_slice(b",\"event_id\":");
    push_str(&mut out, event_id.as_bytes());
    out.extend_from_slice(b",\"Attributes\":{\"entity_id\":");
    push_str(&mut out, eid.as_bytes());
    out.extend_from_slice(b",\"event_id\":");
    push_str(&mut out, event_id.as_bytes());
    out.extend_from_slice(b",\"event_type\":\"sys\"},\"Resource\":{\"metric\":");
    push_str(&mut out, metric.as_bytes());
    out.extend_from_slice(b",\"labels\":{\"Host\":");
    push_str(&mut out, machine_id.as_bytes());
    for (name, value) in [
        ("PID", ev.pid),
        ("COMM", ev.comm),
        ("IP", ev.ip),
        ("ContainerID", ev.container_id),
        ("POD", ev.pod_id),
        ("Device", ev.device),
    ] {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
        push_str(&mut out, value);
    }
    out.extend_from_slice(b"}},\"SeverityText\":");
    push_str(&mut out, ev.severity_text);
    out.extend_from_slice(b",\"SeverityNumber\":");
    // The parser accepts only empty or JSON integers here.
    if ev.severity_number.is_empty() {
        out.push(b'0');
    } else {
        out.extend_from_slice(ev.severity_number);
    }
    out.extend_from_slice(b",\"Body\":");
    push_str(&mut out, ev.body);
    out.extend_from_slice(b"}\n");
    Ok(EventJson {
        entity_id: eid,
        line: out,
    })
}

/// Per-EID de-duplication: an event is suppressed while one for the same EID was written less
/// than the period ago. Suppressed events do not extend the period. At most `capacity` EIDs
/// are remembered; when full, expired ones are forgotten first, then the oldest.
#[derive(Debug)]
pub struct Dedup {
    period_ms: u64,
    capacity: usize,
    /// EID → when its last event was written (a [`clock::now_ms`] time).
    last: HashMap<Box<str>, u64>,
}

impl Dedup {
    /// A table for `period` (zero: nothing is suppressed) holding at most `capacity` EIDs.
    pub fn new(period: Duration, capacity: usize) -> Self {
        Dedup {
            period_ms: u64::try_from(period.as_millis()).unwrap_or(u64::MAX),
            capacity: capacity.max(1),
            last: HashMap::new(),
        }
    }

    /// Whether an event for `eid` at `now_ms` is to be written (nothing is recorded).
    pub fn allows(&self, eid: &str, now_ms: u64) -> bool {
        if self.period_ms == 0 {
            return true;
        }
        self.last
            .get(eid)
            .is_none_or(|&t| now_ms.saturating_sub(t) >= self.period_ms)
    }

    /// Records that an event for `eid` was written at `now_ms`.
    pub fn record(&mut self, eid: &str, now_ms: u64) {
        if self.period_ms == 0 {
            return;
        }
        if let Some(t) = self.last.get_mut(eid) {
            *t = now_ms;
            return;
        }
        if self.last.len() >= self.capacity {
            let period = self.period_ms;
            self.last.retain(|_, t| now_ms.saturating_sub(*t) < period);
        }
        if self.last.len() >= self.capacity {
            let oldest = self
                .last
                .iter()
                .min_by_key(|(_, &t)| t)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.last.remove(&k);
            }
        }
        self.last.insert(eid.into(), now_ms);
    }

    /// EIDs remembered.
    pub fn len(&self) -> usize {
        self.last.len()
    }

    /// Whether no EID is remembered.
    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

/// Settings of the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLogConfig {
    /// `logs.event_dir`.
    pub dir: PathBuf,
    /// The `<uuid>-<ip>` machine id (`Host` label, EID prefix).
    pub machine_id: String,
    /// `event.timeout`: de-duplication period; zero turns it off.
    pub dedup_period: Duration,
    /// Most bytes per file (the backup has as many).
    pub max_file_bytes: u64,
    /// Events waiting for the writer at most.
    pub queue_len: usize,
    /// EIDs remembered for de-duplication.
    pub dedup_capacity: usize,
}

impl EventLogConfig {
    /// The original's sizes: [`MAX_FILE_BYTES`], [`QUEUE_LEN`], [`DEDUP_CAPACITY`].
    pub fn new(dir: PathBuf, machine_id: String, dedup_period: Duration) -> Self {
        EventLogConfig {
            dir,
            machine_id,
            dedup_period,
            max_file_bytes: MAX_FILE_BYTES,
            queue_len: QUEUE_LEN,
            dedup_capacity: DEDUP_CAPACITY,
        }
    }
}

/// What [`ProbeEvents::submit`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Queued for the writer.
    Queued,
    /// Suppressed: an event for the same EID was written less than `event.timeout` ago.
    Suppressed,
    /// Dropped: the writer's queue was full.
    QueueFull,
    /// Dropped: the writer has stopped (daemon shutdown).
    Closed,
}

/// The counters of one probe's events.
struct EventCounters {
    written: Counter,
    suppressed: Counter,
    dropped: Counter,
    queue_full: Counter,
    write_error: Counter,
    closed: Counter,
}

impl EventCounters {
    fn new(probe: &str) -> Self {
        let outcome = |o| selfmetrics::events(probe, o);
        let reason = |r| selfmetrics::events_dropped(probe, r);
        EventCounters {
            written: outcome("written"),
            suppressed: outcome("suppressed"),
            dropped: outcome("dropped"),
            queue_full: reason("queue_full"),
            write_error: reason("write_error"),
            closed: reason("closed"),
        }
    }

    fn count_drop(&self, reason: &Counter) {
        self.dropped.increment(1);
        reason.increment(1);
    }
}

enum Message {
    Event {
        line: Vec<u8>,
        counters: Arc<EventCounters>,
    },
    Stop,
}

struct Shared {
    machine_id: String,
    tx: SyncSender<Message>,
    dedup: Mutex<Dedup>,
}

/// The entry of the event log shared by every probe's ingress; cheap to clone.
#[derive(Clone)]
pub struct EventSink {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSink")
            .field("machine_id", &self.shared.machine_id)
            .finish_non_exhaustive()
    }
}

impl EventSink {
    /// Creates the directory (0750) and opens `gopher_event_0` (0640, appending), then starts
    /// the writer thread. Returns the sink for the probes and the writer's handle, which
    /// writes what is queued and stops on [`EventLogWriter::finish`].
    pub fn start(config: EventLogConfig) -> Result<(EventSink, EventLogWriter), EventLogError> {
        let files = EventFiles::open(config.dir.clone(), config.max_file_bytes)?;
        let (sink, tx, rx) = EventSink::unstarted(&config);
        let thread = std::thread::Builder::new()
            .name("event-log".into())
            .spawn(move || write_events(rx, files))
            .map_err(EventLogError::Thread)?;
        Ok((sink, EventLogWriter { tx, thread }))
    }

    /// A sink and both ends of its queue, before any writer reads it.
    fn unstarted(config: &EventLogConfig) -> (EventSink, SyncSender<Message>, Receiver<Message>) {
        let (tx, rx) = mpsc::sync_channel(config.queue_len.max(1));
        let sink = EventSink {
            shared: Arc::new(Shared {
                machine_id: config.machine_id.clone(),
                tx: tx.clone(),
                dedup: Mutex::new(Dedup::new(config.dedup_period, config.dedup_capacity)),
            }),
        };
        (sink, tx, rx)
    }

    /// The submitter of probe `probe`'s events, with its counters.
    pub fn for_probe(&self, probe: &str) -> ProbeEvents {
        ProbeEvents {
            sink: self.clone(),
            counters: Arc::new(EventCounters::new(probe)),
            probe: probe.into(),
            drop_log: RateLimiter::new(Duration::from_secs(10), 1),
        }
    }
}

/// One probe's way into the event log.
pub struct ProbeEvents {
    sink: EventSink,
    counters: Arc<EventCounters>,
    probe: Box<str>,
    drop_log: RateLimiter,
}

impl ProbeEvents {
    /// Converts, de-duplicates and queues `ev` (timestamped now). An error means the event is
    /// malformed; every other fate is counted here or by the writer.
    pub fn submit(&mut self, ev: &EventLine<'_>) -> Result<Outcome, EventError> {
        self.submit_at(ev, clock::now_ms(), clock::wall_ms())
    }

    /// [`ProbeEvents::submit`] with explicit clocks: `now_ms` ([`clock::now_ms`]) for the
    /// de-duplication, `wall_ms` for the timestamp.
    pub fn submit_at(
        &mut self,
        ev: &EventLine<'_>,
        now_ms: u64,
        wall_ms: u64,
    ) -> Result<Outcome, EventError> {
        let event = render(ev, &self.sink.shared.machine_id, wall_ms)?;
        let outcome = {
            // Held across the (non-blocking) send: an event counts as written for the
            // de-duplication only once it is in the queue.
            let mut dedup = self.sink.shared.dedup.lock();
            if !dedup.allows(&event.entity_id, now_ms) {
                Outcome::Suppressed
            } else {
                let msg = Message::Event {
                    line: event.line,
                    counters: self.counters.clone(),
                };
                match self.sink.shared.tx.try_send(msg) {
                    Ok(()) => {
                        dedup.record(&event.entity_id, now_ms);
                        Outcome::Queued
                    }
                    Err(TrySendError::Full(_)) => Outcome::QueueFull,
                    Err(TrySendError::Disconnected(_)) => Outcome::Closed,
                }
            }
        };
        match outcome {
            Outcome::Queued => {}
            Outcome::Suppressed => self.counters.suppressed.increment(1),
            Outcome::QueueFull => {
                self.counters.count_drop(&self.counters.queue_full);
                if let Verdict::Log { suppressed } = self.drop_log.check(Instant::now()) {
                    tracing::warn!(
                        probe = &*self.probe,
                        suppressed,
                        "event dropped: the event log queue is full"
                    );
                }
            }
            Outcome::Closed => self.counters.count_drop(&self.counters.closed),
        }
        Ok(outcome)
    }
}

/// The handle of the writer thread.
pub struct EventLogWriter {
    tx: SyncSender<Message>,
    thread: JoinHandle<()>,
}

impl EventLogWriter {
    /// Writes every event queued so far, then stops the thread (blocks until it has).
    /// Events submitted afterwards are dropped as `closed`.
    pub fn finish(self) {
        // FIFO: the writer reaches the stop after every event queued before it.
        let _ = self.tx.send(Message::Stop);
        if self.thread.join().is_err() {
            tracing::error!("event log writer panicked");
        }
    }
}

/// The writer thread: appends each queued event until told to stop.
fn write_events(rx: Receiver<Message>, mut files: EventFiles) {
    let mut error_log = RateLimiter::new(Duration::from_secs(60), 5);
    while let Ok(Message::Event { line, counters }) = rx.recv() {
        match files.append(&line) {
            Ok(()) => counters.written.increment(1),
            Err(e) => {
                counters.count_drop(&counters.write_error);
                if let Verdict::Log { suppressed } = error_log.check(Instant::now()) {
                    tracing::warn!(suppressed, "event log: {e}");
                }
            }
        }
    }
}

/// `gopher_event_<n>` and its backup.
struct EventFiles {
    dir: PathBuf,
    n: u64,
    file: RotatingFile,
    max_file_bytes: u64,
}

impl EventFiles {
    fn open(dir: PathBuf, max_file_bytes: u64) -> Result<Self, LogFileError> {
        let file = RotatingFile::open(&dir, &file_name(0), max_file_bytes)?;
        Ok(EventFiles {
            dir,
            n: 0,
            file,
            max_file_bytes,
        })
    }

    /// Appends one line; when the current file has disappeared, continues in the next one.
    fn append(&mut self, line: &[u8]) -> Result<(), LogFileError> {
        if !present(self.file.path()) {
            let next = self.n + 1;
            self.file = RotatingFile::open(&self.dir, &file_name(next), self.max_file_bytes)?;
            self.n = next;
        }
        self.file.append(line)
    }
}

/// `gopher_event_<n>`.
fn file_name(n: u64) -> String {
    format!("{FILE_PREFIX}{n}")
}

/// Whether `path` still exists (an error other than "not found" counts as present: the write
/// then reports it).
fn present(path: &Path) -> bool {
    !matches!(std::fs::symlink_metadata(path), Err(e) if e.kind() == io::ErrorKind::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gala_meta::record::parse_event;
    use serde_json::Value;
    use std::os::unix::fs::PermissionsExt;

    const MACHINE: &str = "2c1c455d-24a5-897c-ea11-bc08f2d510da-192.168.128.123";

    fn event(line: &[u8]) -> EventLine<'_> {
        parse_event(line).expect("valid event line")
    }

    fn json(line: &[u8]) -> (String, Value) {
        let ev = event(line);
        let out = render(&ev, MACHINE, 1_586_960_586_789).expect("renders");
        let text = String::from_utf8(out.line).expect("UTF-8");
        assert!(text.ends_with("}\n"), "{text}");
        assert_eq!(text.matches('\n').count(), 1, "one line: {text}");
        let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        (text, v)
    }

    #[test]
    fn spec_example_byte_exact() {
        let (text, _) = json(
            b"|event|tcp_link|1123/192.168.1.1/80|rx_bytes|1123|ceph2|sip 187.10.1.123, dip 192.136.123.1\
              |2c1c455d24a5|pod-1|eth0|WARN|13|Fri Apr 17 07:23:06 2020 WARN Entity(1123) occurred.|",
        );
        let eid = format!("{MACHINE}_tcp_link_1123:192.168.1.1:80");
        let want = format!(
            "{{\"Timestamp\":1586960586000,\"event_id\":\"1586960586000_{eid}\",\
             \"Attributes\":{{\"entity_id\":\"{eid}\",\"event_id\":\"1586960586000_{eid}\",\"event_type\":\"sys\"}},\
             \"Resource\":{{\"metric\":\"gala_gopher_tcp_link_rx_bytes\",\"labels\":{{\"Host\":\"{MACHINE}\",\
             \"PID\":\"1123\",\"COMM\":\"ceph2\",\"IP\":\"sip 187.10.1.123, dip 192.136.123.1\",\
             \"ContainerID\":\"2c1c455d24a5\",\"POD\":\"pod-1\",\"Device\":\"eth0\"}}}},\
             \"SeverityText\":\"WARN\",\"SeverityNumber\":13,\
             \"Body\":\"Fri Apr 17 07:23:06 2020 WARN Entity(1123) occurred.\"}}\n"
        );
        assert_eq!(text, want);
    }

    #[test]
    fn empty_labels_are_empty_strings_and_empty_severity_number_is_zero() {
        let (text, v) = json(b"|event|proc|42|cpu||||||||||");
        assert!(
            text.contains(r#""labels":{"Host":"2c1c455d-24a5-897c-ea11-bc08f2d510da-192.168.128.123","PID":"","COMM":"","IP":"","ContainerID":"","POD":"","Device":""}"#),
            "{text}"
        );
        assert_eq!(v["SeverityText"], "");
        assert_eq!(v["SeverityNumber"], 0);
        assert_eq!(v["Body"], "");
    }

    #[test]
    fn strings_are_escaped_and_round_trip() {
        let body = "say \"hi\" \\ C:\\dir\ttab \u{1}\u{1f}\r del\u{7f} é 中文 😀 </script>";
        let line = format!("|event|ent\"ity|id\\1/2|m|7|co\"mm|||||ERROR|17|{body}|");
        let (text, v) = json(line.as_bytes());
        assert_eq!(v["Body"], body);
        assert_eq!(v["Resource"]["labels"]["COMM"], "co\"mm");
        let eid = format!("{MACHINE}_ent\"ity_id\\1:2");
        assert_eq!(v["Attributes"]["entity_id"], eid);
        assert_eq!(v["event_id"], format!("1586960586000_{eid}"));
        assert_eq!(v["Resource"]["metric"], "gala_gopher_ent\"ity_m");
        assert_eq!(v["SeverityNumber"], 17);
        for escaped in [r#"\"hi\""#, r"\\", r"\t", r"\u0001", r"\u001f", r"\r"] {
            assert!(text.contains(escaped), "{escaped} in {text}");
        }
        // Non-ASCII text is written as UTF-8, not as escapes.
        assert!(text.contains("é 中文 😀"), "{text}");
    }

    #[test]
    fn invalid_utf8_becomes_replacement_characters() {
        let (_, v) = json(b"|event|e|i\xff|m||||||||1|a\xfe\xffb|");
        assert_eq!(v["Body"], "a\u{fffd}\u{fffd}b");
        assert_eq!(
            v["Attributes"]["entity_id"],
            format!("{MACHINE}_e_i\u{fffd}")
        );
    }

    #[test]
    fn every_slash_of_the_entity_id_becomes_a_colon() {
        let ev = event(b"|event|disk|/dev//sda/|m|||||||||x|");
        assert_eq!(
            entity_id("m-1", &ev).unwrap(),
            "m-1_disk_:dev::sda:",
            "only the reported part changes"
        );
        let ev = event(b"|event|a/b|c|m|||||||||x|");
        assert_eq!(entity_id("u/v", &ev).unwrap(), "u/v_a/b_c");
    }

    #[test]
    fn overlong_entity_id_and_metric_are_refused() {
        let machine = "m";
        // "m_e_" + id: 255 bytes fit, 256 do not.
        let ok = format!("|event|e|{}|x|||||||||b|", "i".repeat(251));
        assert_eq!(
            entity_id(machine, &event(ok.as_bytes())).unwrap().len(),
            255
        );
        let long = format!("|event|e|{}|x|||||||||b|", "i".repeat(252));
        assert_eq!(
            render(&event(long.as_bytes()), machine, 0).unwrap_err(),
            EventError::EntityIdTooLong { len: 256 }
        );
        // "gala_gopher_e_" + metric: 63 bytes fit, 64 do not.
        let ok = format!("|event|e|i|{}|||||||||b|", "m".repeat(49));
        assert_eq!(metric_name(&event(ok.as_bytes())).unwrap().len(), 63);
        let long = format!("|event|e|i|{}|||||||||b|", "m".repeat(50));
        assert_eq!(
            render(&event(long.as_bytes()), machine, 0).unwrap_err(),
            EventError::MetricTooLong { len: 64 }
        );
    }

    #[test]
    fn dedup_suppresses_within_the_period_without_extending_it() {
        let mut d = Dedup::new(Duration::from_secs(10), 1000);
        assert!(d.allows("a", 1_000));
        d.record("a", 1_000);
        assert!(!d.allows("a", 1_001));
        assert!(!d.allows("a", 10_999), "suppressed events do not extend it");
        assert!(d.allows("b", 5_000), "other EIDs are independent");
        assert!(d.allows("a", 11_000), "the period is over");
        d.record("a", 11_000);
        assert!(!d.allows("a", 20_999));
    }

    #[test]
    fn dedup_off_with_zero_period() {
        let mut d = Dedup::new(Duration::ZERO, 1000);
        d.record("a", 0);
        assert!(d.allows("a", 0));
        assert!(d.is_empty());
    }

    #[test]
    fn dedup_evicts_the_oldest_when_full() {
        let mut d = Dedup::new(Duration::from_secs(3600), 1000);
        for i in 0..1000u64 {
            d.record(&format!("e{i}"), i);
        }
        assert_eq!(d.len(), 1000);
        d.record("new", 2_000);
        assert_eq!(d.len(), 1000);
        assert!(d.allows("e0", 2_001), "the oldest was forgotten");
        assert!(!d.allows("e1", 2_001));
        assert!(!d.allows("new", 2_001));
        // Refreshing a known EID does not evict anything.
        d.record("e1", 2_002);
        assert_eq!(d.len(), 1000);
        assert!(!d.allows("e2", 2_003));
    }

    #[test]
    fn dedup_forgets_expired_entries_first_when_full() {
        let mut d = Dedup::new(Duration::from_millis(100), 3);
        d.record("old1", 0);
        d.record("old2", 1);
        d.record("fresh", 150);
        d.record("new", 160); // old1 and old2 have expired: both go
        assert_eq!(d.len(), 2);
        assert!(!d.allows("fresh", 161));
        assert!(!d.allows("new", 161));
    }

    fn config(dir: &Path, period: Duration) -> EventLogConfig {
        EventLogConfig::new(dir.to_owned(), "uuid-10.0.0.1".into(), period)
    }

    fn lines(path: &Path) -> Vec<Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect()
    }

    #[test]
    fn sink_writes_lines_and_dedups_per_entity() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("event");
        let (sink, writer) = EventSink::start(config(&dir, Duration::from_secs(600))).unwrap();
        let mut p = sink.for_probe("demo");
        let a1 = event(b"|event|proc|1|cpu|||||||WARN|13|first|");
        let a2 = event(b"|event|proc|1|mem|||||||WARN|13|second|");
        let b = event(b"|event|proc|2|cpu|||||||WARN|13|third|");
        assert_eq!(p.submit_at(&a1, 0, 5_000).unwrap(), Outcome::Queued);
        assert_eq!(p.submit_at(&a2, 1_000, 6_000).unwrap(), Outcome::Suppressed);
        assert_eq!(p.submit_at(&b, 1_000, 6_000).unwrap(), Outcome::Queued);
        // A second probe shares the table: the EID is the same entity.
        let mut q = sink.for_probe("other");
        assert_eq!(q.submit_at(&a1, 2_000, 7_000).unwrap(), Outcome::Suppressed);
        assert_eq!(
            p.submit_at(&a2, 600_000, 605_000).unwrap(),
            Outcome::Queued,
            "the period is over"
        );
        writer.finish();
        let got = lines(&dir.join("gopher_event_0"));
        let bodies: Vec<&str> = got.iter().map(|v| v["Body"].as_str().unwrap()).collect();
        assert_eq!(bodies, ["first", "third", "second"]);
        assert_eq!(got[0]["Timestamp"], 5_000);
        assert_eq!(got[0]["Attributes"]["entity_id"], "uuid-10.0.0.1_proc_1");
        assert_eq!(got[2]["Timestamp"], 605_000);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o750);
        assert_eq!(mode(&dir.join("gopher_event_0")), 0o640);
        assert_eq!(
            p.submit_at(&b, 10_000_000, 0).unwrap(),
            Outcome::Closed,
            "after finish"
        );
    }

    #[test]
    fn full_queue_drops_without_marking_the_entity() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = config(tmp.path(), Duration::from_secs(600));
        cfg.queue_len = 2;
        let (sink, _tx, rx) = EventSink::unstarted(&cfg);
        let mut p = sink.for_probe("demo");
        for id in ["1", "2"] {
            let line = format!("|event|proc|{id}|cpu|||||||||x|");
            assert_eq!(
                p.submit_at(&event(line.as_bytes()), 0, 0).unwrap(),
                Outcome::Queued
            );
        }
        let third = event(b"|event|proc|3|cpu|||||||||x|");
        assert_eq!(p.submit_at(&third, 0, 0).unwrap(), Outcome::QueueFull);
        // Room again: the dropped event's entity was not recorded as written.
        drop(rx.recv().unwrap());
        assert_eq!(p.submit_at(&third, 1, 0).unwrap(), Outcome::Queued);
    }

    #[test]
    fn malformed_events_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let (sink, _tx, _rx) = EventSink::unstarted(&config(tmp.path(), Duration::ZERO));
        let mut p = sink.for_probe("demo");
        let line = format!("|event|e|i|{}|||||||||b|", "m".repeat(60));
        assert!(matches!(
            p.submit_at(&event(line.as_bytes()), 0, 0),
            Err(EventError::MetricTooLong { .. })
        ));
    }

    #[test]
    fn without_dedup_every_event_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        let (sink, writer) = EventSink::start(config(tmp.path(), Duration::ZERO)).unwrap();
        let mut p = sink.for_probe("demo");
        let ev = event(b"|event|proc|1|cpu|||||||||x|");
        for _ in 0..3 {
            assert_eq!(p.submit_at(&ev, 0, 0).unwrap(), Outcome::Queued);
        }
        writer.finish();
        assert_eq!(lines(&tmp.path().join("gopher_event_0")).len(), 3);
    }

    #[test]
    fn appends_to_the_previous_file_and_rotates_to_one_backup() {
        let tmp = tempfile::tempdir().unwrap();
        let old = "{\"old\":1}\n";
        std::fs::write(tmp.path().join("gopher_event_0"), old).unwrap();
        let ev = event(b"|event|proc|1|cpu|||||||||x|");
        let len = render(&ev, "uuid-10.0.0.1", 0).unwrap().line.len() as u64;
        let mut cfg = config(tmp.path(), Duration::ZERO);
        // The old line and three events fit; the fourth starts a new file.
        cfg.max_file_bytes = old.len() as u64 + 3 * len;
        let (sink, writer) = EventSink::start(cfg).unwrap();
        let mut p = sink.for_probe("demo");
        for _ in 0..5 {
            p.submit_at(&ev, 0, 0).unwrap();
        }
        writer.finish();
        let (c, b) = (
            lines(&tmp.path().join("gopher_event_0")),
            lines(&tmp.path().join("gopher_event_0.1")),
        );
        assert_eq!(b[0]["old"], 1, "the previous run's events are kept");
        assert_eq!((b.len(), c.len()), (4, 2));
    }

    #[test]
    fn a_removed_file_is_followed_by_the_next_number() {
        let tmp = tempfile::tempdir().unwrap();
        let (sink, writer) = EventSink::start(config(tmp.path(), Duration::ZERO)).unwrap();
        let mut p = sink.for_probe("demo");
        let ev = event(b"|event|proc|1|cpu|||||||||x|");
        p.submit_at(&ev, 0, 0).unwrap();
        let first = tmp.path().join("gopher_event_0");
        let deadline = Instant::now() + Duration::from_secs(5);
        while lines(&first).is_empty() {
            assert!(Instant::now() < deadline, "first event written");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::fs::remove_file(&first).unwrap();
        p.submit_at(&ev, 0, 0).unwrap();
        writer.finish();
        assert!(!first.exists());
        assert_eq!(lines(&tmp.path().join("gopher_event_1")).len(), 1);
    }

    #[test]
    fn start_error_names_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let blocker = tmp.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let err = EventSink::start(config(&blocker.join("event"), Duration::ZERO))
            .err()
            .expect("cannot create a directory under a file");
        assert!(
            err.to_string().contains(&*blocker.to_string_lossy()),
            "{err}"
        );
    }
}
