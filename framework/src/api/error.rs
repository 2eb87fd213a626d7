//! The REST API's error type and its response bodies (docs/reference/rest-api.md §2.2, §9).
//!
//! Every verbatim message of the original lives in exactly one constructor here. Unlike the
//! original, the reply is never truncated (it used a 128-byte buffer) and the message is
//! JSON-escaped, so a quote in a probe or sub-item name cannot break the reply.

use crate::probes::params::ParamError;

/// The body of a successful PUT, byte for byte as the original sent it.
pub const SUCCESS_BODY: &str =
    "{ \"result\": \"success\", \"message\":\"New config takes effect\" }\n";

/// Maximum PUT body size in bytes, `json=` prefix included.
pub const MAX_PUT_BODY: usize = 1_048_576;

/// A refused request: HTTP status and the message of the `failed` reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// HTTP status (400, or 404 for unknown URLs).
    pub status: u16,
    /// The message, exactly as the original worded it.
    pub message: String,
}

impl ApiError {
    /// A 400 with `message`.
    pub fn bad_request_with(message: impl Into<String>) -> Self {
        ApiError {
            status: 400,
            message: message.into(),
        }
    }

    /// `Bad request`: the default failure (no known key, `cmd` without `probe`, wrong section types).
    pub fn bad_request() -> Self {
        Self::bad_request_with("Bad request")
    }

    /// 404 `url not found`: empty path, or GET of a probe that does not exist.
    pub fn url_not_found() -> Self {
        ApiError {
            status: 404,
            message: "url not found".into(),
        }
    }

    /// `invalid probe name <n>`: PUT to a name that is no probe.
    pub fn invalid_probe_name(name: &str) -> Self {
        Self::bad_request_with(format!("invalid probe name {name}"))
    }

    /// `not supported in the current version`: the probe was left out of this build.
    pub fn not_supported() -> Self {
        Self::bad_request_with("not supported in the current version")
    }

    /// `The number of external probes has over the threshold.`
    pub fn too_many_external_probes() -> Self {
        Self::bad_request_with("The number of external probes has over the threshold.")
    }

    /// A method other than GET and PUT (the original's libevent answered 501 with HTML).
    pub fn method_not_allowed() -> Self {
        ApiError {
            status: 405,
            message: "method not allowed: use GET or PUT".into(),
        }
    }

    /// `put data must start with json=`
    pub fn missing_json_prefix() -> Self {
        Self::bad_request_with("put data must start with json=")
    }

    /// `put data size exceeds 1048576`
    pub fn body_too_large() -> Self {
        Self::bad_request_with(format!("put data size exceeds {MAX_PUT_BODY}"))
    }

    /// `invalid json format`: unparsable JSON or a root that is not an object.
    pub fn invalid_json() -> Self {
        Self::bad_request_with("invalid json format")
    }

    /// `Invalid probe range: must be string.`: a non-string `cmd.probe` item (built-in probe).
    pub fn subitem_not_string() -> Self {
        Self::bad_request_with("Invalid probe range: must be string.")
    }

    /// `invalid probe range: must be string and not null.`: a non-string `cmd.probe` item
    /// (custom probe).
    pub fn custom_subitem_not_string() -> Self {
        Self::bad_request_with("invalid probe range: must be string and not null.")
    }

    /// `The lengh of probe name must range from 0 to 64.` (sic): a sub-item of 0 or >64 bytes.
    pub fn subitem_length() -> Self {
        Self::bad_request_with("The lengh of probe name must range from 0 to 64.")
    }

    /// `unsupported probe range: <s>.`: a sub-item the built-in probe does not have.
    pub fn unsupported_subitem(name: &str) -> Self {
        Self::bad_request_with(format!("unsupported probe range: {name}."))
    }

    /// `invalid external probe range: subprobe name error,name is <s>.`: a sub-item the custom
    /// probe did not declare.
    pub fn undeclared_custom_subitem(name: &str) -> Self {
        Self::bad_request_with(format!(
            "invalid external probe range: subprobe name error,name is {name}."
        ))
    }

    /// `invalid probe ranges: at least one must be set`
    pub fn no_subitem() -> Self {
        Self::bad_request_with("invalid probe ranges: at least one must be set")
    }

    /// `invalid custom probe bin path`: `cmd.bin` missing or not the declared path.
    pub fn custom_bin_mismatch() -> Self {
        Self::bad_request_with("invalid custom probe bin path")
    }

    /// `Error occurs when parsing snooper <key>`
    pub fn snooper(key: &str) -> Self {
        Self::bad_request_with(format!("Error occurs when parsing snooper {key}"))
    }

    /// `snoopers and blacklist are mutually exclusive`
    pub fn snoopers_and_blacklist() -> Self {
        Self::bad_request_with("snoopers and blacklist are mutually exclusive")
    }

    /// `the snooper for <n> cannot be empty`
    pub fn snooper_empty(probe: &str) -> Self {
        Self::bad_request_with(format!("the snooper for {probe} cannot be empty"))
    }

    /// `invalid state <s>: must be running or stopped`
    pub fn invalid_state(state: &str) -> Self {
        Self::bad_request_with(format!("invalid state {state}: must be running or stopped"))
    }

    /// `invalid state: must be string`
    pub fn state_not_string() -> Self {
        Self::bad_request_with("invalid state: must be string")
    }

    /// `failed to start probe: <bin> is not installed`: the original's text (clients match
    /// its start), then the file that is missing.
    pub fn not_installed(bin: &std::path::Path) -> Self {
        Self::bad_request_with(format!(
            "failed to start probe: {} is not installed",
            bin.display()
        ))
    }

    /// `failed to set entry for probe, unknown func: probe_main_<bin>`: the original's
    /// in-daemon probes; kept for completeness.
    pub fn unknown_entry(bin: &str) -> Self {
        Self::bad_request_with(format!(
            "failed to set entry for probe, unknown func: probe_main_{bin}"
        ))
    }

    /// `failed to find process of extend probe`: stop requested but no process is known.
    pub fn process_not_found() -> Self {
        Self::bad_request_with("failed to find process of extend probe")
    }

    /// `failed to send ipc msg to probe`
    pub fn ipc_send_failed() -> Self {
        Self::bad_request_with("failed to send ipc msg to probe")
    }

    /// The reply body: `{ "result": "failed", "message":"<text>" }\n`, message JSON-escaped.
    pub fn body(&self) -> String {
        failed_body(&self.message)
    }
}

/// `{ "result": "failed", "message":"<text>" }\n` with `message` JSON-escaped; also the body
/// of gopher-ctl's `Failed to get probe config`.
pub fn failed_body(message: &str) -> String {
    let quoted = serde_json::Value::from(message).to_string();
    format!("{{ \"result\": \"failed\", \"message\":{quoted} }}\n")
}

impl From<ParamError> for ApiError {
    fn from(e: ParamError) -> Self {
        ApiError::bad_request_with(e.to_string())
    }
}
