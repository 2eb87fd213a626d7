//! What the probe learns once about the host it runs on: where its proc tree and cgroup
//! hierarchies are, the clock tick of `cpuacct.stat` and the boot time start times count from.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::membership::{parse_membership, Membership};
use crate::mounts::{parse_mountinfo, CgroupMounts};
use crate::parse;

/// Which hierarchies the probe reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum CgroupMode {
    /// A controller mounted in a v1 hierarchy is read there, every other one from the unified
    /// hierarchy (hybrid systems); a pure v2 system has only the latter.
    #[default]
    Auto,
    /// Only the unified (v2) hierarchy, even where v1 hierarchies are mounted.
    Unified,
}

/// The host's trees and constants.
#[derive(Debug, Clone)]
pub struct Host {
    /// The host's root (`/`, a host tree mounted elsewhere, or a fixture).
    pub root: PathBuf,
    /// The cgroup hierarchies, mount points under `root`.
    pub mounts: CgroupMounts,
    /// Clock ticks per second (`USER_HZ`) of `cpuacct.stat` and `/proc/<pid>/stat`.
    pub clk_tck: u64,
    /// Boot time, seconds since the epoch; `None` when `/proc/stat` has none.
    pub btime: Option<u64>,
}

impl Host {
    /// Reads the cgroup mounts of the host's init (`<root>/proc/1/mountinfo`, else the
    /// probe's own) and the boot time. Fails only when no cgroup hierarchy is mounted.
    pub fn detect(root: &Path, mode: CgroupMode) -> Result<Self> {
        let init = root.join("proc/1/mountinfo");
        let own = root.join("proc/self/mountinfo");
        let (path, text) = match crate::file::read_text(&init) {
            Ok(text) => (init, text),
            Err(_) => {
                let text = crate::file::read_text(&own).map_err(|source| Error::Mountinfo {
                    path: own.clone(),
                    source,
                })?;
                (own, text)
            }
        };
        let mut mounts = parse_mountinfo(&text).under(root);
        if mode == CgroupMode::Unified {
            mounts = mounts.unified_only();
        }
        if mounts.v1.is_empty() && mounts.unified.is_none() {
            return Err(Error::NoCgroups { path });
        }
        let btime = crate::file::read_text(&root.join("proc/stat"))
            .ok()
            .and_then(|t| parse::btime(&t));
        Ok(Host {
            root: root.to_path_buf(),
            mounts,
            clk_tck: clk_tck(),
            btime,
        })
    }

    /// `<root>/proc`.
    pub fn proc_root(&self) -> PathBuf {
        self.root.join("proc")
    }

    /// The container membership of process `pid`, if it is in a container.
    pub fn membership(&self, pid: u32) -> Option<Membership> {
        let text = crate::file::read_text(&self.proc_file(pid, "cgroup")).ok()?;
        parse_membership(&text)
    }

    /// `<root>/proc/<pid>/<name>`.
    pub fn proc_file(&self, pid: u32, name: &str) -> PathBuf {
        self.root.join(format!("proc/{pid}/{name}"))
    }
}

/// `sysconf(_SC_CLK_TCK)`, 100 when unknown (every Linux architecture uses 100).
fn clk_tck() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|v| u64::try_from(v).ok())
        .filter(|v| *v > 0)
        .unwrap_or(100)
}
