//! `gala-gopher`: the daemon's command line; its lifecycle is [`gala_gopher::daemon::Daemon`].

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{ArgAction, Parser};
use gala_gopher::config::{Config, Loaded, DEFAULT_CONFIG_PATH};
use gala_gopher::daemon::{Daemon, Setup};
use gala_gopher::logging;
use gala_gopher::supervisor::reserve_ipc_fd;

/// gala-gopher: host observability agent (Rust edition).
#[derive(Parser, Debug)]
#[command(name = "gala-gopher", version, disable_version_flag = true)]
struct Args {
    /// Configuration file.
    #[arg(short = 'c', long = "config_path", visible_alias = "config", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// Check the configuration, meta files and custom probes, print a summary and exit.
    #[arg(long)]
    check: bool,
    /// Print the version and exit.
    #[arg(short = 'v', long = "version", action = ArgAction::Version)]
    version: Option<bool>,
}

/// Buffers of 1 MiB and more (a scrape's exposition chunks, Kafka batches) come from mmap
/// and go back to the system when freed. glibc's default raises its mmap threshold after the
/// first such free and then keeps later ones in the heap, so the daemon's RSS would stay at
/// the largest exposition it ever rendered (a fixed threshold turns that off).
fn return_large_buffers_to_the_system() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets allocator parameters; called before any other thread exists.
    unsafe {
        nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

fn main() -> ExitCode {
    return_large_buffers_to_the_system();
    let args = Args::parse();
    // Before any thread or child exists: descriptor 3 must stay taken (see reserve_ipc_fd).
    if let Err(e) = reserve_ipc_fd() {
        eprintln!("gala-gopher: reserving descriptor 3: {e}");
        return ExitCode::FAILURE;
    }
    let loaded = match Config::load(&args.config) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("gala-gopher: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    let result = match runtime {
        Ok(rt) => rt.block_on(run(loaded, args.check)),
        Err(e) => Err(e).context("starting the async runtime"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let text = report(&e);
            tracing::error!("{text}");
            eprintln!("gala-gopher: {text}");
            ExitCode::FAILURE
        }
    }
}

/// `e` and its causes joined by `: `, leaving out a cause the text so far already says (the
/// library errors that name their source in their own message).
fn report(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// Checks (`--check`) or runs the daemon until SIGTERM/SIGINT, then shuts it down.
async fn run(loaded: Loaded, check_only: bool) -> Result<()> {
    let config = loaded.config;
    let debug_file = (
        config.logs.debug_dir.clone(),
        config.global.log_file_name.clone(),
    );
    let _log = logging::init(
        config.global.log_level.as_str(),
        (!check_only).then_some(debug_file),
    )?;
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let setup = Setup::load(config)?;
    if check_only {
        let (tables, custom) = (setup.registry.len(), setup.custom.len());
        println!("configuration OK: {tables} tables, {custom} custom probes");
        return Ok(());
    }
    let daemon = Daemon::start(setup).await?;
    let ran = daemon.run().await;
    daemon.shutdown().await;
    Ok(ran?)
}
