//! A process's container membership from the text of `/proc/<pid>/cgroup`: which container it
//! is in and that container's cgroup path in every hierarchy, cut at the container's own
//! directory (a process may sit in a sub-cgroup of it, as CRI-O's `.../container`).

use std::path::PathBuf;

use gala_cgroup::{container_of_path, parse_cgroup};

use crate::mounts::CgroupMounts;

/// The container a process is in and its cgroup paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// Full 64-hex container id, lowercase.
    pub container_id: String,
    /// v1 hierarchies: controller list as the file names it, and the container's path there.
    pub v1: Vec<(String, String)>,
    /// The container's path in the unified hierarchy (the `0::` line).
    pub unified: Option<String>,
}

impl Membership {
    /// The container's directory for `controller`: in the v1 hierarchy holding it if that is
    /// mounted (and the process's line names it), else in the unified hierarchy.
    pub fn dir(&self, mounts: &CgroupMounts, controller: &str) -> Option<PathBuf> {
        if let Some(mount) = mounts.v1(controller) {
            let path = self
                .v1
                .iter()
                .find(|(c, _)| c.split(',').any(|c| c == controller))
                .map(|(_, p)| p)?;
            return mount.dir(path);
        }
        self.unified_dir(mounts)
    }

    /// The container's directory in the unified hierarchy.
    pub fn unified_dir(&self, mounts: &CgroupMounts) -> Option<PathBuf> {
        mounts.unified.as_ref()?.dir(self.unified.as_deref()?)
    }

    /// Whether `controller` is read from a v1 hierarchy (else from the unified one).
    pub fn is_v1(mounts: &CgroupMounts, controller: &str) -> bool {
        mounts.v1(controller).is_some()
    }
}

/// The membership of a process whose `/proc/<pid>/cgroup` is `text`; `None` for a process
/// outside any container.
pub fn parse_membership(text: &str) -> Option<Membership> {
    let container_id = parse_cgroup(text).container_id?;
    let mut v1 = Vec::new();
    let mut unified = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(hierarchy), Some(controllers), Some(path)) =
            (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let Some((id, dir)) = container_of_path(path) else {
            continue;
        };
        if id != container_id {
            continue;
        }
        if hierarchy == "0" && controllers.is_empty() {
            unified = Some(dir.to_owned());
        } else {
            v1.push((controllers.to_owned(), dir.to_owned()));
        }
    }
    Some(Membership {
        container_id,
        v1,
        unified,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mounts::parse_mountinfo;

    const ID: &str = "4f2d0c9e1b7a6c3d5e8f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f";

    #[test]
    fn hybrid_membership_gives_v1_dirs_first_then_unified() {
        let text = format!(
            "9:name=systemd:/kubepods/besteffort/podx/{ID}\n4:memory:/kubepods/besteffort/podx/{ID}\n2:cpuacct:/kubepods/besteffort/podx/{ID}\n1:cpu:/kubepods/besteffort/podx/{ID}\n0::/kubepods/besteffort/podx/{ID}\n"
        );
        let m = parse_membership(&text).expect("in a container");
        assert_eq!(m.container_id, ID);
        let mounts = parse_mountinfo(
            "1 0 0:1 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n2 0 0:2 / /sys/fs/cgroup/cpuacct rw - cgroup cgroup rw,cpuacct\n3 0 0:3 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n",
        );
        assert_eq!(
            m.dir(&mounts, "memory"),
            Some(PathBuf::from(format!(
                "/sys/fs/cgroup/memory/kubepods/besteffort/podx/{ID}"
            )))
        );
        // blkio is not mounted in v1 here: the unified hierarchy serves it.
        assert_eq!(
            m.dir(&mounts, "blkio"),
            Some(PathBuf::from(format!(
                "/sys/fs/cgroup/unified/kubepods/besteffort/podx/{ID}"
            )))
        );
        assert!(Membership::is_v1(&mounts, "cpuacct"));
        assert!(!Membership::is_v1(&mounts, "io"));
    }

    #[test]
    fn sub_cgroups_are_cut_at_the_container() {
        let text = format!("0::/system.slice/crio-{ID}.scope/container\n");
        let m = parse_membership(&text).expect("in a container");
        assert_eq!(
            m.unified.as_deref(),
            Some(&*format!("/system.slice/crio-{ID}.scope"))
        );
    }

    #[test]
    fn a_mounted_v1_controller_the_process_line_lacks_gives_no_dir() {
        let text = format!("0::/docker/{ID}\n");
        let m = parse_membership(&text).expect("in a container");
        let mounts =
            parse_mountinfo("1 0 0:1 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n");
        assert_eq!(m.dir(&mounts, "memory"), None);
    }

    #[test]
    fn host_processes_have_no_membership() {
        assert_eq!(parse_membership("0::/init.scope\n"), None);
        assert_eq!(parse_membership(""), None);
    }
}
