//! The model behind the REST API and gopher-ctl (docs/reference/rest-api.md): PUT bodies applied to probe
//! settings, GET answers rendered from them, and the error replies. Pure functions: the HTTP
//! server, the supervisor and the control channel call these and do the I/O.

pub mod error;
pub mod get;
pub mod json;
pub mod persist;
pub mod put;
pub mod settings;
pub mod snoopers;
#[cfg(test)]
mod tests;

pub use error::{failed_body, ApiError, MAX_PUT_BODY, SUCCESS_BODY};
pub use get::{render_get, ProbeView, RuntimeView};
pub use persist::persist_body;
pub use put::{apply_put, form_decoded, strip_json_prefix, PutContext, PutOutcome};
pub use settings::{DesiredState, ProbeSettings, ProcNameEntry, SnooperEntries, SnooperMode};
