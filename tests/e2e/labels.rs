//! Process, container and pod labels, and the labels an operator chooses, on real series:
//! baseinfo's per-process table for processes in runc containers laid out as kubelet's two
//! cgroup drivers place them, and for a process on the host, in Prometheus and in the JSON
//! metric log.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gala_e2e::containers::{kubepods_systemd, pod_uid, runc_available, RuncContainer, RuncSpec};
use gala_e2e::{require, KillOnDrop, Samples, Sandbox};

/// The PUT that scopes baseinfo's `proc` sub-item to `pids` with every kind of chosen label.
fn put_body(pids: &[u32]) -> String {
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    format!(
        r#"{{"cmd":{{"probe":["proc"]}},"snoopers":{{"proc_id":[{}],"proc_name":[{{"comm":"^sleep$","cmdline":"4242","label":{{"role":"worker"}}}}],"custom_labels":{{"team":"sre","tgid":"clash"}},"pod_labels":["tier"]}},"params":{{"report_period":5}},"state":"running"}}"#,
        pids.join(",")
    )
}

/// Two containers of one pod (cgroupfs and systemd drivers) and a host process, all
/// `sleep 4242`.
struct Workload {
    pod: String,
    containers: Vec<RuncContainer>,
    host: KillOnDrop,
}

impl Workload {
    fn start() -> Self {
        let pod = pod_uid();
        let cgroupfs = RuncSpec::new(&pod, &["sleep", "4242"]);
        let mut systemd = RuncSpec::new(&pod, &["sleep", "4242"]);
        systemd.cgroups_path = kubepods_systemd(&pod, &systemd.id);
        let containers = vec![
            RuncContainer::start(&cgroupfs),
            RuncContainer::start(&systemd),
        ];
        let host = std::process::Command::new("sleep")
            .arg("4242")
            .spawn()
            .expect("sleep");
        Workload {
            pod,
            containers,
            host: KillOnDrop(host),
        }
    }

    fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.containers.iter().map(|c| c.pid).collect();
        pids.push(self.host.0.id());
        pids
    }
}

#[test]
fn a_containers_process_series_carry_process_container_pod_and_chosen_labels() {
    require!(runc_available());
    let w = Workload::start();
    let sb = Sandbox::with_baseinfo();
    let d = sb.start();
    let (status, text) = d.put("baseinfo", &put_body(&w.pids()));
    assert_eq!(status, 200, "{text}");
    let s = d.wait_for(
        Duration::from_secs(40),
        "system_proc of the three processes",
        |s: &Samples| {
            w.pids().iter().all(|pid| {
                !s.find("gala_gopher_proc_fd_count", &[("tgid", &pid.to_string())])
                    .is_empty()
            })
        },
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for c in &w.containers {
        let tgid = c.pid.to_string();
        let series = s.find("gala_gopher_proc_fd_count", &[("tgid", &tgid)]);
        let l = &series[0].labels;
        assert_eq!(l["comm"], "sleep", "{l:?}");
        assert_eq!(l["cmdline"], "sleep 4242");
        let started: u64 = l["start_time"].parse().expect("start_time is a number");
        assert!(
            started <= now && started + 120 > now,
            "start_time {started}, now {now}"
        );
        assert_eq!(l["container_id"], c.id[..12], "{l:?}");
        assert_eq!(l["pod_id"], w.pod);
        assert_eq!(l["role"], "worker", "the proc_name entry's label");
        assert_eq!(l["team"], "sre", "custom_labels");
        assert_eq!(l["tier"], "not found", "a pod label the pod lacks");
        assert_eq!(l["tgid"], tgid, "a custom label never replaces a field");
        // No runtime knows these runc containers: no names, no empty labels.
        for absent in ["container_name", "container_image", "pod", "pod_namespace"] {
            assert!(!l.contains_key(absent), "{absent} in {l:?}");
        }
        // Every metric of the series carries them.
        let rss = s.find("gala_gopher_proc_fd_free_per", &[("tgid", &tgid)]);
        assert_eq!(rss[0].labels, *l);
    }
    let host = s.find(
        "gala_gopher_proc_fd_count",
        &[("tgid", &w.host.0.id().to_string())],
    );
    let l = &host[0].labels;
    assert_eq!(
        (l["comm"].as_str(), l["role"].as_str()),
        ("sleep", "worker")
    );
    assert_eq!(l["team"], "sre");
    for absent in ["container_id", "pod_id", "tier"] {
        assert!(
            !l.contains_key(absent),
            "a host process has no {absent}: {l:?}"
        );
    }

    // Labels chosen again replace the earlier ones.
    let body = put_body(&w.pids()).replace(r#""team":"sre""#, r#""team":"db""#);
    assert_eq!(d.put("baseinfo", &body).0, 200);
    let tgid = w.containers[0].pid.to_string();
    d.wait_for(
        Duration::from_secs(10),
        "the new custom label",
        |s: &Samples| {
            s.value(
                "gala_gopher_proc_fd_count",
                &[("tgid", &tgid), ("team", "db")],
            )
            .is_some()
        },
    );
}

#[test]
fn json_metric_lines_carry_the_same_labels() {
    require!(runc_available());
    let w = Workload::start();
    let sb = Sandbox::with_baseinfo();
    let conf = sb.path().join("gala-gopher.conf");
    let text = std::fs::read_to_string(&conf).expect("config");
    let text = text.replace("out_channel = \"web_server\"", "out_channel = \"json\"");
    std::fs::write(&conf, text).expect("config");
    let d = sb.start_when(|_| true);
    let file = sb.path().join("log/metrics/gopher_metrics_0");
    // The REST server may take a moment to listen.
    gala_e2e::poll_until(Duration::from_secs(10), 100, || {
        match d.put("baseinfo", &put_body(&w.pids())) {
            (200, _) => Ok(()),
            (status, text) => Err(format!("PUT: {status} {text}")),
        }
    });
    let c = &w.containers[1];
    let tgid = c.pid.to_string();
    let line = gala_e2e::poll_until(Duration::from_secs(40), 200, || {
        let content = std::fs::read_to_string(&file).unwrap_or_default();
        content
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| {
                v["table_name"] == "system_proc" && v["labels"]["tgid"].as_str() == Some(&*tgid)
            })
            .ok_or_else(|| format!("no system_proc line of {} in {content:?}", c.pid))
    });
    let labels = &line["labels"];
    assert_eq!(labels["comm"], "sleep", "{line}");
    assert_eq!(labels["container_id"], c.id[..12]);
    assert_eq!(labels["pod_id"], w.pod);
    assert_eq!(labels["team"], "sre");
    assert_eq!(labels["role"], "worker");
    assert!(labels["machine_id"].is_string());
}
