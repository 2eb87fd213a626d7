use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tokio::io::AsyncReadExt;

use super::*;
use crate::config::CgroupMode;
use crate::ingress::ImdbOnly;
use crate::testutil::demo_imdb;

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn context(failed_after: u32, grace_ms: u64) -> Arc<SupervisorContext> {
    let pipeline = Pipeline::new(demo_imdb(100, 60_000), Box::new(ImdbOnly), 4096);
    Arc::new(SupervisorContext {
        pipeline: Arc::new(pipeline),
        config: SupervisorConfig {
            stop_grace: Duration::from_millis(grace_ms),
            restart_backoff_max: Duration::from_secs(2),
            failed_after,
            stable_run: Duration::from_secs(30),
            snooper_period: Duration::from_secs(1),
            cgroup: CgroupMode::Off,
        },
        cgroups: None,
    })
}

fn spec(name: &str, bin: PathBuf) -> LaunchSpec {
    LaunchSpec {
        name: name.into(),
        bin,
        encoding: gala_ipc_proto::Encoding::Json,
        meta: None,
        series_hold_ms: Default::default(),
    }
}

fn ignore_sockets() -> OnSpawn {
    Arc::new(|_, _| {})
}

/// Waits until `f` accepts the supervisor's state.
async fn wait_state(
    sup: &Supervisor,
    what: &str,
    f: impl Fn(&RuntimeState) -> bool,
) -> RuntimeState {
    let mut rx = sup.watch();
    let found = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let st = rx.borrow_and_update().clone();
            if f(&st) {
                return st;
            }
            if rx.changed().await.is_err() {
                panic!("supervisor ended while waiting for {what}");
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("timed out waiting for {what}: {:?}", sup.state()))
}

/// Gone from the process table: neither running nor a zombie.
fn reaped(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_stops_and_reaps_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    // The probe leaves a grandchild behind in its group.
    let bin = script(dir.path(), "p", "sleep 300 &\nexec sleep 300");
    let sup = Supervisor::new("p", context(5, 2000), ignore_sockets());
    sup.start(spec("p", bin));
    let st = wait_state(&sup, "running", |s| s.status == Status::Running).await;
    let pid = st.pid.unwrap();
    assert!(!reaped(pid));
    sup.stop().await;
    assert_eq!(sup.state().status, Status::Stopped);
    assert!(reaped(pid), "probe {pid} still in the process table");
    // The group is gone too: no live process left with that pgid (a killed grandchild may
    // stay a zombie for a moment, until init reaps it).
    let group_alive = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                    s.rsplit_once(") ").is_some_and(|(_, r)| {
                        let f: Vec<&str> = r.split_whitespace().collect();
                        f.first() != Some(&"Z") && f.get(2) == Some(&pid.to_string().as_str())
                    })
                })
            })
            .count()
    };
    let left = group_alive();
    assert_eq!(left, 0, "processes of group {pid} left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_probe_is_restarted_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let bin = script(dir.path(), "p", "exec sleep 300");
    let sup = Supervisor::new("p", context(5, 2000), ignore_sockets());
    sup.start(spec("p", bin));
    let first = wait_state(&sup, "running", |s| s.status == Status::Running).await;
    let pid = first.pid.unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let st = wait_state(&sup, "restarting", |s| s.status == Status::Restarting).await;
    assert!(
        st.last_exit.as_deref().unwrap_or("").contains("SIGKILL"),
        "{st:?}"
    );
    let again = wait_state(&sup, "running again", |s| {
        s.status == Status::Running && s.pid != Some(pid)
    })
    .await;
    assert_eq!(again.restarts, 1);
    assert!(reaped(pid));
    sup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_that_keeps_exiting_is_marked_failed_until_started_again() {
    let dir = tempfile::tempdir().unwrap();
    let bin = script(dir.path(), "p", "exit 3");
    let sup = Supervisor::new("p", context(2, 2000), ignore_sockets());
    sup.start(spec("p", bin.clone()));
    let st = wait_state(&sup, "failed", |s| s.status == Status::Failed).await;
    assert_eq!(st.last_exit.as_deref(), Some("exit status: 3"));
    assert_eq!(st.restarts, 1);
    // A start clears it and tries again.
    std::fs::write(&bin, "#!/bin/sh\nexec sleep 300\n").unwrap();
    sup.start(spec("p", bin));
    wait_state(&sup, "running", |s| s.status == Status::Running).await;
    sup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_binary_fails_without_harm() {
    let sup = Supervisor::new("p", context(1, 2000), ignore_sockets());
    sup.start(spec("p", PathBuf::from("/nonexistent/probe")));
    let st = wait_state(&sup, "failed", |s| s.status == Status::Failed).await;
    assert!(st.last_exit.unwrap().contains("/nonexistent/probe"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_ignoring_sigterm_is_killed_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let bin = script(
        dir.path(),
        "p",
        "trap '' TERM\nwhile true; do sleep 0.1; done",
    );
    let sup = Supervisor::new("p", context(5, 700), ignore_sockets());
    sup.start(spec("p", bin));
    let pid = wait_state(&sup, "running", |s| s.status == Status::Running)
        .await
        .pid
        .unwrap();
    // Let the shell install its trap.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = std::time::Instant::now();
    sup.stop().await;
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(700),
        "stopped after {took:?}, before the grace period"
    );
    assert!(
        took < Duration::from_millis(700 + 1000),
        "stop took {took:?}"
    );
    assert!(reaped(pid));
    assert!(sup.state().last_exit.unwrap().contains("SIGKILL"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_gets_its_control_socket_at_fd_3() {
    let dir = tempfile::tempdir().unwrap();
    let bin = script(
        dir.path(),
        "p",
        "echo \"fd=$GALA_GOPHER_IPC_FD enc=$GALA_GOPHER_IPC_ENCODING name=$GALA_GOPHER_PROBE_NAME\" >&3\nexec sleep 300",
    );
    let got: Arc<Mutex<Option<tokio::sync::oneshot::Sender<String>>>> = Arc::new(Mutex::new(None));
    let (tx, rx) = tokio::sync::oneshot::channel();
    *got.lock().unwrap() = Some(tx);
    let on_spawn: OnSpawn = {
        let got = got.clone();
        Arc::new(move |mut sock: UnixStream, _pid| {
            let tx = got.lock().unwrap().take();
            tokio::spawn(async move {
                let mut line = vec![0u8; 128];
                let n = sock.read(&mut line).await.unwrap_or(0);
                if let Some(tx) = tx {
                    let _ = tx.send(String::from_utf8_lossy(&line[..n]).into_owned());
                }
            });
        })
    };
    let sup = Supervisor::new("p", context(5, 2000), on_spawn);
    sup.start(spec("p", bin));
    let line = tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(line.trim_end(), "fd=3 enc=json name=p");
    sup.stop().await;
}
