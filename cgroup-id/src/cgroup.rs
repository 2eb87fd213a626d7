//! Parses the text of `/proc/<pid>/cgroup` (cgroup v1, v2 and hybrid) into the container id, the
//! pod uid and the container's cpu cgroup directory.
//!
//! Recognised path components (the innermost container component wins, so for kind/docker-in-docker
//! the id is the inner container's):
//! - bare 64-hex ids: docker cgroupfs `/docker/<id>`, iSulad `/isulad/<id>`, kubepods cgroupfs
//!   `/kubepods/<qos>/pod<uuid>/<id>`, containerd namespaces `/k8s.io/<id>`;
//! - systemd scopes `docker-<id>.scope`, `cri-containerd-<id>.scope`, `crio-<id>.scope`,
//!   `libpod-<id>.scope`, `isulad-<id>.scope` (also without `.scope`, as podman's cgroupfs
//!   `libpod-<id>`); helper scopes such as `crio-conmon-<id>.scope` are not containers;
//! - pods: `pod<uuid>` (cgroupfs, dashed or 32 hex) and `kubepods[-<qos>]-pod<uuid_with_underscores>.slice`.

use std::path::{Component, Path, PathBuf};

use crate::ids::{is_full_container_id, normalise_pod_id};

/// Prefixes of systemd scope names (and podman cgroupfs directories) that wrap a container id.
const SCOPE_PREFIXES: [&str; 5] = ["docker-", "cri-containerd-", "crio-", "libpod-", "isulad-"];

/// What a process's cgroup membership says about its container and pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupIdentity {
    /// Full 64-hex container id, lowercase.
    pub container_id: Option<String>,
    /// Pod uid in the dashed 36-char lowercase form.
    pub pod_id: Option<String>,
    /// The container's directory in the cpu controller hierarchy.
    pub cpu_dir: Option<CpuCgroupDir>,
}

/// A container's directory in the cpu controller hierarchy, relative to the cgroup mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuCgroupDir {
    /// The v1 hierarchy's controller list as `/proc/<pid>/cgroup` names it (`cpu,cpuacct`), which
    /// is also the mount directory's name; empty for the v2 unified hierarchy.
    pub hierarchy: String,
    /// Absolute cgroup path ending with the container's component (never a sub-cgroup of it).
    pub path: String,
}

impl CpuCgroupDir {
    /// Candidate directories under `<sys_root>/fs/cgroup`, most likely first. `None` when the path
    /// climbs (`..`, as seen from inside another cgroup namespace) and so cannot be located.
    pub fn candidates(&self, sys_root: &Path) -> Option<Vec<PathBuf>> {
        let relative = Path::new(self.path.trim_start_matches('/'));
        if relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
        {
            return None;
        }
        let mount = sys_root.join("fs/cgroup");
        if self.hierarchy.is_empty() {
            return Some(vec![mount.join(relative)]);
        }
        let mut dirs = vec![mount.join(&self.hierarchy).join(relative)];
        // systemd mounts `cpu,cpuacct` and links `cpu` to it; other setups mount `cpu` alone.
        if self.hierarchy != "cpu" {
            dirs.push(mount.join("cpu").join(relative));
        }
        Some(dirs)
    }
}

/// One line of `/proc/<pid>/cgroup`: `<hierarchy-id>:<controllers>:<path>`.
struct CgroupLine<'a> {
    controllers: &'a str,
    path: &'a str,
    is_unified: bool,
}

impl CgroupLine<'_> {
    fn has_controller(&self, name: &str) -> bool {
        self.controllers.split(',').any(|c| c == name)
    }

    /// Which line to believe first: the original read the cpuset hierarchy; then cpu, then the v2
    /// unified line, then anything else (`name=systemd`, ...).
    fn rank(&self) -> u8 {
        if self.has_controller("cpuset") {
            0
        } else if self.has_controller("cpu") {
            1
        } else if self.is_unified {
            2
        } else {
            3
        }
    }
}

/// Container and pod found along one cgroup path.
#[derive(Default)]
struct PathIds {
    /// The container id and the byte length of the path up to and including its component.
    container: Option<(String, usize)>,
    pod: Option<String>,
}

/// Parses the text of `/proc/<pid>/cgroup`. Never fails: unknown or malformed lines are ignored
/// and a process outside any container gets an empty identity.
pub fn parse_cgroup(text: &str) -> CgroupIdentity {
    let mut lines: Vec<CgroupLine<'_>> = text.lines().filter_map(split_line).collect();
    lines.sort_by_key(CgroupLine::rank);

    let scanned: Vec<(&CgroupLine<'_>, PathIds)> =
        lines.iter().map(|l| (l, scan_path(l.path))).collect();
    let Some((_, chosen)) = scanned
        .iter()
        .find(|(_, ids)| ids.container.is_some())
        .or_else(|| scanned.iter().find(|(_, ids)| ids.pod.is_some()))
    else {
        return CgroupIdentity::default();
    };
    let container_id = chosen.container.as_ref().map(|(id, _)| id.clone());
    let pod_id = chosen.pod.clone();

    // The cpu directory: the v1 hierarchy holding the cpu controller if there is one (hybrid
    // systems mount cpu in v1), else the unified hierarchy; only if it names the same container.
    let cpu_line = scanned
        .iter()
        .find(|(l, _)| l.has_controller("cpu"))
        .or_else(|| scanned.iter().find(|(l, _)| l.is_unified));
    let cpu_dir = cpu_line.and_then(|(line, ids)| {
        let (id, end) = ids.container.as_ref()?;
        (Some(id) == container_id.as_ref()).then(|| CpuCgroupDir {
            hierarchy: if line.is_unified {
                String::new()
            } else {
                line.controllers.to_string()
            },
            path: line.path[..*end].to_string(),
        })
    });

    CgroupIdentity {
        container_id,
        pod_id,
        cpu_dir,
    }
}

/// The container a cgroup path belongs to (its innermost container component): the full 64-hex id,
/// lowercase, and the path up to and including that component, which is the container's own
/// directory even when the process sits in a sub-cgroup of it. `None` outside a container.
pub fn container_of_path(path: &str) -> Option<(String, &str)> {
    let (id, end) = scan_path(path).container?;
    Some((id, &path[..end]))
}

fn split_line(line: &str) -> Option<CgroupLine<'_>> {
    let mut parts = line.splitn(3, ':');
    let hierarchy = parts.next()?;
    let controllers = parts.next()?;
    let path = parts.next()?;
    Some(CgroupLine {
        controllers,
        path,
        is_unified: hierarchy == "0" && controllers.is_empty(),
    })
}

/// Finds the innermost container component of `path` and the pod component nearest above it.
fn scan_path(path: &str) -> PathIds {
    let mut ids = PathIds::default();
    let mut pod_above_container = None;
    let mut offset = 0;
    for component in path.split('/') {
        let end = offset + component.len();
        offset = end + 1;
        if let Some(pod) = pod_from_component(component) {
            ids.pod = Some(pod);
        } else if let Some(id) = container_from_component(component) {
            ids.container = Some((id, end));
            pod_above_container.clone_from(&ids.pod);
        }
    }
    if ids.container.is_some() {
        ids.pod = pod_above_container;
    }
    ids
}

fn container_from_component(component: &str) -> Option<String> {
    let stem = component.strip_suffix(".scope").unwrap_or(component);
    let id = SCOPE_PREFIXES
        .iter()
        .find_map(|p| stem.strip_prefix(p))
        .unwrap_or(stem);
    is_full_container_id(id).then(|| id.to_ascii_lowercase())
}

fn pod_from_component(component: &str) -> Option<String> {
    if let Some(stem) = component.strip_suffix(".slice") {
        // `kubepods-burstable-pod<uuid_with_underscores>.slice`: systemd escapes `-` as `_`.
        let at = stem.rfind("-pod")?;
        let uid = stem[at + "-pod".len()..].replace('_', "-");
        return normalise_pod_id(&uid);
    }
    normalise_pod_id(component.strip_prefix("pod")?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ID: &str = "4f2d0c9e1b7a6c3d5e8f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f";
    const ID2: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const POD: &str = "3f1e6a4c-9b2d-4e8f-a1b2-0123456789ab";
    const POD_UNDERSCORED: &str = "3f1e6a4c_9b2d_4e8f_a1b2_0123456789ab";

    fn ids(text: &str) -> (Option<String>, Option<String>) {
        let got = parse_cgroup(text);
        (got.container_id, got.pod_id)
    }

    fn some(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    #[test]
    fn docker_cgroupfs_v1() {
        let text = format!(
            "12:cpuset:/docker/{ID}\n11:cpu,cpuacct:/docker/{ID}\n1:name=systemd:/docker/{ID}\n"
        );
        let got = parse_cgroup(&text);
        assert_eq!(got.container_id, some(ID));
        assert_eq!(got.pod_id, None);
        assert_eq!(
            got.cpu_dir,
            Some(CpuCgroupDir {
                hierarchy: "cpu,cpuacct".into(),
                path: format!("/docker/{ID}"),
            })
        );
    }

    #[test]
    fn docker_systemd_scope_v2() {
        let text = format!("0::/system.slice/docker-{ID}.scope\n");
        let got = parse_cgroup(&text);
        assert_eq!(got.container_id, some(ID));
        assert_eq!(
            got.cpu_dir,
            Some(CpuCgroupDir {
                hierarchy: String::new(),
                path: format!("/system.slice/docker-{ID}.scope"),
            })
        );
    }

    #[test]
    fn containerd_cri_systemd_slices_give_pod_and_container() {
        let text = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_UNDERSCORED}.slice/cri-containerd-{ID}.scope\n"
        );
        assert_eq!(ids(&text), (some(ID), some(POD)));
        // Guaranteed pods have no qos level.
        let text = format!(
            "0::/kubepods.slice/kubepods-pod{POD_UNDERSCORED}.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(ids(&text), (some(ID), some(POD)));
    }

    #[test]
    fn kubepods_cgroupfs_v1() {
        let text = format!(
            "11:cpu,cpuacct:/kubepods/besteffort/pod{POD}/{ID}\n3:cpuset:/kubepods/besteffort/pod{POD}/{ID}\n"
        );
        let got = parse_cgroup(&text);
        assert_eq!((got.container_id, got.pod_id), (some(ID), some(POD)));
        assert_eq!(
            got.cpu_dir.map(|d| d.path),
            Some(format!("/kubepods/besteffort/pod{POD}/{ID}"))
        );
    }

    #[test]
    fn crio_scope_with_nested_container_cgroup() {
        let text = format!(
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD_UNDERSCORED}.slice/crio-{ID}.scope/container\n"
        );
        let got = parse_cgroup(&text);
        assert_eq!((got.container_id, got.pod_id), (some(ID), some(POD)));
        // The cpu directory is the container's, not the nested sub-cgroup the process sits in.
        assert!(got
            .cpu_dir
            .is_some_and(|d| d.path.ends_with(&format!("crio-{ID}.scope"))));
        // conmon runs beside the container, not in it.
        let text = format!(
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD_UNDERSCORED}.slice/crio-conmon-{ID}.scope\n"
        );
        assert_eq!(ids(&text), (None, some(POD)));
    }

    #[test]
    fn podman_and_isulad() {
        assert_eq!(
            ids(&format!("0::/machine.slice/libpod-{ID}.scope/container\n")),
            (some(ID), None)
        );
        assert_eq!(
            ids(&format!("1:cpuset:/libpod_parent/libpod-{ID}\n")),
            (some(ID), None)
        );
        assert_eq!(
            ids(&format!("4:cpu,cpuacct:/isulad/{ID}\n")),
            (some(ID), None)
        );
        assert_eq!(
            ids(&format!("0::/system.slice/isulad-{ID}.scope\n")),
            (some(ID), None)
        );
    }

    #[test]
    fn uppercase_ids_are_lowercased_and_32_hex_pods_dashed() {
        let upper = ID.to_ascii_uppercase();
        let bare_pod = POD.replace('-', "");
        assert_eq!(
            ids(&format!("0::/kubepods/pod{bare_pod}/{upper}\n")),
            (some(ID), some(POD))
        );
    }

    #[test]
    fn innermost_container_wins_and_pod_must_be_above_it() {
        // kind: a Kubernetes node running in a docker container.
        let text = format!("0::/docker/{ID2}/kubepods/burstable/pod{POD}/{ID}\n");
        assert_eq!(ids(&text), (some(ID), some(POD)));
        // A pod directory below the container is not the container's pod.
        let text = format!("0::/docker/{ID}/pod{POD}\n");
        assert_eq!(ids(&text), (some(ID), None));
    }

    #[test]
    fn cpuset_line_is_believed_before_others() {
        let text = format!("1:name=systemd:/docker/{ID2}\n5:cpuset:/docker/{ID}\n");
        let got = parse_cgroup(&text);
        assert_eq!(got.container_id, some(ID));
        // No cpu hierarchy line names that container, so its cpu directory is unknown.
        assert_eq!(got.cpu_dir, None);
    }

    #[test]
    fn hybrid_prefers_the_v1_cpu_hierarchy_for_the_cpu_directory() {
        let text = format!(
            "4:cpu,cpuacct:/system.slice/docker-{ID}.scope\n0::/system.slice/docker-{ID}.scope\n"
        );
        let dir = parse_cgroup(&text).cpu_dir.expect("cpu dir");
        assert_eq!(dir.hierarchy, "cpu,cpuacct");
    }

    #[test]
    fn container_of_path_cuts_at_the_container_component() {
        let path = format!("/kubepods.slice/crio-{ID}.scope/container");
        assert_eq!(
            container_of_path(&path),
            Some((ID.to_string(), &*format!("/kubepods.slice/crio-{ID}.scope")))
        );
        assert_eq!(container_of_path("/system.slice/sshd.service"), None);
    }

    #[test]
    fn host_processes_and_junk_have_no_identity() {
        for text in [
            "",
            "0::/init.scope\n",
            "0::/system.slice/nginx.service\n",
            "12:cpuset:/\n11:cpu,cpuacct:/user.slice\n",
            "garbage without colons\n",
            &format!("0::/docker/{}\n", &ID[..63]),
            &format!("0::/system.slice/docker-{ID}x.scope\n"),
            "0::/kubepods.slice/kubepods-podnotauuid.slice\n",
        ] {
            assert_eq!(parse_cgroup(text), CgroupIdentity::default(), "{text:?}");
        }
    }

    #[test]
    fn cpu_dir_candidates_refuse_climbing_paths() {
        let root = Path::new("/sys");
        let v1 = CpuCgroupDir {
            hierarchy: "cpu,cpuacct".into(),
            path: format!("/docker/{ID}"),
        };
        assert_eq!(
            v1.candidates(root),
            Some(vec![
                PathBuf::from(format!("/sys/fs/cgroup/cpu,cpuacct/docker/{ID}")),
                PathBuf::from(format!("/sys/fs/cgroup/cpu/docker/{ID}")),
            ])
        );
        let v2 = CpuCgroupDir {
            hierarchy: String::new(),
            path: format!("/system.slice/docker-{ID}.scope"),
        };
        assert_eq!(
            v2.candidates(root),
            Some(vec![PathBuf::from(format!(
                "/sys/fs/cgroup/system.slice/docker-{ID}.scope"
            ))])
        );
        let climbing = CpuCgroupDir {
            hierarchy: String::new(),
            path: format!("/../../docker/{ID}"),
        };
        assert_eq!(climbing.candidates(root), None);
    }

    proptest! {
        #[test]
        fn never_panics_on_random_text(text in "\\PC*") {
            let _ = parse_cgroup(&text);
        }

        #[test]
        fn never_panics_on_cgroup_shaped_text(
            lines in proptest::collection::vec(
                ("[0-9]{1,2}", "(cpu|cpuset|cpu,cpuacct|name=systemd|)", "[/a-z0-9_.:-]{0,120}"),
                0..6,
            )
        ) {
            let text: String = lines.iter().map(|(h, c, p)| format!("{h}:{c}:{p}\n")).collect();
            let got = parse_cgroup(&text);
            if let Some(dir) = &got.cpu_dir {
                prop_assert!(got.container_id.is_some());
                prop_assert!(text.contains(&dir.path));
            }
        }

        #[test]
        fn any_hex_id_in_a_docker_scope_is_found(id in "[0-9a-fA-F]{64}", prefix in "[a-z/.]{0,30}") {
            let text = format!("0::/{prefix}/docker-{id}.scope\n");
            prop_assert_eq!(parse_cgroup(&text).container_id, Some(id.to_ascii_lowercase()));
        }
    }
}
