//! The shipped configuration, staged as `./dev.sh stage` (install.sh) lays it out, starts the
//! host-wide baseinfo probe and no demo probe, and exports baseinfo's data. baseinfo reports
//! its first round at once, so the shipped `report_period` of 30 s is kept as it is.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gala_e2e::{free_port, http_get, workspace_bin, Samples};

#[test]
fn the_shipped_config_exports_baseinfo_data_and_starts_no_demo_probe() {
    // A daemon started without a Sandbox: hold the gate as a Sandbox would.
    let _gate = gala_e2e::gate::shared();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dest = tempfile::Builder::new()
        .prefix("gala-stage-")
        .tempdir()
        .expect("tempdir");
    let bin_dir = workspace_bin("gala-gopher")
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let status = Command::new(repo.join("dev.sh"))
        .arg("stage")
        .arg(dest.path())
        .arg(&bin_dir)
        .current_dir(&repo)
        .status()
        .expect("dev.sh stage");
    assert!(status.success());
    let port = free_port();
    let conf = dest.path().join("etc/gala-gopher/gala-gopher.conf");
    let mut daemon = Command::new(dest.path().join("gala-gopher"))
        .arg("-c")
        .arg(&conf)
        // The port is the only change: through the container image's override variable.
        .env("GOPHER_METRIC_PORT", port.to_string())
        .env("GOPHER_REST_PORT", free_port().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start gala-gopher");
    let deadline = Instant::now() + Duration::from_secs(20);
    let samples = loop {
        if let Ok((200, body)) = http_get(port, "/metrics") {
            let s = Samples::parse(&body);
            if s.0.iter().any(|s| s.name.starts_with("gala_gopher_mem_")) {
                break s;
            }
        }
        if Instant::now() > deadline {
            let _ = daemon.kill();
            panic!("no baseinfo data on /metrics");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = daemon.kill();
    let _ = daemon.wait();
    // More than one of baseinfo's sub-items (as the shipped `cmd.probe` list enables them), and
    // nothing of the example probe.
    for prefix in ["gala_gopher_mem_", "gala_gopher_host_"] {
        assert!(
            samples.0.iter().any(|s| s.name.starts_with(prefix)),
            "no {prefix}* series"
        );
    }
    assert!(
        samples
            .0
            .iter()
            .all(|s| !s.name.starts_with("gala_gopher_example_")),
        "the shipped probes.init started the example probe"
    );
}
