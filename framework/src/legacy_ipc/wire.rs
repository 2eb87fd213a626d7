//! The original's control message, byte for byte (docs/reference/ipc-and-lifecycle.md §6.6):
//! a pure encoder from the daemon's configuration snapshot and the matching decoder (used by
//! the tests; the daemon never reads the queue's messages).
//!
//! Layout, host byte order, no padding anywhere (every field sits at its natural alignment):
//! the `msgbuf` type (a C `long`, written by the queue, not here), then a header of
//! `msg_flag` u16, `snooper_state` u16, `msg_len` u32, then `msg_len` bytes of TLVs
//! (`type` u16, `len` u16, `len` value bytes): 100 sub-item mask (u32), 101 the parameter
//! record (`struct probe_params`, [`PARAMS_SIZE`] bytes), 102 the object count (u32),
//! 103 the custom payload (`struct custom_ipc`, [`CUSTOM_SIZE`] bytes; custom probes only),
//! then one TLV per snooper object.

use gala_ipc_proto::v1::{snooper_object, Params as WireParams, ProbeConfig};

/// Size of the header before the TLVs (`msg_flag`, `snooper_state`, `msg_len`).
pub const HEADER_SIZE: usize = 8;
/// TLV type of the sub-item mask.
pub const TLV_RANGE: u16 = 100;
/// TLV type of the parameter record.
pub const TLV_PARAMS: u16 = 101;
/// TLV type of the snooper object count.
pub const TLV_SNOOPER_NUM: u16 = 102;
/// TLV type of the custom payload.
pub const TLV_CUSTOM: u16 = 103;
/// TLV type of a process object (value: its pid, u32).
pub const OBJ_PROC: u16 = 0;
/// TLV type of a container object (value: cpu cgroup inode u32, then sub-TLVs).
pub const OBJ_CON: u16 = 1;
/// Sub-TLV type of a container's abbreviated id (NUL-terminated).
pub const SUB_CONTAINER_ID: u16 = 1000;
/// Size of `struct probe_params`.
pub const PARAMS_SIZE: usize = 1184;
/// Size of `struct custom_ipc`.
pub const CUSTOM_SIZE: usize = 1672;
/// Most snooper objects one message carries (the original's `SNOOPER_MAX`).
pub const SNOOPER_MAX: usize = 1000;
/// Sub-item slots of the custom payload.
const CUSTOM_SUBITEMS: usize = 8;
/// Parameter slots of the custom payload (the original's `MAX_CUSTOM_NUM`, 8 + 1).
const CUSTOM_PARAM_SLOTS: usize = 9;
/// Size of one name, label or value slot of the custom payload, NUL included.
const CUSTOM_STR: usize = 64;
/// Size of the TLVs every message has (range, params, count).
const FIXED_TLVS: usize = 4 + 4 + 4 + PARAMS_SIZE + 4 + 4;

/// The message change flag: the snooper objects (or the mode) changed.
pub const SNOOPER_CHG: u16 = 0x01;
/// The message change flag: the sub-items or a parameter changed.
pub const PARAMS_CHG: u16 = 0x02;

/// `struct probe_params`, field by field (C types: `unsigned int`, `char`, `unsigned char`,
/// fixed `char` arrays holding NUL-terminated strings).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParamRecord {
    /// `period`, seconds.
    pub period: u32,
    /// `sample_period`, ms.
    pub sample_period: u32,
    /// `latency_thr`, ms.
    pub latency_thr: u32,
    /// `offline_thr`, ms.
    pub offline_thr: u32,
    /// `drops_count_thr`.
    pub drops_count_thr: u32,
    /// `kafka_port`.
    pub kafka_port: u32,
    /// `logs` (report_event).
    pub logs: u8,
    /// `ringbuf_map_size`, MB.
    pub ringbuf_map_size: u8,
    /// `report_cport`.
    pub report_cport: u8,
    /// `metrics_flags`.
    pub metrics_flags: u8,
    /// `env_flags`.
    pub env_flags: u8,
    /// `support_ssl`.
    pub support_ssl: u8,
    /// `res_percent_upper`.
    pub res_percent_upper: u8,
    /// `res_percent_lower`.
    pub res_percent_lower: u8,
    /// `continuous_sampling_flag`.
    pub continuous_sampling_flag: u8,
    /// `multi_instance_flag`.
    pub multi_instance_flag: u8,
    /// `native_stack_flag`.
    pub native_stack_flag: u8,
    /// `cluster_ip_backend`.
    pub cluster_ip_backend: u8,
    /// `target_dev[32]` (dev_name).
    pub target_dev: String,
    /// `elf_path[512]`.
    pub elf_path: String,
    /// `l7_probe_proto_flags`.
    pub l7_probe_proto_flags: u32,
    /// `svg_period`, s.
    pub svg_period: u32,
    /// `perf_sample_period`, ms.
    pub perf_sample_period: u32,
    /// `pyroscope_server[64]`.
    pub pyroscope_server: String,
    /// `output_dir[256]`.
    pub output_dir: String,
    /// `flame_dir[256]`.
    pub flame_dir: String,
    /// `cadvisor_port`.
    pub cadvisor_port: u32,
    /// `profiling_chan` (0 local, 1 kafka).
    pub profiling_chan: u32,
    /// `min_exec_dur`, µs.
    pub min_exec_dur: u32,
    /// `min_aggr_dur`, ms.
    pub min_aggr_dur: u32,
}

/// Sizes of the string arrays of [`ParamRecord`], NUL included.
const DEV_NAME: usize = 32;
const MAX_PATH_LEN: usize = 512;
const PYROSCOPE_LEN: usize = 64;
const PATH_LEN: usize = 256;

impl ParamRecord {
    /// The record for the parameters of a control message (strings longer than their array
    /// are cut, as the original's `snprintf`; numbers wider than their field saturate).
    pub fn from_wire(p: &WireParams) -> Self {
        let byte = |v: u32| u8::try_from(v).unwrap_or(u8::MAX);
        ParamRecord {
            period: p.report_period,
            sample_period: p.sample_period,
            latency_thr: p.latency_thr,
            offline_thr: p.offline_thr,
            drops_count_thr: p.drops_thr,
            kafka_port: p.kafka_port,
            logs: p.report_event.into(),
            ringbuf_map_size: byte(p.ringbuf_map_size),
            report_cport: p.report_cport.into(),
            metrics_flags: byte(p.metrics_flags),
            env_flags: byte(p.env_flags),
            support_ssl: p.support_ssl.into(),
            res_percent_upper: byte(p.res_upper_thr),
            res_percent_lower: byte(p.res_lower_thr),
            continuous_sampling_flag: p.continuous_sampling.into(),
            multi_instance_flag: p.multi_instance.into(),
            native_stack_flag: p.native_stack.into(),
            cluster_ip_backend: byte(p.cluster_ip_backend),
            target_dev: p.dev_name.clone(),
            elf_path: p.elf_path.clone(),
            l7_probe_proto_flags: p.l7_probe_proto_flags,
            svg_period: p.svg_period,
            perf_sample_period: p.perf_sample_period,
            pyroscope_server: p.pyroscope_server.clone(),
            output_dir: p.output_dir.clone(),
            flame_dir: p.flame_dir.clone(),
            cadvisor_port: p.cadvisor_port,
            profiling_chan: u32::from(p.profiling_channel == "kafka"),
            min_exec_dur: p.min_exec_dur,
            min_aggr_dur: p.min_aggr_dur,
        }
    }

    /// Appends the [`PARAMS_SIZE`] bytes of the record.
    fn write(&self, out: &mut Vec<u8>) {
        let start = out.len();
        for v in [
            self.period,
            self.sample_period,
            self.latency_thr,
            self.offline_thr,
            self.drops_count_thr,
            self.kafka_port,
        ] {
            out.extend_from_slice(&v.to_ne_bytes());
        }
        out.extend_from_slice(&[
            self.logs,
            self.ringbuf_map_size,
            self.report_cport,
            self.metrics_flags,
            self.env_flags,
            self.support_ssl,
            self.res_percent_upper,
            self.res_percent_lower,
            self.continuous_sampling_flag,
            self.multi_instance_flag,
            self.native_stack_flag,
            self.cluster_ip_backend,
        ]);
        put_str(out, &self.target_dev, DEV_NAME);
        put_str(out, &self.elf_path, MAX_PATH_LEN);
        for v in [
            self.l7_probe_proto_flags,
            self.svg_period,
            self.perf_sample_period,
        ] {
            out.extend_from_slice(&v.to_ne_bytes());
        }
        put_str(out, &self.pyroscope_server, PYROSCOPE_LEN);
        put_str(out, &self.output_dir, PATH_LEN);
        put_str(out, &self.flame_dir, PATH_LEN);
        for v in [
            self.cadvisor_port,
            self.profiling_chan,
            self.min_exec_dur,
            self.min_aggr_dur,
        ] {
            out.extend_from_slice(&v.to_ne_bytes());
        }
        debug_assert_eq!(out.len() - start, PARAMS_SIZE);
    }

    /// Reads the record from exactly [`PARAMS_SIZE`] bytes.
    fn read(b: &[u8]) -> Self {
        let mut r = Reader { b, at: 0 };
        let mut p = ParamRecord {
            period: r.u32(),
            sample_period: r.u32(),
            latency_thr: r.u32(),
            offline_thr: r.u32(),
            drops_count_thr: r.u32(),
            kafka_port: r.u32(),
            ..ParamRecord::default()
        };
        p.logs = r.u8();
        p.ringbuf_map_size = r.u8();
        p.report_cport = r.u8();
        p.metrics_flags = r.u8();
        p.env_flags = r.u8();
        p.support_ssl = r.u8();
        p.res_percent_upper = r.u8();
        p.res_percent_lower = r.u8();
        p.continuous_sampling_flag = r.u8();
        p.multi_instance_flag = r.u8();
        p.native_stack_flag = r.u8();
        p.cluster_ip_backend = r.u8();
        p.target_dev = r.str(DEV_NAME);
        p.elf_path = r.str(MAX_PATH_LEN);
        p.l7_probe_proto_flags = r.u32();
        p.svg_period = r.u32();
        p.perf_sample_period = r.u32();
        p.pyroscope_server = r.str(PYROSCOPE_LEN);
        p.output_dir = r.str(PATH_LEN);
        p.flame_dir = r.str(PATH_LEN);
        p.cadvisor_port = r.u32();
        p.profiling_chan = r.u32();
        p.min_exec_dur = r.u32();
        p.min_aggr_dur = r.u32();
        p
    }
}

/// One snooper object of the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegacyObject {
    /// A process: its pid.
    Process(u32),
    /// A container: the inode of its cpu cgroup directory (low 32 bits) and its id.
    Container {
        /// `cpucg_inode`.
        cpucg_inode: u32,
        /// The abbreviated container id; empty: the sub-TLV is left out.
        id: String,
    },
}

impl LegacyObject {
    /// Bytes of its TLV.
    fn encoded_len(&self) -> usize {
        match self {
            LegacyObject::Process(_) => 8,
            LegacyObject::Container { id, .. } => {
                8 + if id.is_empty() { 0 } else { 4 + id.len() + 1 }
            }
        }
    }
}

/// `struct custom_ipc`: the enabled sub-items by name and the declared parameters with their
/// values.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CustomRecord {
    /// Enabled sub-items (at most 8 are sent, each cut to 63 bytes).
    pub subprobes: Vec<String>,
    /// `(label, value)` in declaration order, value empty when unset (at most 9 slots).
    pub params: Vec<(String, String)>,
}

impl CustomRecord {
    /// Appends the [`CUSTOM_SIZE`] bytes of the record.
    fn write(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let subprobes = &self.subprobes[..self.subprobes.len().min(CUSTOM_SUBITEMS)];
        for i in 0..CUSTOM_SUBITEMS {
            put_str(out, subprobes.get(i).map_or("", String::as_str), CUSTOM_STR);
        }
        out.extend_from_slice(&(subprobes.len() as u32).to_ne_bytes());
        let params = &self.params[..self.params.len().min(CUSTOM_PARAM_SLOTS)];
        for i in 0..CUSTOM_PARAM_SLOTS {
            let (label, value) = params
                .get(i)
                .map_or(("", ""), |(l, v)| (l.as_str(), v.as_str()));
            put_str(out, label, CUSTOM_STR);
            put_str(out, value, CUSTOM_STR);
        }
        out.extend_from_slice(&(params.len() as u32).to_ne_bytes());
        debug_assert_eq!(out.len() - start, CUSTOM_SIZE);
    }

    /// Reads the record from exactly [`CUSTOM_SIZE`] bytes.
    fn read(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader { b, at: 0 };
        let names: Vec<String> = (0..CUSTOM_SUBITEMS).map(|_| r.str(CUSTOM_STR)).collect();
        let n = r.u32() as usize;
        let pairs: Vec<(String, String)> = (0..CUSTOM_PARAM_SLOTS)
            .map(|_| (r.str(CUSTOM_STR), r.str(CUSTOM_STR)))
            .collect();
        let m = r.u32() as usize;
        if n > CUSTOM_SUBITEMS || m > CUSTOM_PARAM_SLOTS {
            return Err(DecodeError::CustomCounts);
        }
        Ok(CustomRecord {
            subprobes: names.into_iter().take(n).collect(),
            params: pairs.into_iter().take(m).collect(),
        })
    }
}

/// One control message as the original's `struct ipc_body_s` plus `struct custom_ipc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyMessage {
    /// Change flags ([`SNOOPER_CHG`], [`PARAMS_CHG`]).
    pub flags: u16,
    /// 0 whitelist, 1 blacklist.
    pub snooper_state: u16,
    /// The sub-item mask (`probe_range_flags`).
    pub range_flags: u32,
    /// The parameters.
    pub params: ParamRecord,
    /// The snooper objects (at most [`SNOOPER_MAX`] are encoded).
    pub objects: Vec<LegacyObject>,
    /// The custom payload (TLV 103), for custom probes.
    pub custom: Option<CustomRecord>,
}

impl LegacyMessage {
    /// The message for `config` with change `flags`, `labels` being the probe's declared
    /// `custom_param` labels (`None` for a built-in probe: no custom payload). Objects are
    /// kept, in order, while the encoded message stays within `max_len` bytes (header
    /// included) and [`SNOOPER_MAX`]; the result says how many were left out.
    pub fn from_config(
        config: &ProbeConfig,
        flags: u16,
        labels: Option<&[String]>,
        max_len: usize,
    ) -> (Self, usize) {
        let custom = labels.map(|labels| CustomRecord {
            subprobes: config.subitems.clone(),
            params: labels
                .iter()
                .map(|l| {
                    let value = config
                        .custom
                        .as_ref()
                        .and_then(|c| c.params.get(l))
                        .cloned()
                        .unwrap_or_default();
                    (l.clone(), value)
                })
                .collect(),
        });
        let mut msg = LegacyMessage {
            flags,
            snooper_state: u16::try_from(config.snooper_mode).unwrap_or(0),
            range_flags: config.subitem_mask,
            params: ParamRecord::from_wire(&config.params.clone().unwrap_or_default()),
            objects: Vec::new(),
            custom,
        };
        let mut len = msg.encoded_len();
        let mut dropped = 0;
        for o in &config.snoopers {
            let object = match &o.object {
                Some(snooper_object::Object::Process(p)) => LegacyObject::Process(p.pid),
                Some(snooper_object::Object::Container(c)) => LegacyObject::Container {
                    cpucg_inode: c.cpucg_inode as u32,
                    id: c.id.clone(),
                },
                None => continue,
            };
            let more = object.encoded_len();
            if msg.objects.len() < SNOOPER_MAX && len + more <= max_len {
                len += more;
                msg.objects.push(object);
            } else {
                dropped += 1;
            }
        }
        (msg, dropped)
    }

    /// Bytes [`encode`] produces.
    pub fn encoded_len(&self) -> usize {
        HEADER_SIZE
            + FIXED_TLVS
            + self.custom.as_ref().map_or(0, |_| 4 + CUSTOM_SIZE)
            + self
                .objects
                .iter()
                .take(SNOOPER_MAX)
                .map(LegacyObject::encoded_len)
                .sum::<usize>()
    }
}

/// The bytes following the `long` message type of the `msgbuf`: header, then TLVs.
pub fn encode(msg: &LegacyMessage) -> Vec<u8> {
    let total = msg.encoded_len();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&msg.flags.to_ne_bytes());
    out.extend_from_slice(&msg.snooper_state.to_ne_bytes());
    out.extend_from_slice(&((total - HEADER_SIZE) as u32).to_ne_bytes());
    let objects = &msg.objects[..msg.objects.len().min(SNOOPER_MAX)];
    put_tlv_head(&mut out, TLV_RANGE, 4);
    out.extend_from_slice(&msg.range_flags.to_ne_bytes());
    put_tlv_head(&mut out, TLV_PARAMS, PARAMS_SIZE);
    msg.params.write(&mut out);
    put_tlv_head(&mut out, TLV_SNOOPER_NUM, 4);
    out.extend_from_slice(&(objects.len() as u32).to_ne_bytes());
    if let Some(custom) = &msg.custom {
        put_tlv_head(&mut out, TLV_CUSTOM, CUSTOM_SIZE);
        custom.write(&mut out);
    }
    for o in objects {
        match o {
            LegacyObject::Process(pid) => {
                put_tlv_head(&mut out, OBJ_PROC, 4);
                out.extend_from_slice(&pid.to_ne_bytes());
            }
            LegacyObject::Container { cpucg_inode, id } => {
                put_tlv_head(&mut out, OBJ_CON, o.encoded_len() - 4);
                out.extend_from_slice(&cpucg_inode.to_ne_bytes());
                if !id.is_empty() {
                    put_tlv_head(&mut out, SUB_CONTAINER_ID, id.len() + 1);
                    out.extend_from_slice(id.as_bytes());
                    out.push(0);
                }
            }
        }
    }
    debug_assert_eq!(out.len(), total);
    out
}

/// Why bytes are not a control message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than a field needs.
    #[error("message truncated at byte {0}")]
    Truncated(usize),
    /// `msg_len` disagrees with the bytes after the header.
    #[error("msg_len {declared} but {actual} bytes follow the header")]
    Length {
        /// `msg_len`.
        declared: usize,
        /// Bytes present.
        actual: usize,
    },
    /// A TLV other than the one its position requires, or of the wrong length.
    #[error("expected TLV {expected} at byte {at}, found type {found} length {len}")]
    Tlv {
        /// The type required there.
        expected: u16,
        /// Where.
        at: usize,
        /// The type found.
        found: u16,
        /// Its length.
        len: usize,
    },
    /// An object TLV of unknown type or malformed content.
    #[error("bad snooper object TLV at byte {0}")]
    Object(usize),
    /// The object count disagrees with the objects present.
    #[error("snooper count {declared} but {actual} objects")]
    Count {
        /// The count TLV.
        declared: usize,
        /// Objects present.
        actual: usize,
    },
    /// The custom payload's counts exceed its slots.
    #[error("custom payload counts exceed its slots")]
    CustomCounts,
}

/// Reads what [`encode`] writes; `custom`: whether TLV 103 is expected (the receiver knows,
/// as the original's `recv_ipc_msg` / `recv_custom_ipc_msg`).
pub fn decode(bytes: &[u8], custom: bool) -> Result<LegacyMessage, DecodeError> {
    let head = bytes.get(..HEADER_SIZE).ok_or(DecodeError::Truncated(0))?;
    let flags = u16::from_ne_bytes([head[0], head[1]]);
    let snooper_state = u16::from_ne_bytes([head[2], head[3]]);
    let declared = u32::from_ne_bytes([head[4], head[5], head[6], head[7]]) as usize;
    let body = &bytes[HEADER_SIZE..];
    if declared != body.len() {
        return Err(DecodeError::Length {
            declared,
            actual: body.len(),
        });
    }
    let mut at = 0;
    let mut fixed = |expected: u16, len: usize| -> Result<&[u8], DecodeError> {
        let (found, got, value) = tlv(body, at)?;
        if found != expected || got != len {
            return Err(DecodeError::Tlv {
                expected,
                at: HEADER_SIZE + at,
                found,
                len: got,
            });
        }
        at += 4 + len;
        Ok(value)
    };
    let range = fixed(TLV_RANGE, 4)?;
    let range_flags = u32::from_ne_bytes([range[0], range[1], range[2], range[3]]);
    let params = ParamRecord::read(fixed(TLV_PARAMS, PARAMS_SIZE)?);
    let num = fixed(TLV_SNOOPER_NUM, 4)?;
    let count = u32::from_ne_bytes([num[0], num[1], num[2], num[3]]) as usize;
    let custom = if custom {
        Some(CustomRecord::read(fixed(TLV_CUSTOM, CUSTOM_SIZE)?)?)
    } else {
        None
    };
    let mut objects = Vec::new();
    while at < body.len() {
        let (kind, len, value) = tlv(body, at)?;
        let object = match (kind, len) {
            (OBJ_PROC, 4) => {
                LegacyObject::Process(u32::from_ne_bytes([value[0], value[1], value[2], value[3]]))
            }
            (OBJ_CON, 4..) => {
                let cpucg_inode = u32::from_ne_bytes([value[0], value[1], value[2], value[3]]);
                let mut id = String::new();
                let mut sub_at = 4;
                while sub_at < len {
                    let (sub, sub_len, text) =
                        tlv(value, sub_at).map_err(|_| DecodeError::Object(HEADER_SIZE + at))?;
                    if sub == SUB_CONTAINER_ID {
                        id = c_str(text);
                    }
                    sub_at += 4 + sub_len;
                }
                LegacyObject::Container { cpucg_inode, id }
            }
            _ => return Err(DecodeError::Object(HEADER_SIZE + at)),
        };
        objects.push(object);
        at += 4 + len;
    }
    if objects.len() != count {
        return Err(DecodeError::Count {
            declared: count,
            actual: objects.len(),
        });
    }
    Ok(LegacyMessage {
        flags,
        snooper_state,
        range_flags,
        params,
        objects,
        custom,
    })
}

/// The TLV at `at` of `b`: type, length, value.
fn tlv(b: &[u8], at: usize) -> Result<(u16, usize, &[u8]), DecodeError> {
    let head = b.get(at..at + 4).ok_or(DecodeError::Truncated(at))?;
    let kind = u16::from_ne_bytes([head[0], head[1]]);
    let len = u16::from_ne_bytes([head[2], head[3]]) as usize;
    let value = b
        .get(at + 4..at + 4 + len)
        .ok_or(DecodeError::Truncated(at + 4))?;
    Ok((kind, len, value))
}

fn put_tlv_head(out: &mut Vec<u8>, kind: u16, len: usize) {
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&(len as u16).to_ne_bytes());
}

/// Appends `s` as a NUL-terminated string in a `size`-byte array: cut to `size - 1` bytes
/// (at a character boundary), zero-filled.
fn put_str(out: &mut Vec<u8>, s: &str, size: usize) {
    let mut end = s.len().min(size - 1);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&s.as_bytes()[..end]);
    out.resize(out.len() + size - end, 0);
}

/// The string before the first NUL of `b` (lossy UTF-8).
fn c_str(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Reads fixed fields in order from a slice known to be long enough.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn u32(&mut self) -> u32 {
        let v = &self.b[self.at..self.at + 4];
        self.at += 4;
        u32::from_ne_bytes([v[0], v[1], v[2], v[3]])
    }

    fn u8(&mut self) -> u8 {
        self.at += 1;
        self.b[self.at - 1]
    }

    fn str(&mut self, size: usize) -> String {
        let s = c_str(&self.b[self.at..self.at + size]);
        self.at += size;
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gala_ipc_proto::v1::{Container, CustomPayload, Process, SnooperObject};

    /// A custom probe's snapshot: two sub-items enabled, two declared labels (one set),
    /// blacklist mode, a process and a container.
    fn config() -> ProbeConfig {
        let process = |pid| SnooperObject {
            object: Some(snooper_object::Object::Process(Process {
                pid,
                comm: "ignored".into(),
                ..Process::default()
            })),
        };
        ProbeConfig {
            probe_name: "legacy".into(),
            subitems: vec!["alpha".into(), "gamma".into()],
            subitem_mask: 0b101,
            snooper_mode: 1,
            params: Some(WireParams {
                report_period: 7,
                sample_period: 5000,
                kafka_port: 9092,
                report_event: true,
                ringbuf_map_size: 1,
                res_upper_thr: 300,
                dev_name: "eth0".into(),
                l7_probe_proto_flags: 0x201,
                svg_period: 180,
                perf_sample_period: 10,
                pyroscope_server: "localhost:4040".into(),
                flame_dir: "/var/log/gala-gopher/flamegraph".into(),
                cadvisor_port: 8083,
                profiling_channel: "kafka".into(),
                min_exec_dur: 1,
                min_aggr_dur: 100,
                ..WireParams::default()
            }),
            snoopers: vec![
                process(4242),
                SnooperObject {
                    object: Some(snooper_object::Object::Container(Container {
                        id: "0123456789ab".into(),
                        cpucg_inode: (1 << 32) + 77,
                        ..Container::default()
                    })),
                },
            ],
            custom: Some(CustomPayload {
                subitems: vec!["alpha".into(), "gamma".into()],
                params: [("threshold".to_string(), "12".to_string())].into(),
            }),
            ..ProbeConfig::default()
        }
    }

    fn labels() -> Vec<String> {
        vec!["threshold".into(), "mode".into()]
    }

    fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
        buf[at..at + bytes.len()].copy_from_slice(bytes);
    }

    /// The expected bytes, written field by field at the offsets of the C structs (x86_64 and
    /// aarch64: `unsigned int` 4 bytes, no padding).
    #[test]
    fn encodes_the_documented_bytes() {
        let labels = labels();
        let (msg, dropped) =
            LegacyMessage::from_config(&config(), SNOOPER_CHG | PARAMS_CHG, Some(&labels), 8192);
        assert_eq!(dropped, 0);
        let got = encode(&msg);
        let con_tlv = 4 + 4 + 4 + 13;
        let total = 8 + (8 + 4 + PARAMS_SIZE + 8 + 4 + CUSTOM_SIZE) + 8 + con_tlv;
        assert_eq!(total, 2921);
        let mut want = vec![0u8; total];
        let u16b = |v: u16| v.to_ne_bytes();
        let u32b = |v: u32| v.to_ne_bytes();
        // Header: msg_flag, snooper_state, msg_len.
        put(&mut want, 0, &u16b(3));
        put(&mut want, 2, &u16b(1));
        put(&mut want, 4, &u32b((total - 8) as u32));
        // TLV 100: the sub-item mask.
        put(&mut want, 8, &u16b(100));
        put(&mut want, 10, &u16b(4));
        put(&mut want, 12, &u32b(0b101));
        // TLV 101: struct probe_params at 20.
        put(&mut want, 16, &u16b(101));
        put(&mut want, 18, &u16b(1184));
        let p = 20;
        put(&mut want, p, &u32b(7)); // period
        put(&mut want, p + 4, &u32b(5000)); // sample_period
        put(&mut want, p + 20, &u32b(9092)); // kafka_port
        want[p + 24] = 1; // logs
        want[p + 25] = 1; // ringbuf_map_size
        want[p + 30] = 255; // res_percent_upper, saturated
        put(&mut want, p + 36, b"eth0"); // target_dev[32]
        put(&mut want, p + 580, &u32b(0x201)); // l7_probe_proto_flags after elf_path[512]
        put(&mut want, p + 584, &u32b(180)); // svg_period
        put(&mut want, p + 588, &u32b(10)); // perf_sample_period
        put(&mut want, p + 592, b"localhost:4040"); // pyroscope_server[64]
        put(&mut want, p + 912, b"/var/log/gala-gopher/flamegraph"); // flame_dir[256]
        put(&mut want, p + 1168, &u32b(8083)); // cadvisor_port
        put(&mut want, p + 1172, &u32b(1)); // profiling_chan: kafka
        put(&mut want, p + 1176, &u32b(1)); // min_exec_dur
        put(&mut want, p + 1180, &u32b(100)); // min_aggr_dur
                                              // TLV 102: two objects.
        put(&mut want, 1204, &u16b(102));
        put(&mut want, 1206, &u16b(4));
        put(&mut want, 1208, &u32b(2));
        // TLV 103: struct custom_ipc at 1216.
        put(&mut want, 1212, &u16b(103));
        put(&mut want, 1214, &u16b(1672));
        let c = 1216;
        put(&mut want, c, b"alpha");
        put(&mut want, c + 64, b"gamma");
        put(&mut want, c + 512, &u32b(2)); // subprobe_num
        put(&mut want, c + 516, b"threshold");
        put(&mut want, c + 516 + 64, b"12");
        put(&mut want, c + 516 + 128, b"mode"); // value left empty
        put(&mut want, c + 1668, &u32b(2)); // params_num
                                            // Objects: process 4242, container (inode cut to 32 bits, id sub-TLV).
        let o = 2888;
        put(&mut want, o, &u16b(0));
        put(&mut want, o + 2, &u16b(4));
        put(&mut want, o + 4, &u32b(4242));
        put(&mut want, o + 8, &u16b(1));
        put(&mut want, o + 10, &u16b(4 + 4 + 13));
        put(&mut want, o + 12, &u32b(77));
        put(&mut want, o + 16, &u16b(1000));
        put(&mut want, o + 18, &u16b(13));
        put(&mut want, o + 20, b"0123456789ab\0");
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g, w, "byte {i}");
        }
        assert_eq!(decode(&got, true).unwrap(), msg);
    }

    #[test]
    fn a_builtin_message_has_no_custom_payload() {
        let (msg, _) = LegacyMessage::from_config(&config(), PARAMS_CHG, None, 8192);
        let bytes = encode(&msg);
        assert_eq!(bytes.len(), 8 + 1204 + 8 + 25);
        assert!(decode(&bytes, true).is_err(), "TLV 103 is missing");
        assert_eq!(decode(&bytes, false).unwrap(), msg);
    }

    #[test]
    fn strings_are_cut_to_their_array_and_stay_terminated() {
        let mut p = WireParams {
            dev_name: "x".repeat(40),
            ..WireParams::default()
        };
        p.output_dir = "é".repeat(200); // 400 bytes, cut at a character boundary
        let mut out = Vec::new();
        ParamRecord::from_wire(&p).write(&mut out);
        assert_eq!(out.len(), PARAMS_SIZE);
        assert_eq!(&out[36..36 + 31], "x".repeat(31).as_bytes());
        assert_eq!(out[36 + 31], 0);
        let back = ParamRecord::read(&out);
        assert_eq!(back.target_dev.len(), 31);
        assert_eq!(back.output_dir, "é".repeat(127));
    }

    #[test]
    fn objects_stop_at_the_size_limit_and_at_snooper_max() {
        let mut cfg = config();
        cfg.snoopers = (0..1200)
            .map(|pid| SnooperObject {
                object: Some(snooper_object::Object::Process(Process {
                    pid,
                    ..Process::default()
                })),
            })
            .collect();
        let labels = labels();
        let (msg, dropped) = LegacyMessage::from_config(&cfg, 0, Some(&labels), 8192);
        // 8192 - 2888 bytes leave room for 663 processes of 8 bytes.
        assert_eq!((msg.objects.len(), dropped), (663, 537));
        assert!(encode(&msg).len() <= 8192);
        let (msg, dropped) = LegacyMessage::from_config(&cfg, 0, Some(&labels), 1 << 20);
        assert_eq!((msg.objects.len(), dropped), (SNOOPER_MAX, 200));
        assert_eq!(decode(&encode(&msg), true).unwrap().objects.len(), 1000);
    }

    #[test]
    fn decode_refuses_malformed_messages() {
        let labels = labels();
        let (msg, _) = LegacyMessage::from_config(&config(), 1, Some(&labels), 8192);
        let good = encode(&msg);
        assert_eq!(decode(&good[..5], true), Err(DecodeError::Truncated(0)));
        assert!(matches!(
            decode(&good[..good.len() - 1], true),
            Err(DecodeError::Length { .. })
        ));
        let mut bad = good.clone();
        bad[8] = 99;
        assert!(matches!(
            decode(&bad, true),
            Err(DecodeError::Tlv { expected: 100, .. })
        ));
        let mut bad = good.clone();
        bad[1208] = 3;
        assert_eq!(
            decode(&bad, true),
            Err(DecodeError::Count {
                declared: 3,
                actual: 2
            })
        );
        let mut bad = good;
        bad[2888] = 7;
        assert_eq!(decode(&bad, true), Err(DecodeError::Object(2888)));
    }

    proptest::proptest! {
        /// Whatever the bytes, decoding never panics.
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..3000)) {
            let _ = decode(&bytes, true);
            let _ = decode(&bytes, false);
        }

        /// Every encoded message decodes to itself (strings within their arrays).
        #[test]
        fn encode_then_decode_is_identity(
            flags in 0u16..4,
            period in proptest::num::u32::ANY,
            dev in "[a-z0-9]{0,31}",
            pids in proptest::collection::vec(proptest::num::u32::ANY, 0..50),
            value in "[ -~]{0,63}",
        ) {
            let msg = LegacyMessage {
                flags,
                snooper_state: 0,
                range_flags: 1,
                params: ParamRecord { period, target_dev: dev, ..ParamRecord::default() },
                objects: pids.into_iter().map(LegacyObject::Process).collect(),
                custom: Some(CustomRecord {
                    subprobes: vec!["s".into()],
                    params: vec![("p".into(), value)],
                }),
            };
            proptest::prop_assert_eq!(decode(&encode(&msg), true).unwrap(), msg);
        }
    }
}
