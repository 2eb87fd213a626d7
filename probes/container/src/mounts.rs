//! Where the cgroup hierarchies are mounted, from a `mountinfo` file: the v1 hierarchies by
//! controller and the v2 unified hierarchy, each with the cgroup path its mount shows as `/`.

use std::path::{Component, Path, PathBuf};

use gala_cgroup::mountinfo;

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    /// The cgroup path at the mount's root (`/` unless a sub-tree is bind-mounted).
    pub root: String,
    /// The mount point.
    pub point: PathBuf,
}

impl CgroupMount {
    /// The directory of cgroup `path` (as `/proc/<pid>/cgroup` names it) under this mount;
    /// `None` when the path lies outside the mounted sub-tree or climbs (`..`).
    pub fn dir(&self, path: &str) -> Option<PathBuf> {
        let inside = if self.root == "/" {
            path
        } else {
            let rest = path.strip_prefix(self.root.trim_end_matches('/'))?;
            if !(rest.is_empty() || rest.starts_with('/')) {
                return None;
            }
            rest
        };
        let relative = Path::new(inside.trim_start_matches('/'));
        if relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
        {
            return None;
        }
        Some(self.point.join(relative))
    }
}

/// The cgroup hierarchies of a mount namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupMounts {
    /// v1 hierarchies: their controller list (`cpu`, `cpu,cpuacct`, `name=systemd`) and mount.
    pub v1: Vec<(Vec<String>, CgroupMount)>,
    /// The v2 unified hierarchy.
    pub unified: Option<CgroupMount>,
}

impl CgroupMounts {
    /// The mount of the v1 hierarchy holding `controller`.
    pub fn v1(&self, controller: &str) -> Option<&CgroupMount> {
        self.v1
            .iter()
            .find(|(controllers, _)| controllers.iter().any(|c| c == controller))
            .map(|(_, m)| m)
    }

    /// The same mounts with the v1 hierarchies left out: every controller is then read from the
    /// unified hierarchy (`--cgroup unified`).
    pub fn unified_only(mut self) -> Self {
        self.v1.clear();
        self
    }

    /// Every mount point moved under `root` (a host tree mounted elsewhere, or a fixture).
    pub fn under(mut self, root: &Path) -> Self {
        let move_under = |m: &mut CgroupMount| {
            m.point = root.join(m.point.strip_prefix("/").unwrap_or(&m.point));
        };
        for (_, m) in &mut self.v1 {
            move_under(m);
        }
        if let Some(m) = &mut self.unified {
            move_under(m);
        }
        self
    }
}

/// The cgroup mounts of a `mountinfo` text (`/proc/<pid>/mountinfo`): v1 hierarchies by their
/// super options, the first mount of each hierarchy kept; malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> CgroupMounts {
    let mut mounts = CgroupMounts::default();
    for m in mountinfo::parse(text) {
        let mount = CgroupMount {
            root: m.root,
            point: PathBuf::from(m.mount_point),
        };
        match m.fstype.as_str() {
            "cgroup2" if mounts.unified.is_none() => mounts.unified = Some(mount),
            "cgroup" => {
                let controllers: Vec<String> = (m.super_options.split(','))
                    .filter(|o| !matches!(*o, "rw" | "ro") && !o.contains("relatime"))
                    .map(str::to_owned)
                    .collect();
                let known = mounts.v1.iter().any(|(c, _)| *c == controllers);
                if !known {
                    mounts.v1.push((controllers, mount));
                }
            }
            _ => {}
        }
    }
    mounts
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
";

    #[test]
    fn hybrid_mounts_by_controller() {
        let m = parse_mountinfo(HYBRID);
        assert_eq!(
            m.v1("cpuacct").map(|m| m.point.clone()),
            Some(PathBuf::from("/sys/fs/cgroup/cpuacct"))
        );
        assert_eq!(
            m.v1("memory").map(|m| m.point.clone()),
            Some(PathBuf::from("/sys/fs/cgroup/memory"))
        );
        assert!(m.v1("name=systemd").is_some());
        assert!(m.v1("io").is_none());
        assert_eq!(
            m.unified.as_ref().map(|m| m.point.clone()),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let v2 = m.unified_only();
        assert!(v2.v1("memory").is_none() && v2.unified.is_some());
    }

    #[test]
    fn co_mounted_controllers_and_pure_v2() {
        let m = parse_mountinfo(
            "1 0 0:1 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n",
        );
        assert_eq!(m.v1("cpu"), m.v1("cpuacct"));
        let v2 = parse_mountinfo("30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n");
        assert!(v2.v1.is_empty());
        assert_eq!(v2.unified.unwrap().point, PathBuf::from("/sys/fs/cgroup"));
    }

    #[test]
    fn dirs_respect_the_mount_root_and_refuse_climbing() {
        let m = CgroupMount {
            root: "/kubepods".into(),
            point: "/sys/fs/cgroup/memory".into(),
        };
        assert_eq!(
            m.dir("/kubepods/pod1/abc"),
            Some(PathBuf::from("/sys/fs/cgroup/memory/pod1/abc"))
        );
        assert_eq!(m.dir("/kubepodsx/abc"), None);
        assert_eq!(m.dir("/docker/abc"), None);
        let root = CgroupMount {
            root: "/".into(),
            point: "/sys/fs/cgroup".into(),
        };
        assert_eq!(root.dir("/../etc"), None);
        assert_eq!(root.dir("/a/b"), Some(PathBuf::from("/sys/fs/cgroup/a/b")));
    }

    #[test]
    fn escaped_mount_points_and_junk() {
        let m = parse_mountinfo("1 0 0:1 / /mnt/with\\040space rw - cgroup2 none rw\nnonsense\n");
        assert_eq!(m.unified.unwrap().point, PathBuf::from("/mnt/with space"));
        assert_eq!(parse_mountinfo("a - b"), CgroupMounts::default());
    }

    #[test]
    fn mounts_move_under_a_root() {
        let m = parse_mountinfo(HYBRID).under(Path::new("/host"));
        assert_eq!(
            m.v1("cpu").unwrap().point,
            PathBuf::from("/host/sys/fs/cgroup/cpu")
        );
    }
}
