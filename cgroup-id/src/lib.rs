//! Container and pod identity from a process's cgroup membership: the parser of
//! `/proc/<pid>/cgroup` (v1, v2 and hybrid), the normal forms of container and pod ids, and
//! the listing of a proc tree's processes, and the mount table where the hierarchies are.
//! Shared by the daemon's snooper resolution and the probes that find containers themselves,
//! which must not depend on the daemon crate.

#![warn(missing_docs)]

pub mod cgroup;
pub mod ids;
pub mod mountinfo;
pub mod procfs;

pub use cgroup::{container_of_path, parse_cgroup, CgroupIdentity, CpuCgroupDir};
pub use ids::{
    abbreviate_container_id, is_full_container_id, normalise_container_id_prefix, normalise_pod_id,
    FULL_CONTAINER_ID_LEN, SHORT_CONTAINER_ID_LEN,
};
pub use procfs::{parse_pid, pids, read_into};
