//! The SDK for gala-gopher probes written in Rust (and the engine of the C library and of the
//! `gala-probe` shell helper in `probe-sdk/cli`): the control channel on fd 3 in both
//! encodings, a typed and updating view of the configuration, record and event output checked
//! against the probe's meta file, buffered stdout, and a clean stop on SIGTERM. It pulls no
//! command-line parser into a probe (`tests/dependencies.rs` checks). The contract shared with the
//! Python, C and shell SDKs is `probe-sdk/API.md`.
//!
//! ```no_run
//! use std::time::Duration;
//! use gala_probe_sdk::{emit, Event, Probe, Severity, Wake};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut probe = Probe::connect()?;
//! while probe.running() {
//!     let config = probe.config();
//!     for pid in config.pids() {
//!         emit!(probe, "my_proc", pid, "running", 1)?;
//!     }
//!     probe.event(&Event::new("my_proc", "1", "state", Severity::Warn, "example"))?;
//!     let period = Duration::from_secs(config.params().report_period.into());
//!     if probe.wait(period) == Wake::Stop {
//!         break;
//!     }
//! }
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod config;
mod error;
mod event;
mod line;
mod output;
mod probe;

pub use config::{param_text, Config, ENV_CONFIG};
pub use error::{ConfigError, ConnectError, EmitError};
pub use event::{asctime_now, Event, Severity};
pub use line::{breaks_line, escape_text};
pub use output::{Output, Schema, ENV_META, FLUSH_THRESHOLD};
pub use probe::{probe_name, Level, Probe, ProbeBuilder, Wake, FIRST_CONFIG_TIMEOUT, SDK_VERSION};

pub use gala_ipc_proto::v1::{Container, Params, Process, SnooperMode};
pub use gala_ipc_proto::{PARAMS_CHG, SNOOPER_CHG};
