//! Container metadata and container snoopers against real runtimes: a containerd and a Docker
//! Engine of the test's own (see `gala_e2e::runtimes`), asked through their API sockets by the
//! daemon's [`RuntimeDirectory`], and the snoopers `container_id`, `pod_id` and
//! `container_name` resolved by the daemon for a probe (the echo probe reports the pids it is
//! told, as in control_channel.rs).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use gala_e2e::containers::{container_id, kubepods_cgroupfs, pod_uid};
use gala_e2e::require;
use gala_e2e::runtimes::{
    containerd_available, dockerd_available, pids_in_container, Containerd, Dockerd,
};
use gala_e2e::{Daemon, Samples, Sandbox};
use gala_gopher::containers::{
    ContainerLookup, ContainerMeta, RuntimeDirectory, RuntimeName, RuntimeSockets,
};
use gala_gopher::snooper::{RuntimeCli, RuntimeKind};

/// A directory asking only `socket` as `runtime`, without CLI fallback: whatever it finds
/// came through that API socket.
fn directory_on(runtime: RuntimeName, socket: &Path) -> RuntimeDirectory {
    let mut sockets = RuntimeSockets::none();
    match runtime {
        RuntimeName::Containerd => sockets.containerd = vec![socket.to_path_buf()],
        RuntimeName::Docker => sockets.docker = vec![socket.to_path_buf()],
        other => panic!("no test runtime {other}"),
    }
    RuntimeDirectory::new(sockets, Duration::from_secs(1)).with_clis(Vec::new())
}

/// What `directory` says of `id` (through its cache).
fn m_again(directory: &RuntimeDirectory, id: &str) -> ContainerMeta {
    directory.lookup(id).expect("known")
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A daemon whose built-in `tcp` is the echo probe, re-resolving snoopers every second, with
/// `runtimes` as its `container_runtimes` section.
fn echo_daemon(runtimes: &str) -> (Sandbox, Daemon) {
    let sb = Sandbox::with_echo_probe(&format!("container_runtimes = {{ {runtimes} }};"));
    let d = sb.start();
    (sb, d)
}

/// Waits until the echo probe reports exactly `pids` (sorted), within `within`.
fn told_pids(d: &Daemon, within: Duration, what: &str, pids: &[u32]) {
    let want = if pids.is_empty() {
        "none".to_string()
    } else {
        pids.iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    d.wait_for(within, what, |s: &Samples| {
        s.find("gala_gopher_ipc_echo_seq", &[("probe", "tcp")])
            .first()
            .is_some_and(|x| x.labels["pids"] == want)
    });
}

fn put_snoopers(d: &Daemon, snoopers: &str) {
    let body = format!(
        r#"{{"cmd": {{"probe": ["tcp_abnormal"]}}, "snoopers": {snoopers}, "state": "running"}}"#
    );
    let (status, text) = d.put("tcp", &body);
    assert_eq!(status, 200, "{text}");
}

#[test]
fn containerd_api_gives_container_pod_and_sandbox_labels() {
    require!(containerd_available());
    let ctd = Containerd::start();
    let uid = pod_uid();
    let (sandbox, app, plain) = (container_id(), container_id(), container_id());
    let pod = [
        ("io.kubernetes.pod.name", "web-1"),
        ("io.kubernetes.pod.namespace", "prod"),
        ("io.kubernetes.pod.uid", uid.as_str()),
    ];
    // The pod's own labels are on its sandbox, as the CRI plugin keeps them.
    let mut sandbox_labels = pod.to_vec();
    sandbox_labels.extend([("app", "web"), ("io.cri-containerd.kind", "sandbox")]);
    let mut app_labels = pod.to_vec();
    app_labels.extend([
        ("io.kubernetes.container.name", "app"),
        ("io.cri-containerd.kind", "container"),
        ("io.kubernetes.cri.sandbox-id", sandbox.as_str()),
    ]);
    ctd.run(
        "k8s.io",
        &sandbox,
        &sandbox_labels,
        &kubepods_cgroupfs(&uid, &sandbox),
        &["/bin/sleep", "60"],
    );
    ctd.run(
        "k8s.io",
        &app,
        &app_labels,
        &kubepods_cgroupfs(&uid, &app),
        &["/bin/sleep", "60"],
    );
    ctd.run(
        "default",
        &plain,
        &[("tier", "batch")],
        &format!("/gala-e2e-runtimes/{plain}"),
        &["/bin/sleep", "60"],
    );

    let directory = directory_on(RuntimeName::Containerd, &ctd.socket);
    let found = directory
        .find(&app)
        .expect("containerd knows the app container");
    assert_eq!(found.runtime, RuntimeName::Containerd);
    let mut want_labels = labels(&app_labels);
    want_labels.insert("app".into(), "web".into());
    assert_eq!(
        found.meta,
        ContainerMeta {
            name: Some("app".into()),
            // `ctr run --rootfs` records no image (one run from an image does: below).
            image: None,
            pod_name: Some("web-1".into()),
            pod_namespace: Some("prod".into()),
            pod_uid: Some(uid.clone()),
            labels: want_labels,
        }
    );
    // The `default` namespace is searched too; without Kubernetes labels the name is the id.
    let plain_meta = directory
        .lookup(&plain)
        .expect("found in the default namespace");
    assert_eq!(plain_meta.name.as_deref(), Some(plain.as_str()));
    assert_eq!(plain_meta.pod_name, None);
    assert_eq!(plain_meta.labels, labels(&[("tier", "batch")]));
    // An id containerd does not know.
    assert_eq!(directory.lookup(&container_id()), None);

    // A container run from an image records it.
    let image = "docker.io/library/busybox:e2e";
    ctd.import_busybox_image("k8s.io", image);
    let from_image = container_id();
    ctd.run_from(
        "k8s.io",
        Some(image),
        &from_image,
        &pod,
        &kubepods_cgroupfs(&uid, &from_image),
        &["/bin/sleep", "60"],
    );
    let m = directory
        .lookup(&from_image)
        .expect("container from an image");
    assert_eq!(m.image.as_deref(), Some(image));
    assert_eq!(m.name.as_deref(), Some(from_image.as_str()));
    assert_eq!(m.pod_uid.as_deref(), Some(uid.as_str()));
}

#[test]
fn without_runtimes_lookups_are_none_and_quick() {
    let dir = tempfile::tempdir().unwrap();
    // A socket file nobody listens on (a runtime that died) and paths with no socket at all.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let sockets = RuntimeSockets {
        containerd: vec![dir.path().join("containerd.sock"), stale.clone()],
        docker: vec![stale],
        crio: vec![dir.path().join("crio.sock")],
        isulad: vec![dir.path().join("isulad.sock")],
    };
    let directory = RuntimeDirectory::new(sockets, Duration::from_secs(1)).with_clis(Vec::new());
    let t = Instant::now();
    for _ in 0..20 {
        assert_eq!(directory.find(&container_id()), None);
    }
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn container_snoopers_follow_a_containerd_container_and_its_pod() {
    require!(containerd_available());
    let ctd = Containerd::start();
    let uid = pod_uid();
    let (app, other) = (container_id(), container_id());
    let app_labels = [
        ("io.kubernetes.pod.name", "web-1"),
        ("io.kubernetes.pod.namespace", "prod"),
        ("io.kubernetes.pod.uid", uid.as_str()),
        ("io.kubernetes.container.name", "app-server"),
    ];
    ctd.run(
        "k8s.io",
        &app,
        &app_labels,
        &kubepods_cgroupfs(&uid, &app),
        &["/bin/sleep", "300"],
    );
    // Another pod's container: never selected.
    let other_uid = pod_uid();
    ctd.run(
        "k8s.io",
        &other,
        &[
            ("io.kubernetes.container.name", "sidecar"),
            ("io.kubernetes.pod.uid", other_uid.as_str()),
        ],
        &kubepods_cgroupfs(&other_uid, &other),
        &["/bin/sleep", "300"],
    );
    let (_sb, d) = echo_daemon(&format!(
        r#"containerd = "{}"; docker = ""; crio = ""; isulad = ""; cli = false;"#,
        ctd.socket.display()
    ));
    let first = pids_in_container(&app);
    assert_eq!(first.len(), 1, "{first:?}");

    // container_id: a prefix of the id selects exactly that container's processes.
    put_snoopers(&d, &format!(r#"{{"container_id": ["{}"]}}"#, &app[..12]));
    told_pids(&d, Duration::from_secs(10), "container_id snooper", &first);

    // A process entering the container reaches the probe within one period (1 s), and its
    // end as well; the slack covers the probe's output reaching /metrics.
    ctd.exec("k8s.io", &app, "extra", &["/bin/sleep", "4545"]);
    let t = Instant::now();
    let both = gala_e2e::poll_until(Duration::from_secs(5), 20, || {
        let p = pids_in_container(&app);
        if p.len() == 2 {
            Ok(p)
        } else {
            Err(format!("exec'd process not in {p:?}"))
        }
    });
    told_pids(
        &d,
        Duration::from_secs(3),
        "process entering the container",
        &both,
    );
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "took {:?}",
        t.elapsed()
    );
    let extra = *both.iter().find(|p| !first.contains(p)).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(extra as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let t = Instant::now();
    told_pids(
        &d,
        Duration::from_secs(3),
        "process leaving the container",
        &first,
    );
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "took {:?}",
        t.elapsed()
    );

    // pod_id, in either form: the pod's containers' processes.
    put_snoopers(
        &d,
        &format!(r#"{{"pod_id": ["{}"]}}"#, uid.replace('-', "")),
    );
    told_pids(&d, Duration::from_secs(3), "pod_id snooper", &first);

    // container_name: the Kubernetes name containerd's API gives, matched by substring.
    put_snoopers(&d, r#"{"container_name": ["server"]}"#);
    told_pids(&d, Duration::from_secs(3), "container_name snooper", &first);
    put_snoopers(&d, r#"{"container_name": ["sidecar"]}"#);
    told_pids(
        &d,
        Duration::from_secs(3),
        "the other container by name",
        &pids_in_container(&other),
    );
    put_snoopers(&d, r#"{"container_name": ["no-such-container"]}"#);
    told_pids(&d, Duration::from_secs(3), "an unknown name", &[]);
}

#[test]
fn docker_api_and_cli_give_names_images_sandbox_labels_and_name_snoopers() {
    require!(dockerd_available());
    let docker = Dockerd::start();
    let uid = pod_uid();
    let suffix = &container_id()[..8];
    let pause = docker.run(
        &format!("k8s_POD_web-1_{suffix}"),
        &[
            ("io.kubernetes.pod.name", "web-1"),
            ("io.kubernetes.pod.uid", &uid),
            ("app", "web"),
        ],
        &["sleep", "300"],
    );
    let app_name = format!("k8s_app_web-1_{suffix}");
    let app = docker.run(
        &app_name,
        &[
            ("io.kubernetes.pod.name", "web-1"),
            ("io.kubernetes.pod.namespace", "prod"),
            ("io.kubernetes.pod.uid", &uid),
            ("io.kubernetes.container.name", "app"),
            ("io.kubernetes.sandbox.id", &pause),
        ],
        &["sleep", "300"],
    );
    let plain_name = format!("plain-{suffix}");
    let plain = docker.run(&plain_name, &[], &["sleep", "300"]);

    let directory = directory_on(RuntimeName::Docker, &docker.socket);
    let found = directory
        .find(&app)
        .expect("docker knows the app container");
    assert_eq!(found.runtime, RuntimeName::Docker);
    let m = found.meta;
    assert_eq!(m.name.as_deref(), Some("app"));
    assert_eq!(m.image.as_deref(), Some("busybox:local"));
    assert_eq!(m.pod_name.as_deref(), Some("web-1"));
    assert_eq!(m.pod_namespace.as_deref(), Some("prod"));
    assert_eq!(m.pod_uid.as_deref(), Some(uid.as_str()));
    assert_eq!(
        m.labels.get("app").map(String::as_str),
        Some("web"),
        "sandbox labels merged"
    );
    let p = directory
        .lookup(&plain)
        .expect("docker knows the plain container");
    assert_eq!(p.name.as_deref(), Some(plain_name.as_str()));
    assert_eq!(p.image.as_deref(), Some("busybox:local"));
    assert!(p.labels.is_empty() && p.pod_name.is_none());
    assert_eq!(directory.lookup(&container_id()), None);

    // The CLI fallback: `docker inspect` (pointed at this engine by a wrapper, as DOCKER_HOST
    // would) when no socket is configured.
    let wrapper = docker.path().join("docker-cli");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec docker -H unix://{} \"$@\"\n",
            docker.socket.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let cli =
        RuntimeDirectory::new(RuntimeSockets::none(), Duration::from_secs(5)).with_clis(vec![
            RuntimeCli {
                kind: RuntimeKind::Docker,
                program: wrapper,
            },
        ]);
    let by_cli = cli
        .find(&app)
        .expect("docker inspect knows the app container");
    assert_eq!(by_cli.runtime, RuntimeName::Cli);
    assert_eq!(by_cli.meta, m_again(&directory, &app));
    assert_eq!(cli.lookup(&container_id()), None);

    // The daemon names Docker's containers through its socket for container_name.
    let (_sb, d) = echo_daemon(&format!(
        r#"containerd = ""; docker = "{}"; crio = ""; isulad = ""; cli = false;"#,
        docker.socket.display()
    ));
    put_snoopers(&d, &format!(r#"{{"container_name": ["plain-{suffix}"]}}"#));
    told_pids(
        &d,
        Duration::from_secs(10),
        "docker container by name",
        &pids_in_container(&plain),
    );
    put_snoopers(&d, &format!(r#"{{"container_id": ["{}"]}}"#, &app[..16]));
    told_pids(
        &d,
        Duration::from_secs(3),
        "docker container by id",
        &pids_in_container(&app),
    );
}

#[test]
fn series_of_a_containerd_containers_process_carry_its_runtime_labels() {
    require!(containerd_available());
    let ctd = Containerd::start();
    let image = "docker.io/library/busybox:e2e";
    ctd.import_busybox_image("k8s.io", image);
    let uid = pod_uid();
    let (sandbox, app) = (container_id(), container_id());
    let pod = [
        ("io.kubernetes.pod.name", "web-1"),
        ("io.kubernetes.pod.namespace", "prod"),
        ("io.kubernetes.pod.uid", uid.as_str()),
    ];
    let mut sandbox_labels = pod.to_vec();
    sandbox_labels.push(("tier", "frontend"));
    let mut app_labels = pod.to_vec();
    app_labels.extend([
        ("io.kubernetes.container.name", "app"),
        ("io.kubernetes.cri.sandbox-id", sandbox.as_str()),
    ]);
    ctd.run_from(
        "k8s.io",
        Some(image),
        &sandbox,
        &sandbox_labels,
        &kubepods_cgroupfs(&uid, &sandbox),
        &["/bin/sleep", "300"],
    );
    let pid = ctd.run_from(
        "k8s.io",
        Some(image),
        &app,
        &app_labels,
        &kubepods_cgroupfs(&uid, &app),
        &["/bin/sleep", "300"],
    );

    let sb = Sandbox::with_baseinfo();
    sb.write_config(
        gala_e2e::IMDB_DEFAULT,
        &format!(
            "supervisor = {{ stop_grace = 2; snooper_period = 1; }};\ncontainer_runtimes = {{ containerd = \"{}\"; docker = \"\"; crio = \"\"; isulad = \"\"; cli = false; }};",
            ctd.socket.display()
        ),
    );
    let d = sb.start();
    let body = format!(
        r#"{{"cmd":{{"probe":["proc"]}},"snoopers":{{"proc_id":[{pid}],"pod_labels":["tier"]}},"params":{{"report_period":5}},"state":"running"}}"#
    );
    let (status, text) = d.put("baseinfo", &body);
    assert_eq!(status, 200, "{text}");
    let tgid = pid.to_string();
    // The first series may go out before containerd has answered (a series never waits).
    let s = d.wait_for(
        Duration::from_secs(40),
        "the container's process series with its runtime labels",
        |s: &Samples| {
            s.find("gala_gopher_proc_fd_count", &[("tgid", &tgid)])
                .first()
                .is_some_and(|x| x.labels.contains_key("container_name"))
        },
    );
    let series = s.find("gala_gopher_proc_fd_count", &[("tgid", &tgid)]);
    let l = &series[0].labels;
    assert_eq!(l["container_id"], app[..12], "{l:?}");
    assert_eq!(l["container_name"], "app", "{l:?}");
    assert_eq!(l["container_image"], image, "{l:?}");
    assert_eq!(l["pod_id"], uid, "{l:?}");
    assert_eq!(
        l["pod"], "prod/web-1",
        "namespace/name, as the original: {l:?}"
    );
    assert_eq!(l["pod_namespace"], "prod", "{l:?}");
    assert_eq!(l["tier"], "frontend", "a pod label from the sandbox: {l:?}");
}
