//! Resolution against the fixture host in `fixtures/host/` (exact expected objects) and against
//! real processes in the real `/proc`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::*;

const DOCKER_ID: &str = "4f2d0c9e1b7a6c3d5e8f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f";
const APP_ID: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
const PAUSE_ID: &str = "b7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6";
const POD: &str = "3f1e6a4c-9b2d-4e8f-a1b2-0123456789ab";
const POD_SLICE: &str = "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod3f1e6a4c_9b2d_4e8f_a1b2_0123456789ab.slice";
/// The fixture daemon's pid.
const DAEMON: u32 = 100;

fn fixture_roots() -> ScanRoots {
    ScanRoots::under_host_root(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src/snooper/fixtures/host"),
    )
}

fn fixture() -> ProcSnapshot {
    ProcSnapshot::scan(&fixture_roots()).unwrap()
}

fn inode(relative: &str) -> u64 {
    std::fs::metadata(fixture_roots().sys_root.join(relative))
        .unwrap()
        .ino()
}

fn process(
    pid: u32,
    ppid: u32,
    comm: &str,
    cmdline: &str,
    exe: &str,
    container_id: Option<&str>,
    pod_id: Option<&str>,
) -> ProcessInfo {
    ProcessInfo {
        pid,
        ppid,
        comm: comm.into(),
        cmdline: cmdline.into(),
        exe: exe.into(),
        container_id: container_id.map(str::to_string),
        pod_id: pod_id.map(str::to_string),
    }
}

fn expected_processes() -> Vec<ProcessInfo> {
    let d = Some(DOCKER_ID);
    vec![
        process(
            1,
            0,
            "systemd",
            "/sbin/init splash",
            "/usr/lib/systemd/systemd",
            None,
            None,
        ),
        process(2, 0, "kthreadd", "", "", None, None),
        process(
            100,
            1,
            "gala-gopher",
            "/usr/bin/gala-gopher",
            "/usr/bin/gala-gopher",
            None,
            None,
        ),
        process(
            200,
            100,
            "nginx",
            "nginx -c /tmp/probe.conf",
            "/usr/sbin/nginx",
            None,
            None,
        ),
        process(
            300,
            1,
            "nginx",
            "nginx: master process /usr/sbin/nginx -g daemon on;",
            "/usr/sbin/nginx",
            None,
            None,
        ),
        process(
            301,
            300,
            "nginx",
            "nginx: worker process",
            "/usr/sbin/nginx",
            None,
            None,
        ),
        process(
            390,
            1,
            "containerd-shim",
            "/usr/bin/containerd-shim-runc-v2 -namespace moby",
            "/usr/bin/containerd-shim-runc-v2",
            None,
            None,
        ),
        process(
            400,
            390,
            "redis-server",
            "redis-server *:6379",
            "/usr/bin/redis-server",
            d,
            None,
        ),
        process(
            401,
            400,
            "redis-rdb-bgsave",
            "redis-rdb-bgsave *:6379",
            "/usr/bin/redis-server",
            d,
            None,
        ),
        process(
            500,
            490,
            "java",
            "java -jar /app/app.jar",
            "/usr/lib/jvm/bin/java",
            Some(APP_ID),
            Some(POD),
        ),
        process(
            501,
            490,
            "pause",
            "/pause",
            "/pause",
            Some(PAUSE_ID),
            Some(POD),
        ),
        process(700, 1, "(weird) x", "weird", "", None, None),
    ]
}

fn docker_container() -> ContainerInfo {
    ContainerInfo {
        id: DOCKER_ID.into(),
        name: None,
        pod_id: None,
        cpucg_inode: inode(&format!("fs/cgroup/cpu,cpuacct/docker/{DOCKER_ID}")),
    }
}

fn app_container() -> ContainerInfo {
    ContainerInfo {
        id: APP_ID.into(),
        name: None,
        pod_id: Some(POD.into()),
        cpucg_inode: inode(&format!(
            "fs/cgroup/{POD_SLICE}/cri-containerd-{APP_ID}.scope"
        )),
    }
}

fn pause_container() -> ContainerInfo {
    ContainerInfo {
        id: PAUSE_ID.into(),
        name: None,
        pod_id: Some(POD.into()),
        // Its cgroup directory is missing from the fixture sys tree.
        cpucg_inode: 0,
    }
}

fn query(entries: SnooperEntries) -> SnooperQuery {
    SnooperQuery::compile(&entries).unwrap()
}

fn proc_name(comm: &str, cmdline: &str) -> ProcNameEntry {
    ProcNameEntry {
        comm: comm.into(),
        cmdline: cmdline.into(),
    }
}

fn options(daemon_pid: Option<u32>) -> ResolveOptions {
    ResolveOptions {
        daemon_pid,
        ..ResolveOptions::default()
    }
}

fn objects(resolution: &Resolution) -> Vec<String> {
    resolution
        .objects
        .iter()
        .map(|o| match o {
            Snooped::Container(c) => format!("container {}", &c.id[..8]),
            Snooped::Process(p) => format!("pid {}", p.pid),
        })
        .collect()
}

fn resolve_fixture(entries: SnooperEntries, kinds: Kinds) -> Resolution {
    resolve(
        &fixture(),
        None,
        &query(entries),
        kinds,
        &options(Some(DAEMON)),
    )
}

#[test]
fn fixture_scan_reads_every_live_process_exactly() {
    let snapshot = fixture();
    assert_eq!(snapshot.processes(), expected_processes());
    let containers: Vec<ContainerInfo> = snapshot.containers().values().cloned().collect();
    assert_eq!(
        containers,
        vec![docker_container(), app_container(), pause_container()]
    );
    assert_ne!(docker_container().cpucg_inode, 0);
    assert_eq!(snapshot.process(600), None, "vanished process skipped");
}

#[test]
fn proc_name_excludes_the_daemon_and_its_children() {
    let entries = SnooperEntries {
        proc_names: vec![proc_name("^nginx$", "")],
        ..SnooperEntries::default()
    };
    let got = resolve_fixture(entries.clone(), Kinds::BOTH);
    assert_eq!(objects(&got), ["pid 300", "pid 301"]);
    assert_eq!(got.cut, 0);
    // The objects carry the full process facts.
    assert_eq!(
        got.objects[0],
        Snooped::Process(expected_processes()[4].clone())
    );

    let everyone = resolve(
        &fixture(),
        None,
        &query(entries),
        Kinds::BOTH,
        &options(None),
    );
    assert_eq!(objects(&everyone), ["pid 200", "pid 300", "pid 301"]);

    // The daemon itself is excluded too.
    let entries = SnooperEntries {
        proc_names: vec![proc_name("gopher", "")],
        ..SnooperEntries::default()
    };
    assert!(resolve_fixture(entries, Kinds::BOTH).objects.is_empty());
}

#[test]
fn proc_name_regex_is_unanchored_and_cmdline_a_substring() {
    let cases: [(&str, &str, &[&str]); 6] = [
        ("ngin", "master", &["pid 300"]),
        ("^redis", "", &["pid 400", "pid 401"]),
        ("^redis", "-server *:6379", &["pid 400"]),
        (r"^\(weird\) x$", "", &["pid 700"]),
        ("java|pause", "/app/", &["pid 500"]),
        ("^nginx$", "absent", &[]),
    ];
    for (comm, cmdline, want) in cases {
        let entries = SnooperEntries {
            proc_names: vec![proc_name(comm, cmdline)],
            ..SnooperEntries::default()
        };
        assert_eq!(
            objects(&resolve_fixture(entries, Kinds::BOTH)),
            want,
            "{comm:?} {cmdline:?}"
        );
    }
}

#[test]
fn proc_id_yields_only_live_processes() {
    let entries = SnooperEntries {
        proc_ids: vec![9999, 400, 1, 600, 400],
        ..SnooperEntries::default()
    };
    assert_eq!(
        objects(&resolve_fixture(entries.clone(), Kinds::BOTH)),
        ["pid 1", "pid 400"]
    );
    assert!(resolve_fixture(entries, Kinds::CONTAINER)
        .objects
        .is_empty());
}

#[test]
fn container_id_prefix_yields_the_container_and_its_processes() {
    for prefix in [
        &DOCKER_ID[..5],
        &DOCKER_ID[..12],
        DOCKER_ID,
        &DOCKER_ID[..20].to_ascii_uppercase(),
    ] {
        let entries = SnooperEntries {
            container_ids: vec![prefix.to_string()],
            ..SnooperEntries::default()
        };
        let got = resolve_fixture(entries, Kinds::BOTH);
        assert_eq!(
            got.objects,
            vec![
                Snooped::Container(docker_container()),
                Snooped::Process(expected_processes()[7].clone()),
                Snooped::Process(expected_processes()[8].clone()),
            ],
            "{prefix}"
        );
    }
    let entries = SnooperEntries {
        container_ids: vec!["4f2d0d".into()],
        ..SnooperEntries::default()
    };
    assert!(resolve_fixture(entries, Kinds::BOTH).objects.is_empty());
}

#[test]
fn pod_id_yields_its_containers_and_their_processes_filtered_by_kind() {
    let entries = SnooperEntries {
        pod_ids: vec![POD.replace('-', "").to_ascii_uppercase()],
        ..SnooperEntries::default()
    };
    let all = resolve_fixture(entries.clone(), Kinds::BOTH);
    assert_eq!(
        all.objects,
        vec![
            Snooped::Container(app_container()),
            Snooped::Container(pause_container()),
            Snooped::Process(expected_processes()[9].clone()),
            Snooped::Process(expected_processes()[10].clone()),
        ]
    );
    let containers = resolve_fixture(entries.clone(), Kinds::CONTAINER);
    assert_eq!(
        objects(&containers),
        ["container a1b2c3d4", "container b7e8f90a"]
    );
    let processes = resolve_fixture(entries, Kinds::PROCESS);
    assert_eq!(objects(&processes), ["pid 500", "pid 501"]);
}

#[test]
fn overlapping_entries_give_each_object_once() {
    let entries = SnooperEntries {
        proc_ids: vec![400, 500],
        proc_names: vec![proc_name("redis", ""), proc_name("^redis-server$", "")],
        container_ids: vec![DOCKER_ID[..12].into(), DOCKER_ID.into()],
        pod_ids: vec![POD.into()],
        ..SnooperEntries::default()
    };
    assert_eq!(
        objects(&resolve_fixture(entries, Kinds::BOTH)),
        [
            "container 4f2d0c9e",
            "container a1b2c3d4",
            "container b7e8f90a",
            "pid 400",
            "pid 401",
            "pid 500",
            "pid 501",
        ]
    );
}

#[test]
fn the_cap_cuts_the_tail_and_counts_it() {
    let entries = SnooperEntries {
        proc_ids: vec![1, 2, 100, 300],
        pod_ids: vec![POD.into()],
        ..SnooperEntries::default()
    };
    let capped = ResolveOptions {
        max_objects: 3,
        ..options(Some(DAEMON))
    };
    let got = resolve(&fixture(), None, &query(entries), Kinds::BOTH, &capped);
    assert_eq!(
        objects(&got),
        ["container a1b2c3d4", "container b7e8f90a", "pid 1"]
    );
    assert_eq!(got.cut, 5);
}

#[test]
fn container_name_matches_runtime_names_by_substring() {
    let listing = format!(
        "{DOCKER_ID}\tredis-cache\t\n{APP_ID}\tk8s_app_web-0\t{POD}\n{}\torphan\t\n",
        "c".repeat(64)
    );
    let runtime = RuntimeInventory::from_listings([RuntimeKind::Docker
        .parse_listing(&listing)
        .map_err(|reason| RuntimeError::BadOutput {
            program: PathBuf::from("docker"),
            reason,
        })]);
    let by_name = |names: &[&str], kinds| {
        let entries = SnooperEntries {
            container_names: names.iter().map(|n| n.to_string()).collect(),
            ..SnooperEntries::default()
        };
        let q = query(entries);
        assert!(q.needs_runtime());
        resolve(
            &fixture(),
            Some(&runtime),
            &q,
            kinds,
            &options(Some(DAEMON)),
        )
    };

    let got = by_name(&["cache"], Kinds::BOTH);
    let named = ContainerInfo {
        name: Some("redis-cache".into()),
        ..docker_container()
    };
    assert_eq!(
        got.objects,
        vec![
            Snooped::Container(named),
            Snooped::Process(expected_processes()[7].clone()),
            Snooped::Process(expected_processes()[8].clone()),
        ]
    );
    // A container only the runtime knows (no process in this proc tree) has inode 0.
    let got = by_name(&["orph"], Kinds::BOTH);
    assert_eq!(
        got.objects,
        vec![Snooped::Container(ContainerInfo {
            id: "c".repeat(64),
            name: Some("orphan".into()),
            pod_id: None,
            cpucg_inode: 0,
        })]
    );
    // Empty matches every named container; the pause container has no runtime name.
    assert_eq!(
        objects(&by_name(&[""], Kinds::CONTAINER)),
        [
            "container 4f2d0c9e",
            "container a1b2c3d4",
            "container cccccccc"
        ]
    );
    assert!(
        by_name(&["Redis"], Kinds::BOTH).objects.is_empty(),
        "case-sensitive"
    );
    // Without a runtime listing, names resolve to nothing.
    let entries = SnooperEntries {
        container_names: vec!["cache".into()],
        ..SnooperEntries::default()
    };
    assert!(resolve_fixture(entries, Kinds::BOTH).objects.is_empty());
}

/// A lookup answering from a table, counting its calls.
struct TableLookup {
    names: Vec<(&'static str, &'static str)>,
    calls: std::sync::atomic::AtomicUsize,
}

impl crate::containers::ContainerLookup for TableLookup {
    fn lookup(&self, full_id: &str) -> Option<crate::containers::ContainerMeta> {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (_, name) = self.names.iter().find(|(id, _)| *id == full_id)?;
        Some(crate::containers::ContainerMeta {
            name: Some(name.to_string()),
            ..Default::default()
        })
    }
}

#[test]
fn container_name_matches_names_from_a_container_lookup() {
    let names = TableLookup {
        names: vec![(DOCKER_ID, "redis-cache"), (APP_ID, "app")],
        calls: Default::default(),
    };
    let entries = SnooperEntries {
        container_names: vec!["cache".into()],
        ..SnooperEntries::default()
    };
    let mut resolver = Resolver::new();
    let (report, failures) = resolver.update_naming_containers(
        &fixture(),
        &query(entries),
        Kinds::BOTH,
        &options(Some(DAEMON)),
        Some(&names),
    );
    assert!(report.changed && failures.is_empty());
    let named = ContainerInfo {
        name: Some("redis-cache".into()),
        ..docker_container()
    };
    assert_eq!(
        resolver.objects(),
        [
            Snooped::Container(named),
            Snooped::Process(expected_processes()[7].clone()),
            Snooped::Process(expected_processes()[8].clone()),
        ]
    );
    // Every container of the scan was asked about, once.
    assert_eq!(names.calls.load(std::sync::atomic::Ordering::Relaxed), 3);
    // Queries without container_name ask nothing.
    let entries = SnooperEntries {
        container_ids: vec![APP_ID[..6].into()],
        ..SnooperEntries::default()
    };
    resolver.update_naming_containers(
        &fixture(),
        &query(entries),
        Kinds::CONTAINER,
        &options(Some(DAEMON)),
        Some(&names),
    );
    assert_eq!(names.calls.load(std::sync::atomic::Ordering::Relaxed), 3);
    assert_eq!(
        objects(&Resolution {
            objects: resolver.objects().to_vec(),
            cut: 0
        }),
        ["container a1b2c3d4"]
    );
}

#[test]
fn bad_entries_give_typed_errors_and_empty_ones_are_skipped() {
    let bad_regex = SnooperEntries {
        proc_names: vec![proc_name("ok", ""), proc_name("java(", "")],
        ..SnooperEntries::default()
    };
    let err = SnooperQuery::compile(&bad_regex).unwrap_err();
    assert!(
        matches!(&err, QueryError::BadCommRegex { pattern, .. } if pattern == "java("),
        "{err}"
    );
    assert!(err.to_string().contains("\"java(\""), "{err}");

    let bad_id = SnooperEntries {
        container_ids: vec!["abc\"; rm -rf /".into()],
        ..SnooperEntries::default()
    };
    assert!(matches!(
        SnooperQuery::compile(&bad_id),
        Err(QueryError::BadContainerId(id)) if id.starts_with("abc")
    ));
    let bad_pod = SnooperEntries {
        pod_ids: vec![POD.replace('-', "_")],
        ..SnooperEntries::default()
    };
    assert!(matches!(
        SnooperQuery::compile(&bad_pod),
        Err(QueryError::BadPodId(_))
    ));

    let empties = SnooperEntries {
        proc_names: vec![proc_name("", "anything")],
        container_ids: vec![String::new()],
        pod_ids: vec![String::new()],
        ..SnooperEntries::default()
    };
    let q = SnooperQuery::compile(&empties).unwrap();
    assert!(q.is_empty());
    assert!(!q.needs_runtime());
}

#[test]
fn resolver_reports_changes_between_updates() {
    let snapshot = fixture();
    let mut resolver = Resolver::new();
    let opts = options(Some(DAEMON));
    let redis = query(SnooperEntries {
        proc_names: vec![proc_name("^redis", "")],
        ..SnooperEntries::default()
    });
    let report = resolver.update(&snapshot, None, &redis, Kinds::BOTH, &opts);
    assert_eq!(
        report,
        ResolveReport {
            changed: true,
            cut: 0
        }
    );
    assert_eq!(resolver.objects().len(), 2);
    let report = resolver.update(&snapshot, None, &redis, Kinds::BOTH, &opts);
    assert!(!report.changed);
    let capped = ResolveOptions {
        max_objects: 1,
        ..opts.clone()
    };
    let report = resolver.update(&snapshot, None, &redis, Kinds::BOTH, &capped);
    assert_eq!(
        report,
        ResolveReport {
            changed: true,
            cut: 1
        }
    );
    let report = resolver.update(&snapshot, None, &redis, Kinds::CONTAINER, &opts);
    assert!(report.changed);
    assert!(resolver.objects().is_empty());
    // From empty to empty is no change, including for a fresh resolver.
    assert!(
        !resolver
            .update(&snapshot, None, &redis, Kinds::CONTAINER, &opts)
            .changed
    );
    assert!(
        !Resolver::new()
            .update(&snapshot, None, &redis, Kinds::CONTAINER, &opts)
            .changed
    );
}

/// Real child processes, killed and reaped when dropped so that a failing test leaves nothing
/// behind.
struct Children(Vec<Child>);

impl Children {
    fn kill(&mut self, index: usize) -> u32 {
        let mut child = self.0.remove(index);
        child.kill().unwrap();
        child.wait().unwrap();
        child.id()
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Rescans until `done` holds for the resolver's objects (children need a moment to exec).
fn rescan_until(
    resolver: &mut Resolver,
    q: &SnooperQuery,
    opts: &ResolveOptions,
    done: impl Fn(&[Snooped]) -> bool,
) -> Vec<ResolveReport> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut reports = Vec::new();
    loop {
        let (report, failures) = resolver
            .rescan(&ScanRoots::default(), q, Kinds::BOTH, opts)
            .unwrap();
        assert!(failures.is_empty());
        reports.push(report);
        if done(resolver.objects()) || Instant::now() > deadline {
            return reports;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn pids(objects: &[Snooped]) -> Vec<u32> {
    objects
        .iter()
        .filter_map(|o| match o {
            Snooped::Process(p) => Some(p.pid),
            Snooped::Container(_) => None,
        })
        .collect()
}

#[test]
fn real_sleep_processes_are_found_by_comm_and_cmdline_and_tracked() {
    // Fixed width, so no other run's argument contains this one.
    let arg = format!("1000.{:07}", std::process::id());
    let spawn = || Command::new("sleep").arg(&arg).spawn().unwrap();
    let mut children = Children(vec![spawn(), spawn()]);
    let mut want: Vec<u32> = children.0.iter().map(Child::id).collect();
    want.sort_unstable();

    let q = query(SnooperEntries {
        proc_names: vec![proc_name("^sleep$", &arg)],
        ..SnooperEntries::default()
    });
    let opts = options(None);
    let mut resolver = Resolver::new();
    let reports = rescan_until(&mut resolver, &q, &opts, |o| pids(o) == want);
    assert_eq!(pids(resolver.objects()), want);
    assert!(reports.iter().any(|r| r.changed));
    let Snooped::Process(first) = &resolver.objects()[0] else {
        panic!("not a process");
    };
    assert_eq!(first.cmdline, format!("sleep {arg}"));
    assert_eq!(first.ppid, std::process::id());
    assert!(first.exe.ends_with("/sleep"), "{}", first.exe);

    // Nothing changed: no change reported.
    let (report, _) = resolver
        .rescan(&ScanRoots::default(), &q, Kinds::BOTH, &opts)
        .unwrap();
    assert_eq!(
        report,
        ResolveReport {
            changed: false,
            cut: 0
        }
    );

    // They are this test's children: with this process as the daemon they are excluded.
    let as_daemon = options(Some(std::process::id()));
    let mut excluded = Resolver::new();
    let (report, _) = excluded
        .rescan(&ScanRoots::default(), &q, Kinds::BOTH, &as_daemon)
        .unwrap();
    assert!(!report.changed && excluded.objects().is_empty());

    let killed = children.kill(0);
    let remaining: Vec<u32> = want.iter().copied().filter(|&p| p != killed).collect();
    let reports = rescan_until(&mut resolver, &q, &opts, |o| pids(o) == remaining);
    assert_eq!(pids(resolver.objects()), remaining);
    assert!(
        reports[0].changed,
        "the first rescan after the kill sees the change"
    );
}

#[test]
fn rescan_of_a_missing_proc_root_fails_with_its_path() {
    let roots = ScanRoots::under_host_root(Path::new("/nonexistent-host"));
    let err = Resolver::new()
        .rescan(
            &roots,
            &SnooperQuery::default(),
            Kinds::BOTH,
            &options(None),
        )
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent-host/proc"), "{err}");
}
