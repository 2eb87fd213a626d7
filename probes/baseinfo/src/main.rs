//! `system_infos`: the baseinfo probe process. It reads its configuration from the daemon
//! (fd 3), runs the enabled sub-items every `report_period` seconds and prints their records;
//! with `--host-root` (or `GOPHER_HOST_PATH`) every host file is read under another root.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use gala_baseinfo::{Baseinfo, Context, HostRoot, SystemInfo, ENV_HOST_PATH, SELF_META, SUBITEMS};
use gala_probe_sdk::{Event, Probe, Severity, Wake};

/// The baseinfo probe of gala-gopher.
#[derive(Parser)]
#[command(name = "system_infos", version)]
struct Cli {
    /// Read /proc, /sys and /etc under this directory (a container's view of the host at
    /// /host, or a fixture tree).
    #[arg(long, env = ENV_HOST_PATH)]
    host_root: Option<PathBuf>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    let root = cli
        .host_root
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(HostRoot::default, HostRoot::new);
    let system = SystemInfo::detect();
    let mut builder = Probe::builder().meta_str(SELF_META.0, SELF_META.1);
    for item in SUBITEMS {
        builder = builder.meta_str(item.meta.0, item.meta.1);
    }
    let mut probe = builder.connect()?;
    let mut baseinfo = Baseinfo::default();
    let start = Instant::now();
    loop {
        let config = probe.config();
        baseinfo.configure(&config);
        let ctx = Context {
            root: &root,
            config: &config,
            now: start.elapsed(),
            system: &system,
        };
        let round = baseinfo.collect(&ctx);
        for line in &round.log {
            println!("{line}");
        }
        for record in &round.records {
            if let Err(e) = probe.emit_iter(record.table, &record.values) {
                // A record its own meta file refuses is a bug of this probe: say so, go on.
                println!("[ERROR] baseinfo: {e}");
            }
        }
        for e in &round.events {
            let event = Event::new(
                e.entity_name,
                &e.entity_id,
                e.metric,
                Severity::Warn,
                &e.message,
            )
            .device(&e.device);
            if let Err(err) = probe.event(&event) {
                println!("[ERROR] baseinfo: {err}");
            }
        }
        let period = Duration::from_secs(config.params().report_period.max(1).into());
        if probe.wait(period) == Wake::Stop {
            return Ok(());
        }
    }
}
