//! Checks of single values, shared by the file reader and the `GOPHER_*` overrides so that a
//! value is judged the same wherever it comes from.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::error::Problem;

/// Debug log file name used when `global.log_file_name` is empty (as in the original).
pub(super) const FALLBACK_LOG_FILE_NAME: &str = "gopher_debug.log";

/// Accepted `kafka.compression_codec` values (librdkafka's `compression.codec`).
const COMPRESSION_CODECS: &[&str] = &["none", "gzip", "snappy", "lz4", "zstd"];

/// `value` if it lies in `min..=max` (`max = None`: no upper bound).
pub(super) fn int_in(value: i64, min: i64, max: Option<i64>) -> Result<i64, Problem> {
    if value < min || max.is_some_and(|max| value > max) {
        return Err(Problem::OutOfRange { value, min, max });
    }
    Ok(value)
}

/// A count in `min..=max`, as `usize`.
pub(super) fn count(value: i64, min: i64, max: Option<i64>) -> Result<usize, Problem> {
    let value = int_in(value, min, max)?;
    // Fails only on targets where usize is narrower than the accepted range.
    usize::try_from(value).map_err(|_| Problem::OutOfRange { value, min, max })
}

/// A Kafka tuning number in `1..=max` (librdkafka's own upper limit), as `u32`.
pub(super) fn kafka_number(value: i64, max: u32) -> Result<u32, Problem> {
    let value = int_in(value, 1, Some(i64::from(max)))?;
    // In range 1..=u32::MAX by the check above.
    Ok(u32::try_from(value).unwrap_or(max))
}

/// A TCP port of a server: 1024–65535, checked at load rather than at server start.
pub(super) fn port(value: i64) -> Result<u16, Problem> {
    let value = int_in(value, 1024, Some(65535))?;
    Ok(u16::try_from(value).unwrap_or(u16::MAX))
}

/// A period in whole seconds, at least `min_secs`.
pub(super) fn seconds(value: i64, min_secs: i64) -> Result<Duration, Problem> {
    let value = int_in(value, min_secs, None)?;
    Ok(Duration::from_secs(value.unsigned_abs()))
}

/// `logs.metric_total_size`: 1–1024 MB, returned in bytes.
pub(super) fn megabytes(value: i64) -> Result<u64, Problem> {
    let value = int_in(value, 1, Some(1024))?;
    Ok(value.unsigned_abs() * 1024 * 1024)
}

/// An integer given as text (environment variables); surrounding blanks are ignored.
pub(super) fn int_text(value: &str) -> Result<i64, Problem> {
    value
        .trim()
        .parse()
        .map_err(|_| Problem::NotInteger(value.to_owned()))
}

/// `on`/`off` switch of `ssl_auth`; an empty string is `off`, as in the original.
pub(super) fn on_off(value: &str) -> Result<bool, Problem> {
    match value {
        "on" => Ok(true),
        "off" | "" => Ok(false),
        _ => Err(Problem::UnknownValue {
            value: value.to_owned(),
            allowed: "\"on\", \"off\"",
        }),
    }
}

/// Rejects values containing the original's unsafe characters.
fn reject_unsafe(value: &str) -> Result<(), Problem> {
    match crate::textcheck::first_unsafe(value) {
        Some(found) => Err(Problem::UnsafeCharacters {
            value: value.to_owned(),
            found,
        }),
        None => Ok(()),
    }
}

/// A directory or file the daemon creates or reads: non-empty, absolute, not `/`, and free of
/// the unsafe characters (these paths end up in deletions, so the rule is strict).
pub(super) fn safe_path(value: &str) -> Result<PathBuf, Problem> {
    if value.is_empty() {
        return Err(Problem::Empty);
    }
    reject_unsafe(value)?;
    if !value.starts_with('/') {
        return Err(Problem::NotAbsolute(value.to_owned()));
    }
    if value.trim_end_matches('/').is_empty() {
        return Err(Problem::Malformed {
            value: value.to_owned(),
            reason: "the root directory cannot be used",
        });
    }
    Ok(PathBuf::from(value))
}

/// A container runtime's socket (`container_runtimes.*`): an absolute safe path, or empty to
/// leave the runtime out.
pub(super) fn socket_path(value: &str) -> Result<Option<PathBuf>, Problem> {
    if value.is_empty() {
        return Ok(Some(PathBuf::new()));
    }
    safe_path(value).map(Some)
}

/// `global.log_file_name`: a plain file name inside `logs.debug_dir`; empty means the fallback
/// name `gopher_debug.log`.
pub(super) fn log_file_name(value: &str) -> Result<String, Problem> {
    if value.is_empty() {
        return Ok(FALLBACK_LOG_FILE_NAME.to_owned());
    }
    reject_unsafe(value)?;
    if value.contains('/') || value == ".." || value == "." {
        return Err(Problem::Malformed {
            value: value.to_owned(),
            reason: "must be a file name, not a path",
        });
    }
    Ok(value.to_owned())
}

/// A PEM file path of `ssl_auth`; empty means "not given". Only control characters are refused;
/// existence is checked when the server starts.
pub(super) fn pem_path(value: &str) -> Result<PathBuf, Problem> {
    if value.chars().any(char::is_control) {
        return Err(Problem::Malformed {
            value: value.to_owned(),
            reason: "contains a control character",
        });
    }
    Ok(PathBuf::from(value))
}

/// Whether `value` is a DNS host name (RFC 1123 labels).
fn is_host_name(value: &str) -> bool {
    value.len() <= 253
        && value.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// `bind_addr` of a server: an IPv4/IPv6 address or a host name.
pub(super) fn bind_addr(value: &str) -> Result<String, Problem> {
    if value.is_empty() {
        return Err(Problem::Empty);
    }
    if value.parse::<IpAddr>().is_ok() || is_host_name(value) {
        return Ok(value.to_owned());
    }
    Err(Problem::Malformed {
        value: value.to_owned(),
        reason: "not an IP address or host name",
    })
}

/// A Kafka topic name (`[A-Za-z0-9._-]`, at most 249 bytes). Empty is accepted here; it is
/// refused later only if the channel actually sends to Kafka.
pub(super) fn kafka_topic(value: &str) -> Result<String, Problem> {
    let legal = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !legal {
        return Err(Problem::Malformed {
            value: value.to_owned(),
            reason: "a Kafka topic may only hold A-Z a-z 0-9 . _ -",
        });
    }
    if value.len() > 249 || value == "." || value == ".." {
        return Err(Problem::Malformed {
            value: value.to_owned(),
            reason: "not a valid Kafka topic name",
        });
    }
    Ok(value.to_owned())
}

/// `kafka.kafka_broker`: librdkafka's `bootstrap.servers`, a comma-separated list kept whole (the
/// original cut it to 31 bytes). Empty means "not configured".
pub(super) fn kafka_broker(value: &str) -> Result<String, Problem> {
    if value.is_empty() {
        return Ok(String::new());
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Problem::Malformed {
            value: value.to_owned(),
            reason: "broker list must not contain blanks",
        });
    }
    if value.split(',').any(str::is_empty) {
        return Err(Problem::Malformed {
            value: value.to_owned(),
            reason: "empty entry in the broker list",
        });
    }
    Ok(value.to_owned())
}

/// `GOPHER_KAKFA_SERVER`/`GOPHER_KAFKA_SERVER`: like the container entrypoint, `:9092` is appended
/// to a broker given without a port (here per entry of a comma-separated list).
pub(super) fn kafka_broker_with_default_port(value: &str) -> Result<String, Problem> {
    let broker = kafka_broker(value)?;
    let entries: Vec<String> = broker
        .split(',')
        .map(|entry| {
            if entry.contains(':') {
                entry.to_owned()
            } else {
                format!("{entry}:9092")
            }
        })
        .collect();
    Ok(entries.join(","))
}

/// `kafka.compression_codec`: one of librdkafka's codecs.
pub(super) fn compression_codec(value: &str) -> Result<String, Problem> {
    if COMPRESSION_CODECS.contains(&value) {
        Ok(value.to_owned())
    } else {
        Err(Problem::UnknownValue {
            value: value.to_owned(),
            allowed: "\"none\", \"gzip\", \"snappy\", \"lz4\", \"zstd\"",
        })
    }
}
