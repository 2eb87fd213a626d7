//! Probe parameters: the record every probe receives (docs/reference/ipc-and-lifecycle.md
//! §6.4) and the one table of REST `params` keys (docs/reference/rest-api.md §8) that parses,
//! validates and renders them.
//!
//! One vocabulary: a field of [`Params`] is named after its REST key, and so is the field of
//! the control message (`control.proto`) and the name every SDK reads it by. Keys that only
//! take 0 or 1 are `bool`s. The few wire fields without a REST key of their own are listed in
//! [`WIRE_ONLY_PARAMS`]. A test (`framework/tests/param_vocabulary.rs`) holds the REST table,
//! the proto, the Python SDK and the C SDK to the same list.
//!
//! Fixes over the original, on purpose:
//! - a number beyond the 32-bit range is a range error, not a daemon abort;
//! - `latency_thr`, `offline_thr` and `drops_thr` accept 0 again, which switches them off;
//! - the keys are checked in table order, and a failure leaves the caller's record untouched
//!   as long as the caller applies to a copy (the REST layer does).

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

use crate::textcheck::has_unsafe_chars;

/// The parameter record, with the spec's defaults; each field is named after its REST key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// Report interval, seconds.
    pub report_period: u32,
    /// Sampling interval, milliseconds.
    pub sample_period: u32,
    /// Latency threshold, milliseconds; 0 = off.
    pub latency_thr: u32,
    /// Offline threshold, milliseconds; 0 = off.
    pub offline_thr: u32,
    /// Drop-count threshold; 0 = off.
    pub drops_thr: u32,
    /// Kafka broker port the kafka probe observes.
    pub kafka_port: u32,
    /// Report abnormal events.
    pub report_event: bool,
    /// eBPF ring buffer size, MB (power of two).
    pub ringbuf_map_size: u32,
    /// Report the client port of TCP connections.
    pub report_cport: bool,
    /// Observe TLS traffic.
    pub support_ssl: bool,
    /// Resource upper threshold, percent.
    pub res_upper_thr: u32,
    /// Resource lower threshold, percent.
    pub res_lower_thr: u32,
    /// Sample continuously (ksli).
    pub continuous_sampling: bool,
    /// One flame graph per process (flamegraph).
    pub multi_instance: bool,
    /// Unwind native stacks (flamegraph).
    pub native_stack: bool,
    /// How cluster-IP connections map to backends (0–2).
    pub cluster_ip_backend: u32,
    /// Network or block device to observe, at most 31 bytes.
    pub dev_name: String,
    /// ELF file to attach to, canonical, at most 511 bytes.
    pub elf_path: String,
    /// L7 protocols to observe, as the bits of [`L7_PROTOCOLS`].
    pub l7_protocol: u32,
    /// Flame graph SVG interval, seconds.
    pub svg_period: u32,
    /// perf sampling interval, milliseconds.
    pub perf_sample_period: u32,
    /// `host:port` of the Pyroscope server, at most 63 bytes.
    pub pyroscope_server: String,
    /// Output directory, canonical, at most 255 bytes.
    pub output_dir: String,
    /// Flame graph directory, canonical, at most 255 bytes.
    pub flame_dir: String,
    /// cAdvisor port the container probe observes.
    pub cadvisor_port: u32,
    /// Where tprofiling/flamegraph send their profiles.
    pub profiling_channel: ProfilingChannel,
    /// Minimum execution duration, microseconds.
    pub min_exec_dur: u32,
    /// Minimum aggregation duration, milliseconds.
    pub min_aggr_dur: u32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            report_period: 60,
            sample_period: 5000,
            latency_thr: 0,
            offline_thr: 0,
            drops_thr: 0,
            kafka_port: 9092,
            report_event: false,
            ringbuf_map_size: 1,
            report_cport: false,
            support_ssl: false,
            res_upper_thr: 0,
            res_lower_thr: 0,
            continuous_sampling: false,
            multi_instance: false,
            native_stack: false,
            cluster_ip_backend: 0,
            dev_name: String::new(),
            elf_path: String::new(),
            l7_protocol: 0,
            svg_period: 180,
            perf_sample_period: 10,
            pyroscope_server: "localhost:4040".into(),
            output_dir: String::new(),
            flame_dir: "/var/log/gala-gopher/flamegraph".into(),
            cadvisor_port: 8083,
            profiling_channel: ProfilingChannel::Local,
            min_exec_dur: 1,
            min_aggr_dur: 100,
        }
    }
}

/// Fields of the control message's `Params` that have no REST key of their own; they keep
/// the original record's names. `metrics_flags` and `env_flags` are not settable (always 0);
/// `l7_probe_proto_flags` carries [`Params::l7_protocol`] as bits beside the names.
pub const WIRE_ONLY_PARAMS: [&str; 3] = ["metrics_flags", "env_flags", "l7_probe_proto_flags"];

/// Where tprofiling/flamegraph send their profiles (`profiling_channel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProfilingChannel {
    /// `local` (wire value 0).
    #[default]
    Local,
    /// `kafka` (wire value 1).
    Kafka,
}

impl ProfilingChannel {
    /// The value of the original's `profiling_chan` field.
    pub fn wire_value(self) -> u32 {
        match self {
            ProfilingChannel::Local => 0,
            ProfilingChannel::Kafka => 1,
        }
    }

    /// The REST spelling.
    pub fn name(self) -> &'static str {
        match self {
            ProfilingChannel::Local => "local",
            ProfilingChannel::Kafka => "kafka",
        }
    }
}

/// Settable `l7_protocol` names and their bits, in bit order (cql 0x80 and nats 0x100 exist in
/// the record but were never settable).
pub const L7_PROTOCOLS: &[(&str, u32)] = &[
    ("http", 0x1),
    ("dns", 0x2),
    ("redis", 0x4),
    ("mysql", 0x8),
    ("pgsql", 0x10),
    ("kafka", 0x20),
    ("mongo", 0x40),
    ("crpc", 0x200),
];

/// The names of the protocols set in `bits`, in bit order (how REST shows them and how the
/// control message lists them).
pub fn l7_protocol_names(bits: u32) -> impl Iterator<Item = &'static str> {
    L7_PROTOCOLS
        .iter()
        .filter(move |(_, bit)| bits & bit != 0)
        .map(|(name, _)| *name)
}

/// `custom_param` values of a custom probe: declared label → value (1–64 bytes).
pub type CustomParamValues = BTreeMap<String, String>;

/// Longest `custom_param` value in bytes.
pub const MAX_CUSTOM_PARAM_VALUE: usize = 64;

/// Declares [`ParamKey`] with each key's REST name written once, beside its variant.
macro_rules! param_keys {
    ($($variant:ident = $name:literal,)*) => {
        /// A REST `params` key; its identity is its REST name ([`ParamKey::name`]).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ParamKey {
            $(#[doc = concat!("`", $name, "`")] $variant,)*
        }

        impl ParamKey {
            /// Every key, in the order of [`PARAM_TABLE`].
            pub const ALL: [ParamKey; [$($name),*].len()] = [$(ParamKey::$variant),*];

            /// The REST spelling.
            pub const fn name(self) -> &'static str {
                match self {
                    $(ParamKey::$variant => $name,)*
                }
            }
        }
    };
}

param_keys! {
    SamplePeriod = "sample_period",
    ReportPeriod = "report_period",
    LatencyThr = "latency_thr",
    OfflineThr = "offline_thr",
    DropsThr = "drops_thr",
    ResLowerThr = "res_lower_thr",
    ResUpperThr = "res_upper_thr",
    ReportEvent = "report_event",
    RingbufMapSize = "ringbuf_map_size",
    ReportCport = "report_cport",
    L7Protocol = "l7_protocol",
    SupportSsl = "support_ssl",
    ClusterIpBackend = "cluster_ip_backend",
    PyroscopeServer = "pyroscope_server",
    SvgPeriod = "svg_period",
    PerfSamplePeriod = "perf_sample_period",
    MultiInstance = "multi_instance",
    NativeStack = "native_stack",
    OutputDir = "output_dir",
    FlameDir = "flame_dir",
    DevName = "dev_name",
    ContinuousSampling = "continuous_sampling",
    ElfPath = "elf_path",
    KafkaPort = "kafka_port",
    CadvisorPort = "cadvisor_port",
    ProfilingChannel = "profiling_channel",
    MinExecDur = "min_exec_dur",
    MinAggrDur = "min_aggr_dur",
    CustomParam = "custom_param",
}

impl ParamKey {
    /// The table row of this key: row `i` is the row of the `i`-th key (checked when the crate
    /// is compiled), so the lookup cannot miss.
    pub fn spec(self) -> &'static ParamSpec {
        &PARAM_TABLE[self as usize]
    }

    /// The key spelt `name` in REST, if there is one.
    pub fn from_name(name: &str) -> Option<ParamKey> {
        ParamKey::ALL.into_iter().find(|k| k.name() == name)
    }
}

// The table has one row per key, in key order: what `ParamKey::spec` relies on.
const _: () = {
    let mut i = 0;
    while i < PARAM_TABLE.len() {
        assert!(
            PARAM_TABLE[i].key as usize == i,
            "PARAM_TABLE is not in ParamKey order"
        );
        i += 1;
    }
};

/// When GET shows a key (docs/reference/rest-api.md §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// For every probe.
    Always,
    /// For every probe, when not zero.
    WhenNonZero,
    /// For the probes whose catalogue entry lists it.
    PerProbe,
    /// Never.
    Never,
}

/// What 0 means for a number key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zero {
    /// Nothing special: 0 must be inside the range like any value.
    InRange,
    /// 0 switches the feature off, although it is below the range.
    SwitchesOff,
    /// 0 stands for this default value.
    MeansDefault(u32),
}

/// A number key: range, special values, and where it lives in [`Params`].
#[derive(Debug, Clone, Copy)]
pub struct NumberRule {
    /// Smallest value.
    pub min: u32,
    /// Largest value.
    pub max: u32,
    /// What 0 means.
    pub zero: Zero,
    /// The value must be a power of two.
    pub power_of_two: bool,
    /// The value may only change while the probe is stopped.
    pub only_while_stopped: bool,
    /// Reads the field.
    pub get: fn(&Params) -> u32,
    /// Writes the field (the value is already validated).
    pub set: fn(&mut Params, u32),
}

/// A string key: length bound and where it lives in [`Params`].
#[derive(Debug, Clone, Copy)]
pub struct TextRule {
    /// The stored string must be shorter than this many bytes.
    pub len_below: usize,
    /// The value is a path: unsafe-character check, must exist, stored canonical.
    pub path: bool,
    /// Reads the field.
    pub get: fn(&Params) -> &str,
    /// Writes the field (the value is already validated).
    pub set: fn(&mut Params, String),
}

/// How a key is parsed.
#[derive(Debug, Clone, Copy)]
pub enum Rule {
    /// A number (JSON numbers and booleans, fractions truncated).
    Number(NumberRule),
    /// A string.
    Text(TextRule),
    /// `l7_protocol`: array of protocol names replacing the set.
    L7Protocols,
    /// `profiling_channel`: `local` or `kafka`.
    ProfilingChannel,
    /// `custom_param`: array of one-key objects, custom probes only.
    CustomParam,
}

/// One row of the REST params table.
#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    /// The key.
    pub key: ParamKey,
    /// Its REST spelling (`key.name()`).
    pub name: &'static str,
    /// How it is parsed and stored.
    pub rule: Rule,
    /// When GET shows it.
    pub visibility: Visibility,
}

#[allow(clippy::too_many_arguments)]
const fn number(
    key: ParamKey,
    min: u32,
    max: u32,
    zero: Zero,
    visibility: Visibility,
    get: fn(&Params) -> u32,
    set: fn(&mut Params, u32),
) -> ParamSpec {
    ParamSpec {
        key,
        name: key.name(),
        rule: Rule::Number(NumberRule {
            min,
            max,
            zero,
            power_of_two: false,
            only_while_stopped: false,
            get,
            set,
        }),
        visibility,
    }
}

const fn text(
    key: ParamKey,
    len_below: usize,
    path: bool,
    get: fn(&Params) -> &str,
    set: fn(&mut Params, String),
) -> ParamSpec {
    ParamSpec {
        key,
        name: key.name(),
        rule: Rule::Text(TextRule {
            len_below,
            path,
            get,
            set,
        }),
        visibility: Visibility::PerProbe,
    }
}

const fn special(key: ParamKey, rule: Rule, visibility: Visibility) -> ParamSpec {
    ParamSpec {
        key,
        name: key.name(),
        rule,
        visibility,
    }
}

use ParamKey as K;
use Visibility::{Always, Never, PerProbe, WhenNonZero};

/// The REST params, in the order of docs/reference/rest-api.md §8 (also the order keys are
/// checked in), one row per [`ParamKey`] in its order. A 0/1 key is a number in REST and a
/// `bool` in [`Params`].
#[rustfmt::skip]
pub const PARAM_TABLE: &[ParamSpec; ParamKey::ALL.len()] = &[
    number(K::SamplePeriod, 100, 10_000, Zero::InRange, PerProbe, |p| p.sample_period, |p, v| p.sample_period = v),
    number(K::ReportPeriod, 5, 600, Zero::InRange, Always, |p| p.report_period, |p, v| p.report_period = v),
    number(K::LatencyThr, 10, 100_000, Zero::SwitchesOff, WhenNonZero, |p| p.latency_thr, |p, v| p.latency_thr = v),
    number(K::OfflineThr, 10, 100_000, Zero::SwitchesOff, WhenNonZero, |p| p.offline_thr, |p, v| p.offline_thr = v),
    number(K::DropsThr, 10, 100_000, Zero::SwitchesOff, WhenNonZero, |p| p.drops_thr, |p, v| p.drops_thr = v),
    number(K::ResLowerThr, 0, 100, Zero::InRange, Always, |p| p.res_lower_thr, |p, v| p.res_lower_thr = v),
    number(K::ResUpperThr, 0, 100, Zero::InRange, Always, |p| p.res_upper_thr, |p, v| p.res_upper_thr = v),
    number(K::ReportEvent, 0, 1, Zero::InRange, Always, |p| p.report_event.into(), |p, v| p.report_event = v != 0),
    special(K::RingbufMapSize, Rule::Number(NumberRule { min: 1, max: 32, zero: Zero::InRange, power_of_two: true, only_while_stopped: true, get: |p| p.ringbuf_map_size, set: |p, v| p.ringbuf_map_size = v }), PerProbe),
    number(K::ReportCport, 0, 1, Zero::InRange, PerProbe, |p| p.report_cport.into(), |p, v| p.report_cport = v != 0),
    special(K::L7Protocol, Rule::L7Protocols, PerProbe),
    number(K::SupportSsl, 0, 1, Zero::InRange, PerProbe, |p| p.support_ssl.into(), |p, v| p.support_ssl = v != 0),
    number(K::ClusterIpBackend, 0, 2, Zero::InRange, PerProbe, |p| p.cluster_ip_backend, |p, v| p.cluster_ip_backend = v),
    text(K::PyroscopeServer, 64, false, |p| &p.pyroscope_server, |p, v| p.pyroscope_server = v),
    number(K::SvgPeriod, 30, 600, Zero::MeansDefault(180), PerProbe, |p| p.svg_period, |p, v| p.svg_period = v),
    number(K::PerfSamplePeriod, 10, 1000, Zero::MeansDefault(10), PerProbe, |p| p.perf_sample_period, |p, v| p.perf_sample_period = v),
    number(K::MultiInstance, 0, 1, Zero::InRange, PerProbe, |p| p.multi_instance.into(), |p, v| p.multi_instance = v != 0),
    number(K::NativeStack, 0, 1, Zero::InRange, PerProbe, |p| p.native_stack.into(), |p, v| p.native_stack = v != 0),
    text(K::OutputDir, 256, true, |p| &p.output_dir, |p, v| p.output_dir = v),
    text(K::FlameDir, 256, true, |p| &p.flame_dir, |p, v| p.flame_dir = v),
    text(K::DevName, 32, false, |p| &p.dev_name, |p, v| p.dev_name = v),
    number(K::ContinuousSampling, 0, 1, Zero::InRange, PerProbe, |p| p.continuous_sampling.into(), |p, v| p.continuous_sampling = v != 0),
    text(K::ElfPath, 512, true, |p| &p.elf_path, |p, v| p.elf_path = v),
    number(K::KafkaPort, 1, 65_535, Zero::InRange, PerProbe, |p| p.kafka_port, |p, v| p.kafka_port = v),
    number(K::CadvisorPort, 1, 65_535, Zero::InRange, PerProbe, |p| p.cadvisor_port, |p, v| p.cadvisor_port = v),
    special(K::ProfilingChannel, Rule::ProfilingChannel, Never),
    number(K::MinExecDur, 0, 1_000_000, Zero::InRange, Never, |p| p.min_exec_dur, |p, v| p.min_exec_dur = v),
    number(K::MinAggrDur, 10, 10_000, Zero::InRange, Never, |p| p.min_aggr_dur, |p, v| p.min_aggr_dur = v),
    special(K::CustomParam, Rule::CustomParam, PerProbe),
];

/// Why a `params` section was refused; the display text is the original's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// A string where a number is expected, or similar.
    #[error("params.{key} invalid data type")]
    InvalidDataType {
        /// The key.
        key: &'static str,
    },
    /// A number outside the key's range.
    #[error("params.{key} invalid value {value}, must be in [{min}, {max}]")]
    OutOfRange {
        /// The key.
        key: &'static str,
        /// The value as received (fraction truncated).
        value: String,
        /// Smallest value.
        min: u32,
        /// Largest value.
        max: u32,
    },
    /// `ringbuf_map_size` not a power of two (the original had no text for it; ours names the rule).
    #[error("params.{key} invalid value {value}, must be a power of 2 in [{min}, {max}]")]
    NotPowerOfTwo {
        /// The key.
        key: &'static str,
        /// The value.
        value: u32,
        /// Smallest value.
        min: u32,
        /// Largest value.
        max: u32,
    },
    /// A change of a key that may only change while the probe is stopped.
    #[error("params.{key} can only be changed when probe is stopped")]
    OnlyWhileStopped {
        /// The key.
        key: &'static str,
    },
    /// An `l7_protocol` name that is not settable.
    #[error("params.l7_protocol invalid value: {0}")]
    UnknownL7Protocol(String),
    /// A path with one of the refused characters.
    #[error("params.{key} contains unsafe characters")]
    UnsafeCharacters {
        /// The key.
        key: &'static str,
    },
    /// A string too long for its field.
    #[error("params.{key} value is too long, len must be less than {len_below}")]
    TooLong {
        /// The key.
        key: &'static str,
        /// The bound.
        len_below: usize,
    },
    /// A `custom_param` label the custom probe did not declare.
    #[error("params.custom_param has unregistered param : {0}.")]
    UnregisteredCustomParam(String),
    /// A `custom_param` value that is empty or longer than 64 bytes.
    #[error("params.custom_param param value must range from 0 to 64.")]
    CustomParamValueLength,
    /// Failures the original reported without a message (a path that does not resolve, a
    /// non-string `l7_protocol` item, an unknown `profiling_channel`); `why` is for logs.
    #[error("Bad request")]
    Unresolved {
        /// The key.
        key: &'static str,
        /// What went wrong.
        why: String,
    },
    /// The object holds no known key.
    #[error("Bad request")]
    NoKnownKey,
}

/// What the probe being configured brings to parameter parsing.
#[derive(Debug, Clone, Copy)]
pub struct ParamContext<'a> {
    /// Declared `custom_param` labels; `None` for built-in probes, which ignore the key.
    pub custom_labels: Option<&'a [String]>,
    /// Whether the probe is running (for keys that may only change while it is stopped).
    pub running: bool,
}

/// Merges the keys of a REST `params` object into `params` and `custom`: only listed keys
/// change; unknown keys are ignored; an object without a known key is `Bad request`.
///
/// On error the targets may be partly updated: apply to a copy and keep it only on success.
pub fn apply_params(
    params: &mut Params,
    custom: &mut CustomParamValues,
    object: &Map<String, Value>,
    ctx: ParamContext<'_>,
) -> Result<(), ParamError> {
    let mut known = 0;
    for spec in PARAM_TABLE {
        let Some(value) = object.get(spec.name) else {
            continue;
        };
        if spec.key == ParamKey::CustomParam && ctx.custom_labels.is_none() {
            continue;
        }
        known += 1;
        apply_one(spec, value, params, custom, ctx)?;
    }
    if known == 0 {
        return Err(ParamError::NoKnownKey);
    }
    Ok(())
}

fn apply_one(
    spec: &ParamSpec,
    value: &Value,
    params: &mut Params,
    custom: &mut CustomParamValues,
    ctx: ParamContext<'_>,
) -> Result<(), ParamError> {
    let key = spec.name;
    match &spec.rule {
        Rule::Number(rule) => {
            let v = parse_number(key, value, rule)?;
            if rule.only_while_stopped && ctx.running && v != (rule.get)(params) {
                return Err(ParamError::OnlyWhileStopped { key });
            }
            (rule.set)(params, v);
        }
        Rule::Text(rule) => {
            let s = value.as_str().ok_or(ParamError::InvalidDataType { key })?;
            let stored = if rule.path {
                canonical_path(key, s)?
            } else {
                s.to_string()
            };
            if stored.len() >= rule.len_below {
                return Err(ParamError::TooLong {
                    key,
                    len_below: rule.len_below,
                });
            }
            (rule.set)(params, stored);
        }
        Rule::L7Protocols => params.l7_protocol = parse_l7_protocols(key, value)?,
        Rule::ProfilingChannel => {
            let s = value.as_str().ok_or(ParamError::InvalidDataType { key })?;
            params.profiling_channel = match s {
                "local" => ProfilingChannel::Local,
                "kafka" => ProfilingChannel::Kafka,
                other => {
                    return Err(ParamError::Unresolved {
                        key,
                        why: format!("{other:?} is neither \"local\" nor \"kafka\""),
                    })
                }
            };
        }
        Rule::CustomParam => {
            let declared = ctx.custom_labels.unwrap_or(&[]);
            *custom = parse_custom_params(key, value, declared)?;
        }
    }
    Ok(())
}

/// A JSON number or boolean as an integer: fractions truncated toward zero, no wrap-around.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WholeNumber {
    /// Fits an `i128` (every integer JSON can carry exactly, and most truncated floats).
    Int(i128),
    /// A float too large for `i128`; outside every range.
    Huge(f64),
}

impl WholeNumber {
    /// Reads `value` the way the original's `asInt` did, minus its aborts: booleans are 0/1,
    /// fractions are truncated. Anything else is `None`.
    pub fn from_json(value: &Value) -> Option<Self> {
        match value {
            Value::Bool(b) => Some(WholeNumber::Int(i128::from(*b))),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    Some(WholeNumber::Int(i128::from(u)))
                } else if let Some(i) = n.as_i64() {
                    Some(WholeNumber::Int(i128::from(i)))
                } else {
                    let f = n.as_f64()?.trunc();
                    // i128 covers ±1.7e38; the cast saturates, so check before trusting it.
                    if f.abs() < 1e38 {
                        Some(WholeNumber::Int(f as i128))
                    } else {
                        Some(WholeNumber::Huge(f))
                    }
                }
            }
            _ => None,
        }
    }

    /// The value if it lies in `[min, max]`.
    pub fn within(self, min: u32, max: u32) -> Option<u32> {
        match self {
            WholeNumber::Int(i) if i >= i128::from(min) && i <= i128::from(max) => {
                u32::try_from(i).ok()
            }
            _ => None,
        }
    }
}

impl fmt::Display for WholeNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WholeNumber::Int(i) => write!(f, "{i}"),
            WholeNumber::Huge(x) => write!(f, "{x:e}"),
        }
    }
}

fn parse_number(key: &'static str, value: &Value, rule: &NumberRule) -> Result<u32, ParamError> {
    let n = WholeNumber::from_json(value).ok_or(ParamError::InvalidDataType { key })?;
    if n == WholeNumber::Int(0) {
        match rule.zero {
            Zero::SwitchesOff => return Ok(0),
            Zero::MeansDefault(d) => return Ok(d),
            Zero::InRange => {}
        }
    }
    let v = n.within(rule.min, rule.max).ok_or(ParamError::OutOfRange {
        key,
        value: n.to_string(),
        min: rule.min,
        max: rule.max,
    })?;
    if rule.power_of_two && !v.is_power_of_two() {
        return Err(ParamError::NotPowerOfTwo {
            key,
            value: v,
            min: rule.min,
            max: rule.max,
        });
    }
    Ok(v)
}

/// Unsafe-character check, then the canonical form of an existing path.
fn canonical_path(key: &'static str, s: &str) -> Result<String, ParamError> {
    if has_unsafe_chars(s) {
        return Err(ParamError::UnsafeCharacters { key });
    }
    let canonical = std::fs::canonicalize(s).map_err(|e| ParamError::Unresolved {
        key,
        why: format!("{s:?}: {e}"),
    })?;
    let canonical =
        canonical
            .into_os_string()
            .into_string()
            .map_err(|_| ParamError::Unresolved {
                key,
                why: format!("{s:?} resolves to a path that is not UTF-8"),
            })?;
    // A symlink may lead somewhere the check above would have refused.
    if has_unsafe_chars(&canonical) {
        return Err(ParamError::UnsafeCharacters { key });
    }
    Ok(canonical)
}

fn parse_l7_protocols(key: &'static str, value: &Value) -> Result<u32, ParamError> {
    let items = value
        .as_array()
        .ok_or(ParamError::InvalidDataType { key })?;
    let mut flags = 0;
    for item in items {
        let name = item.as_str().ok_or_else(|| ParamError::Unresolved {
            key,
            why: format!("item {item} is not a string"),
        })?;
        let bit = L7_PROTOCOLS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, bit)| bit)
            .ok_or_else(|| ParamError::UnknownL7Protocol(name.to_string()))?;
        flags |= bit;
    }
    Ok(flags)
}

/// `[{"label": "value"}, ...]`: every label declared, every value 1–64 bytes; the result
/// replaces all values (the original reset them first).
fn parse_custom_params(
    key: &'static str,
    value: &Value,
    declared: &[String],
) -> Result<CustomParamValues, ParamError> {
    let items = value
        .as_array()
        .ok_or(ParamError::InvalidDataType { key })?;
    let mut values = CustomParamValues::new();
    for item in items {
        let object = item
            .as_object()
            .filter(|o| o.len() == 1)
            .ok_or(ParamError::InvalidDataType { key })?;
        for (label, v) in object {
            if !declared.iter().any(|d| d == label) {
                return Err(ParamError::UnregisteredCustomParam(label.clone()));
            }
            let v = v.as_str().ok_or(ParamError::InvalidDataType { key })?;
            if v.is_empty() || v.len() > MAX_CUSTOM_PARAM_VALUE {
                return Err(ParamError::CustomParamValueLength);
            }
            values.insert(label.clone(), v.to_string());
        }
    }
    Ok(values)
}

/// The `params` object of a GET answer: keys shown for every probe, non-zero thresholds, and
/// the keys in `per_probe`; `custom` = the custom probe's declared labels and their values.
pub fn render_params(
    params: &Params,
    per_probe: &[ParamKey],
    custom: Option<(&[String], &CustomParamValues)>,
) -> Map<String, Value> {
    let mut out = Map::new();
    for spec in PARAM_TABLE {
        let number = match &spec.rule {
            Rule::Number(rule) => Some((rule.get)(params)),
            _ => None,
        };
        let shown = match spec.visibility {
            Always => true,
            WhenNonZero => number.is_some_and(|n| n != 0),
            PerProbe => per_probe.contains(&spec.key),
            Never => false,
        };
        if let Some(value) = shown.then(|| param_value(spec, params, custom)).flatten() {
            // GET never echoes a credential (probes.init, written apart, keeps it).
            let value = crate::probes::secret::masked(spec.name, value);
            out.insert(spec.name.to_string(), value);
        }
    }
    out
}

/// Every key whose value differs from the default, in the REST form a PUT accepts: what
/// `probes.init` needs to restore `params` (GET hides some keys).
pub fn render_changed_params(
    params: &Params,
    custom: Option<(&[String], &CustomParamValues)>,
) -> Map<String, Value> {
    let defaults = Params::default();
    let no_values = CustomParamValues::new();
    let default_custom = custom.map(|(declared, _)| (declared, &no_values));
    PARAM_TABLE
        .iter()
        .filter_map(|spec| {
            let value = param_value(spec, params, custom)?;
            (Some(&value) != param_value(spec, &defaults, default_custom).as_ref())
                .then(|| (spec.name.to_string(), value))
        })
        .collect()
}

/// The REST value of one key (`None`: `custom_param` of a built-in probe).
fn param_value(
    spec: &ParamSpec,
    params: &Params,
    custom: Option<(&[String], &CustomParamValues)>,
) -> Option<Value> {
    Some(match &spec.rule {
        Rule::Number(rule) => Value::from((rule.get)(params)),
        Rule::Text(rule) => Value::from((rule.get)(params)),
        Rule::L7Protocols => l7_protocol_names(params.l7_protocol)
            .map(Value::from)
            .collect(),
        Rule::ProfilingChannel => Value::from(params.profiling_channel.name()),
        Rule::CustomParam => {
            let (declared, values) = custom?;
            declared
                .iter()
                .filter_map(|label| {
                    let v = values.get(label)?;
                    let mut one = Map::new();
                    one.insert(label.clone(), Value::from(v.as_str()));
                    Some(Value::Object(one))
                })
                .collect()
        }
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const BUILTIN: ParamContext<'static> = ParamContext {
        custom_labels: None,
        running: false,
    };

    fn apply(body: Value, ctx: ParamContext<'_>) -> Result<(Params, CustomParamValues), String> {
        let mut params = Params::default();
        let mut custom = CustomParamValues::new();
        let object = body.as_object().unwrap();
        apply_params(&mut params, &mut custom, object, ctx).map_err(|e| e.to_string())?;
        Ok((params, custom))
    }

    fn err(body: Value) -> String {
        apply(body, BUILTIN).unwrap_err()
    }

    #[test]
    fn every_key_has_one_row_and_fits_its_field() {
        let mut names = std::collections::BTreeSet::new();
        for key in ParamKey::ALL {
            assert_eq!(key.spec().key, key);
            assert_eq!(key.spec().name, key.name());
            assert_eq!(ParamKey::from_name(key.name()), Some(key));
            assert!(names.insert(key.name()), "{} twice", key.name());
        }
        assert_eq!(ParamKey::from_name("metrics_type"), None);
        // Each number field holds its maximum and reads back what was written.
        for spec in PARAM_TABLE {
            if let Rule::Number(rule) = spec.rule {
                let mut p = Params::default();
                (rule.set)(&mut p, rule.max);
                assert_eq!((rule.get)(&p), rule.max, "{}", spec.name);
                (rule.set)(&mut p, rule.min);
                assert_eq!((rule.get)(&p), rule.min, "{}", spec.name);
            }
        }
    }

    #[test]
    fn defaults_are_the_spec_defaults() {
        let p = Params::default();
        assert_eq!(
            (p.report_period, p.sample_period, p.kafka_port),
            (60, 5000, 9092)
        );
        assert_eq!(
            (p.ringbuf_map_size, p.svg_period, p.perf_sample_period),
            (1, 180, 10)
        );
        assert_eq!(p.pyroscope_server, "localhost:4040");
        assert_eq!(p.flame_dir, "/var/log/gala-gopher/flamegraph");
        assert_eq!(
            (p.cadvisor_port, p.min_exec_dur, p.min_aggr_dur),
            (8083, 1, 100)
        );
        assert_eq!(p.profiling_channel.wire_value(), 0);
    }

    #[test]
    fn numbers_booleans_and_fractions_are_accepted_like_the_original() {
        let (p, _) = apply(
            json!({"report_period": 30, "report_event": true, "sample_period": 150.9,
                   "res_upper_thr": false, "unknown_key": "ignored"}),
            BUILTIN,
        )
        .unwrap();
        assert_eq!(
            (
                p.report_period,
                p.report_event,
                p.sample_period,
                p.res_upper_thr
            ),
            (30, true, 150, 0)
        );
    }

    #[test]
    fn out_of_range_values_are_refused_with_the_range() {
        let cases = [
            (
                json!({"report_period": 4}),
                "params.report_period invalid value 4, must be in [5, 600]",
            ),
            (
                json!({"report_period": 2147483648_u64}),
                "params.report_period invalid value 2147483648, must be in [5, 600]",
            ),
            (
                json!({"report_period": 18446744073709551615_u64}),
                "params.report_period invalid value 18446744073709551615, must be in [5, 600]",
            ),
            (
                json!({"report_period": -1}),
                "params.report_period invalid value -1, must be in [5, 600]",
            ),
            (
                json!({"report_period": -9223372036854775808_i64}),
                "params.report_period invalid value -9223372036854775808, must be in [5, 600]",
            ),
            (
                json!({"report_period": 1e300}),
                "params.report_period invalid value 1e300, must be in [5, 600]",
            ),
            (
                json!({"kafka_port": 65536}),
                "params.kafka_port invalid value 65536, must be in [1, 65535]",
            ),
            (
                json!({"latency_thr": 9}),
                "params.latency_thr invalid value 9, must be in [10, 100000]",
            ),
            (
                json!({"svg_period": 29}),
                "params.svg_period invalid value 29, must be in [30, 600]",
            ),
            (
                json!({"cluster_ip_backend": 3}),
                "params.cluster_ip_backend invalid value 3, must be in [0, 2]",
            ),
            (
                json!({"sample_period": 99.99}),
                "params.sample_period invalid value 99, must be in [100, 10000]",
            ),
            (
                json!({"min_aggr_dur": 0}),
                "params.min_aggr_dur invalid value 0, must be in [10, 10000]",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(err(body.clone()), want, "{body}");
        }
    }

    #[test]
    fn wrong_types_are_refused() {
        assert_eq!(
            err(json!({"report_period": "60"})),
            "params.report_period invalid data type"
        );
        assert_eq!(
            err(json!({"report_period": null})),
            "params.report_period invalid data type"
        );
        assert_eq!(
            err(json!({"report_period": [60]})),
            "params.report_period invalid data type"
        );
        assert_eq!(
            err(json!({"dev_name": 5})),
            "params.dev_name invalid data type"
        );
        assert_eq!(
            err(json!({"l7_protocol": "http"})),
            "params.l7_protocol invalid data type"
        );
        assert_eq!(
            err(json!({"profiling_channel": 1})),
            "params.profiling_channel invalid data type"
        );
    }

    #[test]
    fn zero_switches_thresholds_off_and_selects_defaults() {
        let mut params = Params::default();
        let mut custom = CustomParamValues::new();
        let set = |p: &mut Params, c: &mut CustomParamValues, v: Value| {
            apply_params(p, c, v.as_object().unwrap(), BUILTIN).unwrap()
        };
        set(
            &mut params,
            &mut custom,
            json!({"latency_thr": 50, "offline_thr": 10, "drops_thr": 100000, "svg_period": 60, "perf_sample_period": 20}),
        );
        assert_eq!(
            (params.latency_thr, params.offline_thr, params.drops_thr),
            (50, 10, 100000)
        );
        set(
            &mut params,
            &mut custom,
            json!({"latency_thr": 0, "offline_thr": 0, "drops_thr": 0.4, "svg_period": 0, "perf_sample_period": false}),
        );
        assert_eq!(
            (params.latency_thr, params.offline_thr, params.drops_thr),
            (0, 0, 0)
        );
        assert_eq!((params.svg_period, params.perf_sample_period), (180, 10));
    }

    #[test]
    fn ringbuf_is_a_power_of_two_and_changes_only_while_stopped() {
        let (p, _) = apply(json!({"ringbuf_map_size": 32}), BUILTIN).unwrap();
        assert_eq!(p.ringbuf_map_size, 32);
        assert_eq!(
            err(json!({"ringbuf_map_size": 3})),
            "params.ringbuf_map_size invalid value 3, must be a power of 2 in [1, 32]"
        );
        assert_eq!(
            err(json!({"ringbuf_map_size": 64})),
            "params.ringbuf_map_size invalid value 64, must be in [1, 32]"
        );
        let running = ParamContext {
            custom_labels: None,
            running: true,
        };
        assert_eq!(
            apply(json!({"ringbuf_map_size": 2}), running).unwrap_err(),
            "params.ringbuf_map_size can only be changed when probe is stopped"
        );
        // Re-sending the current value while running is not a change.
        assert!(apply(json!({"ringbuf_map_size": 1}), running).is_ok());
    }

    #[test]
    fn l7_protocols_replace_the_set() {
        let (p, _) = apply(
            json!({"l7_protocol": ["HTTP", "crpc", "dns", "http"]}),
            BUILTIN,
        )
        .unwrap();
        assert_eq!(p.l7_protocol, 0x1 | 0x2 | 0x200);
        let (p, _) = apply(json!({"l7_protocol": []}), BUILTIN).unwrap();
        assert_eq!(p.l7_protocol, 0);
        assert_eq!(
            err(json!({"l7_protocol": ["http", "cql"]})),
            "params.l7_protocol invalid value: cql"
        );
        assert_eq!(err(json!({"l7_protocol": [1]})), "Bad request");
    }

    #[test]
    fn strings_have_length_limits() {
        let (p, _) = apply(
            json!({"dev_name": "eth0", "pyroscope_server": "10.0.0.1:4040"}),
            BUILTIN,
        )
        .unwrap();
        assert_eq!(
            (p.dev_name.as_str(), p.pyroscope_server.as_str()),
            ("eth0", "10.0.0.1:4040")
        );
        assert!(apply(json!({"dev_name": "x".repeat(31)}), BUILTIN).is_ok());
        assert_eq!(
            err(json!({"dev_name": "x".repeat(32)})),
            "params.dev_name value is too long, len must be less than 32"
        );
        assert_eq!(
            err(json!({"pyroscope_server": "x".repeat(64)})),
            "params.pyroscope_server value is too long, len must be less than 64"
        );
    }

    #[test]
    fn paths_are_checked_resolved_and_stored_canonical() {
        let dir = tempfile::Builder::new().prefix("gg").tempdir().unwrap();
        let real = dir.path().canonicalize().unwrap();
        std::fs::create_dir(real.join("out")).unwrap();
        let given = format!("{}//out/", real.display());
        let (p, _) = apply(
            json!({"output_dir": given, "flame_dir": real.to_str().unwrap()}),
            BUILTIN,
        )
        .unwrap();
        assert_eq!(p.output_dir, real.join("out").to_str().unwrap());
        assert_eq!(p.flame_dir, real.to_str().unwrap());

        for bad in [
            "/tmp/x;rm -rf /",
            "/tmp/$(id)",
            "/tmp/../etc",
            "/tmp/a|b",
            "/tmp/`id`",
        ] {
            assert_eq!(
                err(json!({"elf_path": bad})),
                "params.elf_path contains unsafe characters",
                "{bad}"
            );
        }
        assert_eq!(
            err(json!({"output_dir": "/nonexistent/dir"})),
            "Bad request"
        );
        assert_eq!(err(json!({"flame_dir": ""})), "Bad request");

        let long = real.join("l".repeat(255));
        std::fs::create_dir(&long).unwrap();
        assert_eq!(
            err(json!({"output_dir": long.to_str().unwrap()})),
            "params.output_dir value is too long, len must be less than 256"
        );
    }

    #[test]
    fn profiling_channel_is_local_or_kafka_exactly() {
        let (p, _) = apply(json!({"profiling_channel": "kafka"}), BUILTIN).unwrap();
        assert_eq!(p.profiling_channel, ProfilingChannel::Kafka);
        assert_eq!(err(json!({"profiling_channel": "Kafka"})), "Bad request");
    }

    #[test]
    fn an_object_without_known_keys_is_a_bad_request() {
        assert_eq!(err(json!({})), "Bad request");
        assert_eq!(
            err(json!({"metrics_type": ["raw"], "env": "node"})),
            "Bad request"
        );
        assert_eq!(
            err(json!({"custom_param": []})),
            "Bad request",
            "built-ins ignore custom_param"
        );
    }

    #[test]
    fn custom_params_must_be_declared_and_replace_all_values() {
        let declared = ["p1".to_string(), "p2".to_string()];
        let ctx = ParamContext {
            custom_labels: Some(&declared),
            running: false,
        };
        let (_, values) = apply(json!({"custom_param": [{"p2": "b"}, {"p1": "a"}]}), ctx).unwrap();
        assert_eq!(values.len(), 2);
        let mut params = Params::default();
        let mut custom = values;
        apply_params(
            &mut params,
            &mut custom,
            json!({"custom_param": [{"p1": "z"}]}).as_object().unwrap(),
            ctx,
        )
        .unwrap();
        assert_eq!(custom, CustomParamValues::from([("p1".into(), "z".into())]));

        let fail = |v: Value| apply(json!({"custom_param": v}), ctx).unwrap_err();
        assert_eq!(
            fail(json!([{"p3": "x"}])),
            "params.custom_param has unregistered param : p3."
        );
        assert_eq!(
            fail(json!([{"p1": ""}])),
            "params.custom_param param value must range from 0 to 64."
        );
        assert_eq!(
            fail(json!([{"p1": "x".repeat(65)}])),
            "params.custom_param param value must range from 0 to 64."
        );
        assert!(apply(json!({"custom_param": [{"p1": "x".repeat(64)}]}), ctx).is_ok());
        assert_eq!(
            fail(json!({"p1": "x"})),
            "params.custom_param invalid data type"
        );
        assert_eq!(
            fail(json!([{"p1": "x", "p2": "y"}])),
            "params.custom_param invalid data type"
        );
        assert_eq!(
            fail(json!([{"p1": 1}])),
            "params.custom_param invalid data type"
        );
    }

    #[test]
    fn rendering_follows_the_visibility_rules() {
        let mut p = Params::default();
        let all = render_params(&p, &[], None);
        let keys: Vec<&str> = all.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "report_event",
                "report_period",
                "res_lower_thr",
                "res_upper_thr"
            ]
        );
        p.latency_thr = 20;
        p.l7_protocol = 0x200 | 0x1;
        let shown = render_params(
            &p,
            &[K::L7Protocol, K::ProfilingChannel, K::MinExecDur],
            None,
        );
        assert_eq!(shown["latency_thr"], 20);
        assert_eq!(shown["l7_protocol"], json!(["http", "crpc"]));
        assert!(!shown.contains_key("offline_thr"));
        assert!(!shown.contains_key("profiling_channel"), "never shown");
        assert!(!shown.contains_key("min_exec_dur"), "never shown");

        let declared = ["b".to_string(), "a".to_string()];
        let values = CustomParamValues::from([("a".into(), "1".into())]);
        let shown = render_params(&p, &[K::CustomParam], Some((&declared, &values)));
        assert_eq!(shown["custom_param"], json!([{"a": "1"}]));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]
        /// Any number, boolean or string for any key gives a value or a typed error, never a
        /// panic; accepted numbers always lie in the key's range (or are a special zero).
        #[test]
        fn any_scalar_for_any_key_is_safe(
            index in 0..PARAM_TABLE.len(),
            int in proptest::num::i64::ANY,
            float in proptest::num::f64::NORMAL,
            pick in 0..4u8,
            text in "\\PC{0,40}",
        ) {
            let spec = &PARAM_TABLE[index];
            let value = match pick {
                0 => json!(int),
                1 => json!(float),
                2 => json!(int % 2 == 0),
                _ => json!(text),
            };
            let mut object = Map::new();
            object.insert(spec.name.to_string(), value);
            let labels = ["p".to_string()];
            let ctx = ParamContext { custom_labels: Some(&labels), running: int % 3 == 0 };
            let mut params = Params::default();
            let mut custom = CustomParamValues::new();
            if apply_params(&mut params, &mut custom, &object, ctx).is_ok() {
                if let Rule::Number(rule) = spec.rule {
                    let v = (rule.get)(&params);
                    let special = match rule.zero {
                        Zero::SwitchesOff => v == 0,
                        Zero::MeansDefault(d) => v == d,
                        Zero::InRange => false,
                    };
                    proptest::prop_assert!(special || (rule.min..=rule.max).contains(&v));
                }
            }
        }
    }
}
