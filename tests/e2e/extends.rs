//! The example extend probes shipped under `probes/extends/` (besides `pg_stat`, which has its
//! own test with a real PostgreSQL), each run under the real daemon on real processes.

use std::process::{Command, Stdio};
use std::time::Duration;

use gala_e2e::{repo_root, workspace_bin, KillOnDrop, Samples, Sandbox};

/// Installs `probes/extends/<dir>/<file>` with its meta file as custom probe `name`.
fn install(sb: &mut Sandbox, name: &str, dir: &str, file: &str) -> std::path::PathBuf {
    let src = repo_root().join("probes/extends").join(dir);
    let bin = sb.path().join("probes").join(file);
    std::fs::copy(src.join(file), &bin).expect("install probe");
    let meta = gala_meta::custom_meta_path(&bin);
    std::fs::copy(src.join(meta.file_name().expect("meta name")), &meta).expect("install meta");
    sb.declare_custom_probe(name, &bin, &[], &[]);
    bin
}

/// proc_fd (shell, gala-probe helper): a snooped process holding 200 descriptors under a
/// limit of 256 is reported exactly, and crossing `res_upper_thr` raises its event.
#[test]
fn proc_fd_reports_descriptors_of_snooped_processes() {
    let mut sb = Sandbox::new();
    let bin = install(&mut sb, "proc_fd", "proc_fd", "proc_fd_probe.sh");
    sb.write_config(gala_e2e::IMDB_DEFAULT, "");
    let helper_dir = workspace_bin("gala-probe")
        .parent()
        .expect("bin dir")
        .display()
        .to_string();
    let path = format!("{helper_dir}:{}", std::env::var("PATH").unwrap_or_default());
    let d = sb.start_with_env(&[("PATH", &path)]);

    // 3 standard descriptors + 200 files; python's own few are on top.
    let mut holder = KillOnDrop(
        Command::new("python3")
            .args([
                "-c",
                "import resource, time\n\
                 resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))\n\
                 held = [open('/dev/null') for _ in range(200)]\n\
                 print('ready', flush=True)\n\
                 time.sleep(600)\n",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3"),
    );
    let pid = holder.0.id();
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.0.stdout.take().expect("stdout")),
        &mut ready,
    )
    .expect("ready line");
    assert_eq!(ready.trim(), "ready");

    let body = format!(
        r#"{{"cmd":{{"bin":{},"probe":[]}},"snoopers":{{"proc_id":[{pid}]}},"params":{{"report_period":5,"report_event":1,"res_upper_thr":50}},"state":"running"}}"#,
        serde_json::to_string(&bin).expect("json")
    );
    let (status, text) = d.put("proc_fd", &body);
    assert_eq!(status, 200, "{text}");

    let pid_s = pid.to_string();
    let labels = [("pid", pid_s.as_str())];
    let s = d.wait_for(Duration::from_secs(20), "proc_fd series", |s: &Samples| {
        s.value("gala_gopher_proc_fd_fds", &labels).is_some()
    });
    let num = |name: &str| -> f64 {
        s.value(name, &labels)
            .unwrap_or_else(|| panic!("{name} missing"))
            .parse()
            .expect("number")
    };
    let fds = num("gala_gopher_proc_fd_fds");
    assert!((203.0..215.0).contains(&fds), "fds {fds}");
    assert_eq!(num("gala_gopher_proc_fd_fd_limit"), 256.0);
    assert_eq!(num("gala_gopher_proc_fd_threads"), 1.0);
    assert_eq!(
        num("gala_gopher_proc_fd_fd_usage_percent"),
        (fds * 100.0 / 256.0).floor()
    );
    let comm = &s.find("gala_gopher_proc_fd_fds", &labels)[0].labels["comm"];
    assert_eq!(comm, "python3");

    let event = sb.wait_event(Duration::from_secs(10), "fd_usage_percent", |e| {
        e["Resource"]["metric"] == "gala_gopher_proc_fd_fd_usage_percent"
    });
    assert_eq!(
        event["Resource"]["labels"]["PID"],
        pid_s.as_str(),
        "{event}"
    );
    assert_eq!(event["Resource"]["labels"]["COMM"], "python3", "{event}");
    assert_eq!(event["SeverityText"], "WARN");
    let body = event["Body"].as_str().expect("Body");
    assert!(body.contains("above 50%"), "{body}");
    // Only the snooped process is reported.
    assert_eq!(s.find("gala_gopher_proc_fd_fds", &[]).len(), 1);
}
