//! `gopher-ctl`: configures probes of the running gala-gopher through its local control socket,
//! as the REST API does (`probe get`, `probe set`) and reads the metrics (`metric`).
//!
//! Exit status (kept from the original, `init_probes.sh` relies on it): 0 whenever the daemon
//! answered, even when the answer is a "failed" result; 255 on a usage error or when the
//! exchange itself failed.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gopher_ctl::{CtlRequest, DEFAULT_SOCKET, IO_TIMEOUT};

/// Exit status of usage and transport errors.
const FAILURE: u8 = 255;

/// Configure the probes of a running gala-gopher and read its metrics.
#[derive(Parser, Debug)]
#[command(name = "gopher-ctl", version)]
struct Cli {
    /// Control socket of the daemon.
    #[arg(long, global = true, env = "GOPHER_CTL_SOCKET", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Read or change the configuration of a probe.
    Probe {
        #[command(subcommand)]
        action: ProbeAction,
    },
    /// Print the metrics the daemon holds.
    Metric,
}

#[derive(Subcommand, Debug)]
enum ProbeAction {
    /// Print the probe's configuration (as REST GET /<name>).
    Get {
        /// Probe name.
        name: String,
    },
    /// Change the probe's configuration (as REST PUT /<name> with json=<json>).
    Set {
        /// Probe name.
        name: String,
        /// The configuration JSON, e.g. '{"state": "running"}'.
        json: String,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version go to stdout with status 0; usage errors are failures.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(FAILURE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let request = match cli.command {
        Command::Probe {
            action: ProbeAction::Get { name },
        } => CtlRequest::ProbeGet { name },
        Command::Probe {
            action: ProbeAction::Set { name, json },
        } => CtlRequest::ProbeSet { name, json },
        Command::Metric => CtlRequest::Metrics,
    };
    let answer = match gopher_ctl::request(&cli.socket, &request, IO_TIMEOUT) {
        Ok(answer) => answer,
        Err(e) => {
            eprintln!("gopher-ctl: {e}");
            return ExitCode::from(FAILURE);
        }
    };
    let mut out = std::io::stdout().lock();
    let mut printed = out.write_all(answer.as_bytes());
    // A terminal prompt should not follow the JSON on the same line.
    if printed.is_ok() && !answer.is_empty() && !answer.ends_with('\n') {
        printed = out.write_all(b"\n");
    }
    match printed.and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gopher-ctl: writing the answer: {e}");
            ExitCode::from(FAILURE)
        }
    }
}
