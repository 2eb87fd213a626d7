//! Kafka output: one librdkafka producer per Kafka channel (`metric`, `event`, `meta`).
//!
//! Each [`KafkaProducer`] is bound to one topic and sends value-only messages (no key, no
//! headers, librdkafka's default partitioner), as the original (docs/reference/config-and-egress.md §8).
//! Unlike the original, nothing is lost silently:
//!
//! * Messages wait in librdkafka's bounded in-memory queue (`kafka.queue_buffering_max_messages`
//!   messages and `kafka.queue_buffering_max_kbytes`) while the broker is unreachable, for at
//!   most [`MESSAGE_TIMEOUT`]; librdkafka reconnects and retries by itself, so delivery resumes
//!   when the broker is back. A full queue drops the new message at once ([`KafkaProducer::send`]
//!   never waits), a message that cannot be delivered in time is dropped by librdkafka.
//! * Every message is counted in `gala_gopher_daemon_kafka_messages_total{channel,outcome}`
//!   (`queued`, `delivered`, `dropped`), every drop also in
//!   `gala_gopher_daemon_kafka_dropped_total{channel,reason}` ([`DropReason`]); the messages
//!   waiting are `gala_gopher_daemon_kafka_queue_depth{channel}`. Delivery errors and
//!   librdkafka's own warnings are logged, rate-limited.
//! * Delivery is at-least-once: librdkafka retries a batch whose acknowledgement was lost, and
//!   the broker may then store it twice (idempotence is off: see [`ENABLE_IDEMPOTENCE`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge};
use parking_lot::Mutex;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use crate::config::KafkaConfig;
use crate::ratelimit::{RateLimiter, Verdict};
use crate::selfmetrics;

/// How long a message may wait for the broker (`message.timeout.ms`): long enough that a broker
/// restart or a short network outage loses nothing, short enough that the queue limits, not
/// age, bound memory in a long outage.
pub const MESSAGE_TIMEOUT: Duration = Duration::from_secs(300);
/// Whether `enable.idempotence` is set. It would make retries exactly-once per partition, but
/// needs broker support for idempotent producers (`InitProducerId`); off so that the daemon
/// works with every broker, which makes delivery at-least-once.
pub const ENABLE_IDEMPOTENCE: bool = false;

/// Why the producer could not be created.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// librdkafka refused the settings (an unknown compression codec, a value out of range).
    #[error("kafka producer for the {channel} channel (topic {topic:?}): {source}")]
    Create {
        /// The channel (`metric`, `event`, `meta`).
        channel: &'static str,
        /// The topic.
        topic: String,
        /// librdkafka's error.
        #[source]
        source: RdKafkaError,
    },
}

/// Why a message was dropped: the `reason` label of `gala_gopher_daemon_kafka_dropped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// librdkafka's queue was full (`queue_buffering_max_messages`/`_kbytes`).
    QueueFull,
    /// The message is larger than `message.max.bytes`.
    TooLarge,
    /// librdkafka refused the message for another reason.
    ProduceError,
    /// Not delivered within [`MESSAGE_TIMEOUT`] (the broker stayed unreachable).
    TimedOut,
    /// The broker refused the message (a permanent error, or retries exhausted).
    DeliveryFailed,
    /// Still queued when the daemon stopped and the shutdown flush timed out.
    Shutdown,
}

impl DropReason {
    /// Every reason, in label order.
    pub const ALL: [DropReason; 6] = [
        DropReason::QueueFull,
        DropReason::TooLarge,
        DropReason::ProduceError,
        DropReason::TimedOut,
        DropReason::DeliveryFailed,
        DropReason::Shutdown,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::TooLarge => "too_large",
            DropReason::ProduceError => "produce_error",
            DropReason::TimedOut => "timed_out",
            DropReason::DeliveryFailed => "delivery_failed",
            DropReason::Shutdown => "shutdown",
        }
    }

    /// The reason for a message refused by `produce()`.
    fn of_produce(e: &RdKafkaError) -> Self {
        match e.rdkafka_error_code() {
            Some(RDKafkaErrorCode::QueueFull) => DropReason::QueueFull,
            Some(RDKafkaErrorCode::MessageSizeTooLarge) => DropReason::TooLarge,
            _ => DropReason::ProduceError,
        }
    }

    /// The reason for a failed delivery report.
    fn of_delivery(e: &RdKafkaError) -> Self {
        match e.rdkafka_error_code() {
            Some(RDKafkaErrorCode::MessageTimedOut) => DropReason::TimedOut,
            Some(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight) => {
                DropReason::Shutdown
            }
            Some(RDKafkaErrorCode::MessageSizeTooLarge) => DropReason::TooLarge,
            _ => DropReason::DeliveryFailed,
        }
    }
}

/// The self-metrics of one channel's producer.
struct Counters {
    queued: Counter,
    delivered: Counter,
    dropped: Counter,
    reasons: [Counter; DropReason::ALL.len()],
    depth: Gauge,
}

impl Counters {
    fn new(channel: &'static str) -> Self {
        let outcome = |o| selfmetrics::kafka_messages(channel, o);
        Counters {
            queued: outcome("queued"),
            delivered: outcome("delivered"),
            dropped: outcome("dropped"),
            reasons: DropReason::ALL.map(|r| selfmetrics::kafka_dropped(channel, r.as_str())),
            depth: selfmetrics::kafka_queue_depth(channel),
        }
    }

    fn count_drop(&self, reason: DropReason) {
        self.dropped.increment(1);
        self.reasons[reason as usize].increment(1);
    }
}

/// librdkafka's callbacks: delivery reports, errors and log lines of one producer.
struct Callbacks {
    channel: &'static str,
    counters: Arc<Counters>,
    /// Delivery failures and client errors logged.
    error_log: Mutex<RateLimiter>,
    /// librdkafka's own log lines (a down broker logs every reconnect attempt).
    client_log: Mutex<RateLimiter>,
}

impl Callbacks {
    fn warn(&self, limiter: &Mutex<RateLimiter>, what: std::fmt::Arguments<'_>) {
        if let Verdict::Log { suppressed } = limiter.lock().check(Instant::now()) {
            tracing::warn!(channel = self.channel, suppressed, "kafka: {what}");
        }
    }
}

impl ClientContext for Callbacks {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
            | RDKafkaLogLevel::Warning => {
                self.warn(&self.client_log, format_args!("{fac}: {message}"));
            }
            _ => tracing::debug!(channel = self.channel, "kafka: {fac}: {message}"),
        }
    }

    fn error(&self, error: RdKafkaError, reason: &str) {
        self.warn(&self.client_log, format_args!("{error}: {reason}"));
    }
}

impl ProducerContext for Callbacks {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        self.counters.depth.decrement(1.0);
        match result {
            Ok(_) => self.counters.delivered.increment(1),
            Err((e, _)) => {
                let reason = DropReason::of_delivery(e);
                self.counters.count_drop(reason);
                self.warn(
                    &self.error_log,
                    format_args!("message dropped ({}): {e}", reason.as_str()),
                );
            }
        }
    }
}

/// One librdkafka producer bound to one topic of one channel ("metric", "event", "meta").
pub struct KafkaProducer {
    producer: ThreadedProducer<Callbacks>,
    topic: String,
    channel: &'static str,
    counters: Arc<Counters>,
    drop_log: Mutex<RateLimiter>,
}

impl std::fmt::Debug for KafkaProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaProducer")
            .field("channel", &self.channel)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// The librdkafka settings of `config` for channel `channel`.
pub fn client_config(config: &KafkaConfig, channel: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.kafka_broker)
        .set("client.id", format!("gala-gopher-{channel}"))
        .set("batch.num.messages", config.batch_num_messages.to_string())
        .set("compression.codec", &config.compression_codec)
        .set(
            "queue.buffering.max.messages",
            config.queue_buffering_max_messages.to_string(),
        )
        .set(
            "queue.buffering.max.kbytes",
            config.queue_buffering_max_kbytes.to_string(),
        )
        .set(
            "queue.buffering.max.ms",
            config.queue_buffering_max_ms.to_string(),
        )
        .set(
            "message.timeout.ms",
            MESSAGE_TIMEOUT.as_millis().to_string(),
        )
        .set("enable.idempotence", ENABLE_IDEMPOTENCE.to_string())
        // Reconnect quickly after an outage (librdkafka's default backoff is 100 ms to 10 s).
        .set("reconnect.backoff.max.ms", "2000");
    c
}

impl KafkaProducer {
    /// Creates the producer for `topic` of channel `channel` (`metric`, `event`, `meta`) with
    /// the settings of `config`. Does not wait for the broker: messages queue until it answers.
    pub fn new(
        config: &KafkaConfig,
        topic: &str,
        channel: &'static str,
    ) -> Result<Self, KafkaError> {
        let counters = Arc::new(Counters::new(channel));
        let callbacks = Callbacks {
            channel,
            counters: counters.clone(),
            error_log: Mutex::new(RateLimiter::new(Duration::from_secs(10), 3)),
            client_log: Mutex::new(RateLimiter::new(Duration::from_secs(10), 3)),
        };
        let producer = client_config(config, channel)
            .create_with_context(callbacks)
            .map_err(|source| KafkaError::Create {
                channel,
                topic: topic.to_owned(),
                source,
            })?;
        Ok(KafkaProducer {
            producer,
            topic: topic.to_owned(),
            channel,
            counters,
            drop_log: Mutex::new(RateLimiter::new(Duration::from_secs(10), 1)),
        })
    }

    /// The channel this producer serves.
    pub fn channel(&self) -> &'static str {
        self.channel
    }

    /// The topic this producer sends to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Queues one message (value only, no key); never blocks the caller for long; a full
    /// queue drops and counts (reason label).
    pub fn send(&self, payload: &[u8]) {
        self.offer(payload);
    }

    /// [`KafkaProducer::send`], telling whether the message was queued (`false`: dropped and
    /// counted).
    pub fn offer(&self, payload: &[u8]) -> bool {
        let record = BaseRecord::<(), [u8]>::to(&self.topic).payload(payload);
        // Counted before: the delivery report may come before `send` returns.
        self.counters.depth.increment(1.0);
        match self.producer.send(record) {
            Ok(()) => {
                self.counters.queued.increment(1);
                true
            }
            Err((e, _)) => {
                self.counters.depth.decrement(1.0);
                let reason = DropReason::of_produce(&e);
                self.counters.count_drop(reason);
                if let Verdict::Log { suppressed } = self.drop_log.lock().check(Instant::now()) {
                    tracing::warn!(
                        channel = self.channel,
                        suppressed,
                        "kafka: message to {} dropped ({}): {e}",
                        self.topic,
                        reason.as_str()
                    );
                }
                false
            }
        }
    }

    /// Messages queued and not yet delivered or dropped.
    pub fn in_flight(&self) -> usize {
        usize::try_from(self.producer.in_flight_count()).unwrap_or(0)
    }

    /// Waits up to `timeout` for queued messages to be delivered.
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.producer.flush(timeout) {
            tracing::warn!(
                channel = self.channel,
                "kafka: {} messages to {} not delivered within {timeout:?} ({e}); they are dropped (reason shutdown)",
                self.in_flight(),
                self.topic
            );
        }
    }
}
