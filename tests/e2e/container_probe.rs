//! The `container` probe (`containerprobe`, probes/container) under the real daemon against
//! real runc containers in kubepods cgroups: CPU under a busy loop (cgroup v1 controllers of
//! this hybrid machine, and the unified v2 hierarchy with `GOPHER_CONTAINER_CGROUP=unified`),
//! memory a container wrote to its tmpfs, network bytes over a veth into its namespace, an OOM
//! kill under a memory limit, and a `container_id` snooper that selects exactly one container.

use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

use gala_e2e::containers::{pod_uid, runc_available, RuncContainer, RuncSpec};
use gala_e2e::{repo_root, require, workspace_bin, Daemon, Samples, Sandbox, IMDB_DEFAULT};

/// The probe's period: the smallest `report_period` the API takes.
const PERIOD_S: u64 = 5;

/// A sandbox with `containerprobe` and its meta file installed, and a running daemon whose
/// probes get `env`.
fn daemon(env: &[(&str, &str)]) -> (Sandbox, Daemon) {
    let sb = Sandbox::new();
    std::fs::copy(
        workspace_bin("containerprobe"),
        sb.path().join("probes/containerprobe"),
    )
    .expect("install containerprobe");
    let meta = std::fs::read_to_string(repo_root().join("probes/container/container.meta"))
        .expect("container.meta");
    sb.write_meta("container.meta", &meta);
    sb.write_config(
        IMDB_DEFAULT,
        "supervisor = { stop_grace = 2; snooper_period = 1; };",
    );
    let d = sb.start_with_env(env);
    (sb, d)
}

/// Starts the probe on the container `id` (a `container_id` snooper with its 12-hex form).
fn watch(d: &Daemon, id: &str) {
    let (status, text) = d.put(
        "container",
        &format!(
            r#"{{"snoopers":{{"container_id":["{}"]}},"params":{{"report_period":{PERIOD_S}}},"state":"running"}}"#,
            &id[..12]
        ),
    );
    assert_eq!(status, 200, "{text}");
}

/// `gala_gopher_container_<field>` of the container `id` in `s`.
fn value(s: &Samples, field: &str, id: &str) -> Option<f64> {
    s.value(
        &format!("gala_gopher_container_{field}"),
        &[("container_id", &id[..12])],
    )
    .map(|v| v.parse().unwrap_or_else(|_| panic!("{field} = {v:?}")))
}

/// Waits until `field` of container `id` satisfies `pred`; its value then.
fn wait_value(d: &Daemon, field: &str, id: &str, what: &str, pred: impl Fn(f64) -> bool) -> f64 {
    let s = d.wait_for(Duration::from_secs(60), what, |s| {
        value(s, field, id).is_some_and(&pred)
    });
    value(&s, field, id).expect("present")
}

/// Runs `ip` with `args` on the host, panicking with its output on failure.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A veth pair from the host into a container's network namespace; deleted when dropped (the
/// peer goes with it).
struct Veth {
    host: String,
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host])
            .status();
    }
}

/// CPU seconds per second of container `id` over at least three periods, from the probe.
fn cpu_rate(d: &Daemon, id: &str) -> f64 {
    let first = wait_value(d, "cpu_usage_seconds_total", id, "first CPU sample", |_| {
        true
    });
    let t0 = Instant::now();
    let later = wait_value(
        d,
        "cpu_usage_seconds_total",
        id,
        "a later CPU sample",
        |v| v > first && t0.elapsed() >= Duration::from_secs(3 * PERIOD_S),
    );
    // Values change once a period: the interval between the two samples is within one period
    // of the time waited.
    let elapsed = t0.elapsed().as_secs_f64() + PERIOD_S as f64;
    (later - first) / elapsed
}

fn busy_container_cpu_rate(env: &[(&str, &str)]) -> f64 {
    // Alone: the busy loop's share of a core is what is checked.
    let _alone = gala_e2e::gate::exclusive();
    let (_sb, d) = daemon(env);
    let c = RuncContainer::start(&RuncSpec::new(
        &pod_uid(),
        &["sh", "-c", "while :; do :; done"],
    ));
    watch(&d, &c.id);
    let rate = cpu_rate(&d, &c.id);
    let s = Samples::parse(&d.scrape());
    let user = value(&s, "cpu_user_seconds_total", &c.id).expect("user seconds");
    let system = value(&s, "cpu_system_seconds_total", &c.id).expect("system seconds");
    let usage = value(&s, "cpu_usage_seconds_total", &c.id).expect("usage seconds");
    // user + system tick at USER_HZ and may lag the precise total by a few ticks.
    assert!(
        (user + system - usage).abs() <= 0.1 * usage + 0.1,
        "user {user} + system {system} vs usage {usage}"
    );
    rate
}

#[test]
fn cpu_rises_under_a_busy_loop_cgroup_v1() {
    require!(runc_available());
    let rate = busy_container_cpu_rate(&[]);
    assert!(rate >= 0.3, "{rate} CPU-seconds per second");
}

#[test]
fn cpu_rises_under_a_busy_loop_cgroup_v2_unified_hierarchy() {
    require!(runc_available());
    let rate = busy_container_cpu_rate(&[("GOPHER_CONTAINER_CGROUP", "unified")]);
    assert!(rate >= 0.3, "{rate} CPU-seconds per second");
}

#[test]
fn memory_usage_covers_what_the_container_wrote_to_its_tmpfs() {
    require!(runc_available());
    let (_sb, d) = daemon(&[]);
    let c = RuncContainer::start(&RuncSpec::new(&pod_uid(), &["sleep", "600"]));
    watch(&d, &c.id);
    let before = wait_value(&d, "memory_usage_bytes", &c.id, "memory usage", |_| true);
    assert!(before < 32.0 * 1024.0 * 1024.0, "{before} before writing");
    let out = c.exec(&["dd", "if=/dev/zero", "of=/dev/shm/f", "bs=1M", "count=32"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = wait_value(&d, "memory_usage_bytes", &c.id, "32 MiB more", |v| {
        v >= 32.0 * 1024.0 * 1024.0
    });
    let s = Samples::parse(&d.scrape());
    let working_set = value(&s, "memory_working_set_bytes", &c.id).expect("working set");
    // tmpfs pages are shmem, never inactive file pages: all of them are in the working set.
    assert!(working_set >= 32.0 * 1024.0 * 1024.0, "{working_set}");
    assert!(working_set <= after, "{working_set} > {after}");
    let cache = value(&s, "memory_cache", &c.id).expect("cache");
    assert!(
        cache >= 32.0 * 1024.0 * 1024.0,
        "shmem is page cache: {cache}"
    );
}

#[test]
fn network_bytes_rise_after_traffic_over_a_veth() {
    require!(runc_available());
    let (_sb, d) = daemon(&[]);
    let c = RuncContainer::start(&RuncSpec::new(&pod_uid(), &["sleep", "600"]));
    watch(&d, &c.id);
    // Only loopback so far: it is not counted.
    let rx0 = wait_value(&d, "network_receive_bytes_total", &c.id, "network", |_| {
        true
    });
    assert_eq!(rx0, 0.0);

    let tag = &c.id[..6];
    let veth = Veth {
        host: format!("gch{tag}"),
    };
    let peer = format!("gcc{tag}");
    let net = u8::from_str_radix(&c.id[6..8], 16).expect("hex");
    let (host_ip, ctr_ip) = (format!("10.253.{net}.1"), format!("10.253.{net}.2"));
    ip(&[
        "link", "add", &veth.host, "type", "veth", "peer", "name", &peer,
    ]);
    ip(&["link", "set", &peer, "netns", &c.pid.to_string()]);
    ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &veth.host]);
    ip(&["link", "set", &veth.host, "up"]);
    // The container's side, set up from inside it (runc's default exec lacks CAP_NET_ADMIN).
    for args in [
        vec!["ip", "addr", "add", &*format!("{ctr_ip}/30"), "dev", &*peer],
        vec!["ip", "link", "set", &*peer, "up"],
    ] {
        let out = Command::new("runc")
            .args(["exec", "--cap", "CAP_NET_ADMIN", &c.id])
            .args(&args)
            .output()
            .expect("runc exec");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // 200 datagrams of 1000 bytes into the container (to a closed port: they are received,
    // counted, and answered with ICMP port unreachable).
    let socket = UdpSocket::bind((host_ip.as_str(), 0)).expect("bind");
    let payload = [0x5au8; 1000];
    for _ in 0..200 {
        // The first may wait for ARP; a refused one (an ICMP error of an earlier one) is fine.
        let _ = socket.send_to(&payload, (ctr_ip.as_str(), 9));
        std::thread::sleep(Duration::from_millis(2));
    }
    let rx = wait_value(
        &d,
        "network_receive_bytes_total",
        &c.id,
        "200 kB received",
        |v| v >= 200_000.0,
    );
    let s = Samples::parse(&d.scrape());
    let tx = value(&s, "network_transmit_bytes_total", &c.id).expect("tx");
    assert!(tx > 0.0, "ARP and ICMP answers are transmitted: {tx}");
    assert!(rx < 400_000.0, "only the test's traffic: {rx}");
    for field in [
        "network_receive_errors_total",
        "network_transmit_errors_total",
    ] {
        assert_eq!(value(&s, field, &c.id), Some(0.0), "{field}");
    }
}

#[test]
fn an_oom_kill_in_a_memory_limited_container_is_counted() {
    require!(runc_available());
    let (_sb, d) = daemon(&[]);
    let mut spec = RuncSpec::new(&pod_uid(), &["sleep", "600"]);
    spec.memory_limit = Some(16 << 20);
    let c = RuncContainer::start(&spec);
    watch(&d, &c.id);
    let before = wait_value(&d, "oom_events_total", &c.id, "OOM count", |_| true);
    assert_eq!(before, 0.0);
    // dd's 64 MiB buffer is anonymous memory: over the 16 MiB limit, the OOM killer takes dd.
    let out = c.exec(&["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]);
    assert!(!out.status.success(), "dd was not killed");
    assert!(c.running(), "the container's own process survives");
    wait_value(&d, "oom_events_total", &c.id, "one OOM kill", |v| v >= 1.0);
}

#[test]
fn a_container_id_snooper_selects_exactly_that_container() {
    require!(runc_available());
    let (_sb, d) = daemon(&[]);
    let uid = pod_uid();
    let watched = RuncContainer::start(&RuncSpec::new(&uid, &["sleep", "600"]));
    let other = RuncContainer::start(&RuncSpec::new(&uid, &["sleep", "600"]));
    watch(&d, &watched.id);
    // Two reports of the watched container, every table present.
    let first = wait_value(&d, "start_time_seconds", &watched.id, "start time", |_| {
        true
    });
    let t0 = Instant::now();
    let s = d.wait_for(Duration::from_secs(30), "a second report", |s| {
        t0.elapsed() > Duration::from_secs(PERIOD_S + 1)
            && value(s, "file_descriptors", &watched.id).is_some()
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!(
        first <= now && now - first < 120.0,
        "start {first}, now {now}"
    );
    assert_eq!(value(&s, "start_time_seconds", &watched.id), Some(first));
    for field in [
        "cpu_usage_seconds_total",
        "memory_usage_bytes",
        "fs_inodes_total",
        "fs_writes_bytes_total",
        "network_receive_bytes_total",
        "oom_events_total",
        "file_descriptors",
    ] {
        assert!(value(&s, field, &watched.id).is_some(), "{field} missing");
    }
    assert!(value(&s, "file_descriptors", &watched.id).is_some_and(|n| n >= 1.0));
    // Nothing at all of the other container, nor of any other one.
    let ids: std::collections::BTreeSet<&str> =
        s.0.iter()
            .filter(|x| x.name.starts_with("gala_gopher_container_"))
            .filter_map(|x| x.labels.get("container_id").map(String::as_str))
            .collect();
    assert_eq!(ids.into_iter().collect::<Vec<_>>(), [&watched.id[..12]]);
    assert!(other.running());
}

/// The `container_id` labels of every `gala_gopher_container_*` sample.
fn reported(s: &Samples) -> std::collections::BTreeSet<String> {
    s.0.iter()
        .filter(|x| x.name.starts_with("gala_gopher_container_"))
        .filter_map(|x| x.labels.get("container_id").cloned())
        .collect()
}

#[test]
fn a_proc_id_snooper_reports_its_container_and_a_blacklist_all_but_the_listed() {
    require!(runc_available());
    let (_sb, d) = daemon(&[]);
    let uid = pod_uid();
    let [a, b, c] = [(); 3].map(|_| RuncContainer::start(&RuncSpec::new(&uid, &["sleep", "600"])));
    // As in the original: the container of a snooped process, and no other.
    let (status, text) = d.put(
        "container",
        &format!(
            r#"{{"snoopers":{{"proc_id":[{}]}},"params":{{"report_period":{PERIOD_S}}},"state":"running"}}"#,
            b.pid
        ),
    );
    assert_eq!(status, 200, "{text}");
    let s = d.wait_for(Duration::from_secs(30), "container b", |s| {
        value(s, "memory_usage_bytes", &b.id).is_some()
    });
    let seen = reported(&s);
    assert!(
        !seen.contains(&a.id[..12]) && !seen.contains(&c.id[..12]),
        "{seen:?}"
    );
    // Every container but c: a appears (other tests' containers may come and go meanwhile).
    let (status, text) = d.put(
        "container",
        &format!(r#"{{"blacklist":{{"container_id":["{}"]}}}}"#, &c.id[..12]),
    );
    assert_eq!(status, 200, "{text}");
    let t0 = Instant::now();
    let s = d.wait_for(Duration::from_secs(30), "a, in blacklist mode", |s| {
        value(s, "memory_usage_bytes", &a.id).is_some()
    });
    assert!(!reported(&s).contains(&c.id[..12]), "{:?}", reported(&s));
    // A second report still leaves c out.
    let s = d.wait_for(Duration::from_secs(30), "a later report", |_| {
        t0.elapsed() > Duration::from_secs(PERIOD_S + 1)
    });
    assert!(!reported(&s).contains(&c.id[..12]), "{:?}", reported(&s));
}
