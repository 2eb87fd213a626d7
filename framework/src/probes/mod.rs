//! Probes: which ones exist, which ones `probes.init` asks for, and their child processes.

pub mod catalogue;
pub mod custom;
pub mod init_file;
pub mod process;

pub use catalogue::{resolve, ProbeBinary, ResolveError};
pub use custom::{CustomProbe, CustomProbeError};
pub use init_file::{InitEntry, InitFileError};
pub use process::ProbeProcess;
