//! Real containers (runc) as kubelet lays them out: the harness's own check that they run
//! where the label and container tests expect them.

use gala_e2e::containers::{kubepods_systemd, pod_uid, runc_available, RuncContainer, RuncSpec};
use gala_e2e::require;

#[test]
fn runc_containers_run_in_kubepods_cgroups_of_both_drivers() {
    require!(runc_available());
    let uid = pod_uid();
    let cgroupfs = RuncSpec::new(&uid, &["sleep", "60"]);
    let mut systemd = RuncSpec::new(&uid, &["sleep", "60"]);
    systemd.cgroups_path = kubepods_systemd(&uid, &systemd.id);
    for spec in [cgroupfs, systemd] {
        let c = RuncContainer::start(&spec);
        let cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", c.pid)).unwrap();
        assert!(cgroup.contains(&spec.cgroups_path), "{cgroup}");
        let out = c.exec(&["cat", "/proc/self/comm"]);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "cat");
        assert!(c.running());
    }
}
