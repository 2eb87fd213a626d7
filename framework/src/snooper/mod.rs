//! Snooper resolution: turns a probe's snooper entries (`proc_id`, `proc_name`, `container_id`,
//! `pod_id`, `container_name`) into the processes and containers the probe is told to observe.
//!
//! There is no eBPF exec/exit watcher in this build (kprobes are absent), so the caller re-runs
//! the resolution periodically; [`Resolver`] says whether the set changed since last time, and one
//! [`ProcSnapshot`] can serve every probe of a period.
//!
//! Decisions where the original's behaviour is not kept or was unspecified:
//! - `proc_id` yields a process only while that pid is alive (the original sent any pid).
//! - `proc_name.comm` is a `regex`-crate expression, unanchored. Unlike POSIX ERE: `\d`, `\w`,
//!   `\s` are classes (ERE: literal letters); `\` escapes inside brackets (`[\]]`); a `{` that
//!   does not start a valid repetition is an error (glibc: literal); no back-references (a glibc
//!   ERE extension); matching is Unicode-aware. Patterns are not truncated to 15 bytes here (the
//!   REST layer stores what the operator sent; a comm is never longer than 15 bytes anyway).
//! - The daemon itself and its children never match `proc_name`; `proc_id` and container/pod
//!   entries are not filtered that way (an explicit choice of the operator).
//! - `container_id` is a case-insensitive prefix of the full 64-hex id, any length 1–64 (the
//!   original kept only the first 12 characters).
//! - `container_name` is a substring of the container name (empty matches every container, as the
//!   original), matched in-process. The daemon names the containers of the scan through
//!   [`crate::containers::RuntimeDirectory`] (the runtimes' API sockets, then their CLIs'
//!   `inspect`); without one, names come from a listing of the installed runtime CLIs. Either
//!   way request data never reaches a program or a shell (see [`runtime`]). The name is the
//!   Kubernetes container name (`io.kubernetes.container.name`) when the runtime has it, else
//!   the runtime's own name. Unlike the original it yields the containers' processes too, as
//!   `container_id` and `pod_id` do.
//! - Containers are those with a live process in the scan (their ids and pods come from
//!   `/proc/<pid>/cgroup`), plus, when names come from a CLI listing (no directory), those it
//!   lists; `cpucg_inode` is 0 when the cgroup directory cannot be found (e.g. cgroup paths seen
//!   through another cgroup namespace).
//! - The cap (default 1000) cuts from the end of the sorted list: containers sort before
//!   processes, so processes with the highest pids go first; the count cut is reported.

mod error;
mod proc;
mod resolve;
pub mod runtime;

// The cgroup parser and the id forms live in the `gala-cgroup` crate (probes use them too); the
// sibling modules keep importing them as `super::cgroup` and `super::ids`.
use gala_cgroup::{cgroup, ids};

pub use error::{ListingError, QueryError, Result, RuntimeError, SnooperError};
pub use gala_cgroup::{
    is_full_container_id, normalise_container_id_prefix, normalise_pod_id, parse_cgroup,
    CgroupIdentity, CpuCgroupDir,
};
pub use proc::{
    normalise_cmdline, parse_comm, parse_stat_ppid, parse_stat_start_ticks, read_process,
    ContainerInfo, ProcSnapshot, ProcessInfo, ScanRoots, CMDLINE_MAX_BYTES,
};
pub use resolve::{
    resolve, Kinds, ProcNameEntry, ProcPattern, Resolution, ResolveOptions, ResolveReport,
    Resolver, Snooped, SnooperEntries, SnooperQuery, DEFAULT_MAX_OBJECTS, DEFAULT_RUNTIME_TIMEOUT,
};
pub use runtime::{RuntimeCli, RuntimeContainer, RuntimeInventory, RuntimeKind};

#[cfg(test)]
mod tests;
