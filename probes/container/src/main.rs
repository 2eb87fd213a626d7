//! `containerprobe`: the container probe process. It reads its configuration from the daemon
//! (fd 3), samples the snooped containers every `report_period` seconds and prints their
//! records. `cadvisor_port` is accepted and has no effect: no cAdvisor is run.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use gala_container::{CgroupMode, Collector, Host, Scope, ENV_CGROUP_MODE, ENV_HOST_PATH, META};
use gala_probe_sdk::{Probe, Wake};

/// The container probe of gala-gopher.
#[derive(Parser)]
#[command(name = "containerprobe", version)]
struct Cli {
    /// Read /proc and the cgroup mounts under this directory (the host mounted at /host when
    /// gala-gopher runs in a container, or a fixture tree).
    #[arg(long, env = ENV_HOST_PATH)]
    host_root: Option<PathBuf>,
    /// Which cgroup hierarchies to read: `auto` (v1 where a controller is mounted there, else
    /// the unified one) or `unified` (only cgroup v2).
    #[arg(long, env = ENV_CGROUP_MODE, value_enum, default_value_t = CgroupMode::Auto)]
    cgroup: CgroupMode,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let root = cli
        .host_root
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("/"));
    let host = Host::detect(&root, cli.cgroup).context("container probe cannot start")?;
    let mut probe = Probe::builder().meta_str(META.0, META.1).connect()?;
    let mut collector = Collector::new(host);
    loop {
        let config = probe.config();
        let scope = Scope::from_config(&config);
        let cycle = collector.cycle(&scope);
        for line in &cycle.log {
            println!("{line}");
        }
        for record in &cycle.records {
            if let Err(e) = probe.emit_iter(record.table, &record.values) {
                // A record its own meta file refuses is a bug of this probe: say so, go on.
                println!("[ERROR] container: {e}");
            }
        }
        if let Err(e) = probe.flush() {
            println!("[ERROR] container: {e}");
        }
        let period = Duration::from_secs(config.params().report_period.max(1).into());
        if probe.wait(period) == Wake::Stop {
            return Ok(());
        }
    }
}
