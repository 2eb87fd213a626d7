//! The container probe: cAdvisor-equivalent metrics of containers (CPU, memory, block I/O,
//! inodes, network, OOM kills, start time, open files) read straight from the cgroup v1 and
//! v2 files and from `/proc/<pid>` of the containers' processes, for the containers the
//! snoopers select. One module per concept: where the hierarchies are ([`mounts`]), which
//! container a process is in ([`membership`]), which containers to report ([`scope`]), the
//! pure text parsers ([`parse`]) and file reading ([`file`]), a container's cgroup files
//! ([`cgroupfs`]) and processes ([`procfs`]), one container's values and records ([`sample`]),
//! and the cycle ([`collector`]). [`fixture`] writes a host tree for the tests and the benchmark.

#![warn(missing_docs)]

pub mod cgroupfs;
pub mod collector;
pub mod error;
pub mod file;
pub mod fixture;
pub mod host;
pub mod membership;
pub mod mounts;
pub mod parse;
pub mod procfs;
pub mod sample;
pub mod scope;

pub use collector::{Collector, Cycle};
pub use error::{Error, Result};
pub use host::{CgroupMode, Host};
pub use sample::{Record, Sample, TABLES};
pub use scope::Scope;

/// File name and text of the probe's meta file.
pub const META: (&str, &str) = ("container.meta", include_str!("../container.meta"));

/// Environment variable naming the host's root (as baseinfo's `--host-root`).
pub const ENV_HOST_PATH: &str = "GOPHER_HOST_PATH";

/// Environment variable choosing the hierarchies read (`auto` or `unified`).
pub const ENV_CGROUP_MODE: &str = "GOPHER_CONTAINER_CGROUP";
