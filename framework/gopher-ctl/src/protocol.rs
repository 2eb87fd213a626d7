//! The wire format of the control socket: requests, replies and their codec.
//!
//! The original's fixed 1 MiB binary record is replaced by a private, length-prefixed format
//! (only `gopher-ctl` and the daemon of the same build speak it; `init_probes.sh` depends on the
//! command line, not on the wire):
//!
//! ```text
//! request = "GCTL1 " op " " name-length " " payload-length LF name payload
//!           op: "probe-get" | "probe-set" | "metrics"
//!           name: the probe name, 1..=64 bytes of UTF-8 without control characters
//!                 (empty for "metrics")
//!           payload: the raw JSON of "probe-set" (no `json=` prefix), at most 1 MiB;
//!                 empty for the other ops
//! reply   = status " " payload-length LF payload
//!           status "ok": payload is the daemon's answer, printed as is by gopher-ctl
//!           status "error": the daemon could not read the request; payload says why
//! ```
//!
//! Lengths are decimal byte counts. One request per connection; the daemon closes the connection
//! after its reply. The daemon gives a client 60 s to send its request and 60 s to take the
//! reply; `gopher-ctl` waits at most 60 s for the whole exchange.

use std::time::Duration;

/// Where the daemon listens unless `paths.run_dir` moves it.
pub const DEFAULT_SOCKET: &str = "/var/run/gala_gopher/gala_gopher_cmd.sock";

/// Longest probe name: custom probe names may have 64 bytes (the original's 31 cut them off).
pub const MAX_NAME: usize = 64;

/// Largest `probe set` JSON, as the REST body limit.
pub const MAX_CONFIG: usize = 1 << 20;

/// Largest reply a client accepts (a metrics exposition can be large; a bound still protects
/// the client from a confused peer).
pub const MAX_REPLY: usize = 256 << 20;

/// Longest header line of a request or reply, newline excluded.
const MAX_HEADER: usize = 64;

/// Send and receive timeout of both ends.
pub const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// First word of every request: the protocol and its version.
const MAGIC: &str = "GCTL1";

/// One command of `gopher-ctl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CtlRequest {
    /// `gopher-ctl probe get <name>`: the probe's configuration, as REST GET.
    ProbeGet {
        /// Probe name as in the REST path.
        name: String,
    },
    /// `gopher-ctl probe set <name> '<json>'`: as REST PUT, the JSON without `json=`.
    ProbeSet {
        /// Probe name as in the REST path.
        name: String,
        /// The raw JSON body.
        json: String,
    },
    /// `gopher-ctl metric`: the metrics text.
    Metrics,
}

impl CtlRequest {
    /// [`CtlRequest::ProbeGet`] of probe `name`.
    pub fn probe_get(name: impl Into<String>) -> Self {
        CtlRequest::ProbeGet { name: name.into() }
    }

    /// [`CtlRequest::ProbeSet`] of probe `name` to `json`.
    pub fn probe_set(name: impl Into<String>, json: impl Into<String>) -> Self {
        CtlRequest::ProbeSet {
            name: name.into(),
            json: json.into(),
        }
    }
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CtlReply {
    /// The daemon's answer (JSON result, probe configuration or metrics text).
    Ok(String),
    /// The daemon could not read the request; the text says why.
    Error(String),
}

/// Why bytes are not a valid request or reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// No newline within the first bytes.
    #[error("header line longer than {MAX_HEADER} bytes")]
    HeaderTooLong,
    /// The header is not UTF-8 or has the wrong number of fields.
    #[error("malformed header {0:?}")]
    MalformedHeader(String),
    /// A request from another protocol or version.
    #[error("not a gopher-ctl request (expected \"{MAGIC}\", got {0:?})")]
    BadMagic(String),
    /// Unknown operation.
    #[error("unknown operation {0:?}")]
    UnknownOp(String),
    /// Unknown reply status.
    #[error("unknown reply status {0:?}")]
    UnknownStatus(String),
    /// A length field that is not a plain decimal number.
    #[error("{field} length {value:?} is not a decimal number")]
    BadLength {
        /// Which length.
        field: &'static str,
        /// The text found.
        value: String,
    },
    /// A length beyond its limit.
    #[error("{field} of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Which part.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A probe operation without a name.
    #[error("probe name is empty")]
    EmptyName,
    /// A control character in the name.
    #[error("probe name contains a control character")]
    NameHasControl,
    /// A part that must be empty for this operation is not.
    #[error("{op} takes no {field}")]
    Unexpected {
        /// The operation.
        op: &'static str,
        /// The part that should be empty.
        field: &'static str,
    },
    /// A part that must be text is not UTF-8.
    #[error("{0} is not valid UTF-8")]
    NotUtf8(&'static str),
    /// The peer closed the connection in the middle of a message.
    #[error("connection closed before the end of the message")]
    Truncated,
    /// Bytes after the end of the message (one request per connection).
    #[error("{0} bytes after the end of the message")]
    TrailingBytes(usize),
}

impl CtlRequest {
    fn op(&self) -> &'static str {
        match self {
            CtlRequest::ProbeGet { .. } => "probe-get",
            CtlRequest::ProbeSet { .. } => "probe-set",
            CtlRequest::Metrics => "metrics",
        }
    }

    /// The wire form; fails on a name or JSON the daemon would refuse.
    pub fn encode(&self) -> Result<Vec<u8>, ProtocolError> {
        let (name, payload) = match self {
            CtlRequest::ProbeGet { name } => (name.as_str(), ""),
            CtlRequest::ProbeSet { name, json } => (name.as_str(), json.as_str()),
            CtlRequest::Metrics => ("", ""),
        };
        if !matches!(self, CtlRequest::Metrics) {
            check_name(name)?;
        }
        check_len("probe configuration", payload.len(), MAX_CONFIG)?;
        let mut out =
            format!("{MAGIC} {} {} {}\n", self.op(), name.len(), payload.len()).into_bytes();
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(payload.as_bytes());
        Ok(out)
    }

    /// How the daemon logs the request: operation and probe name, never the JSON.
    pub fn summary(&self) -> String {
        match self {
            CtlRequest::ProbeGet { name } => format!("probe get {name}"),
            CtlRequest::ProbeSet { name, .. } => format!("probe set {name}"),
            CtlRequest::Metrics => "metric".to_owned(),
        }
    }
}

/// Decodes a complete request from `buf`: `Ok(None)` while more bytes are needed, an error as
/// soon as the bytes cannot become a valid request.
pub fn decode_request(buf: &[u8]) -> Result<Option<CtlRequest>, ProtocolError> {
    let Some((header, body)) = split_header(buf)? else {
        return Ok(None);
    };
    let fields: Vec<&str> = header.split(' ').collect();
    let [magic, op, name_len, payload_len] = fields[..] else {
        return Err(ProtocolError::MalformedHeader(header.to_owned()));
    };
    if magic != MAGIC {
        return Err(ProtocolError::BadMagic(magic.to_owned()));
    }
    let name_len = parse_len("probe name", name_len, MAX_NAME)?;
    let payload_len = parse_len("probe configuration", payload_len, MAX_CONFIG)?;
    let op: &'static str = match op {
        "probe-get" => "probe-get",
        "probe-set" => "probe-set",
        "metrics" => "metrics",
        other => return Err(ProtocolError::UnknownOp(other.to_owned())),
    };
    if op == "metrics" && name_len > 0 {
        return Err(ProtocolError::Unexpected {
            op,
            field: "probe name",
        });
    }
    if op != "probe-set" && payload_len > 0 {
        return Err(ProtocolError::Unexpected {
            op,
            field: "probe configuration",
        });
    }
    let Some(body) = complete_body(body, name_len + payload_len)? else {
        return Ok(None);
    };
    let (name, payload) = body.split_at(name_len);
    if op == "metrics" {
        return Ok(Some(CtlRequest::Metrics));
    }
    let name = std::str::from_utf8(name).map_err(|_| ProtocolError::NotUtf8("probe name"))?;
    check_name(name)?;
    let name = name.to_owned();
    if op == "probe-get" {
        return Ok(Some(CtlRequest::ProbeGet { name }));
    }
    let json = std::str::from_utf8(payload)
        .map_err(|_| ProtocolError::NotUtf8("probe configuration"))?
        .to_owned();
    Ok(Some(CtlRequest::ProbeSet { name, json }))
}

impl CtlReply {
    /// The wire form.
    pub fn encode(&self) -> Vec<u8> {
        let (status, payload) = match self {
            CtlReply::Ok(text) => ("ok", text),
            CtlReply::Error(text) => ("error", text),
        };
        let mut out = format!("{status} {}\n", payload.len()).into_bytes();
        out.extend_from_slice(payload.as_bytes());
        out
    }
}

/// Decodes a complete reply from `buf`, like [`decode_request`].
pub fn decode_reply(buf: &[u8]) -> Result<Option<CtlReply>, ProtocolError> {
    let Some((header, body)) = split_header(buf)? else {
        return Ok(None);
    };
    let Some((status, len)) = header.split_once(' ') else {
        return Err(ProtocolError::MalformedHeader(header.to_owned()));
    };
    let ok = match status {
        "ok" => true,
        "error" => false,
        other => return Err(ProtocolError::UnknownStatus(other.to_owned())),
    };
    let len = parse_len("reply", len, MAX_REPLY)?;
    let Some(payload) = complete_body(body, len)? else {
        return Ok(None);
    };
    let text = std::str::from_utf8(payload)
        .map_err(|_| ProtocolError::NotUtf8("reply"))?
        .to_owned();
    Ok(Some(if ok {
        CtlReply::Ok(text)
    } else {
        CtlReply::Error(text)
    }))
}

/// The header line (without its newline) and the bytes after it, once the newline has arrived.
fn split_header(buf: &[u8]) -> Result<Option<(&str, &[u8])>, ProtocolError> {
    let window = &buf[..buf.len().min(MAX_HEADER + 1)];
    let Some(end) = memchr::memchr(b'\n', window) else {
        return if buf.len() > MAX_HEADER {
            Err(ProtocolError::HeaderTooLong)
        } else {
            Ok(None)
        };
    };
    let header = std::str::from_utf8(&buf[..end]).map_err(|_| {
        ProtocolError::MalformedHeader(String::from_utf8_lossy(&buf[..end]).into_owned())
    })?;
    Ok(Some((header, &buf[end + 1..])))
}

/// The body once all `len` announced bytes have arrived; more than that is an error.
fn complete_body(body: &[u8], len: usize) -> Result<Option<&[u8]>, ProtocolError> {
    match body.len() {
        n if n < len => Ok(None),
        n if n > len => Err(ProtocolError::TrailingBytes(n - len)),
        _ => Ok(Some(body)),
    }
}

/// A length field: 1 to 10 ASCII digits, at most `max`.
fn parse_len(field: &'static str, text: &str, max: usize) -> Result<usize, ProtocolError> {
    let bad = || ProtocolError::BadLength {
        field,
        value: text.to_owned(),
    };
    if text.is_empty() || text.len() > 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let len: usize = text.parse().map_err(|_| bad())?;
    check_len(field, len, max)?;
    Ok(len)
}

fn check_len(field: &'static str, len: usize, max: usize) -> Result<(), ProtocolError> {
    if len > max {
        return Err(ProtocolError::TooLarge { field, len, max });
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), ProtocolError> {
    if name.is_empty() {
        return Err(ProtocolError::EmptyName);
    }
    check_len("probe name", name.len(), MAX_NAME)?;
    if name.chars().any(char::is_control) {
        return Err(ProtocolError::NameHasControl);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
