//! Probes: which ones exist, which ones `probes.init` asks for, their parameters, and their
//! child processes.

pub mod catalogue;
pub mod custom;
pub mod init_file;
pub mod params;
pub mod secret;

pub use catalogue::{
    BuiltinProbe, Catalogue, DeclaredProbe, ProbeKind, ProbeOrigin, SnoopKinds, SubItem, BUILTIN,
    BUILTIN_PROBES,
};
pub use custom::{CustomProbe, CustomProbeError};
pub use init_file::{InitEntry, InitFileError};
pub use params::{CustomParamValues, ParamKey, Params, ProfilingChannel};
