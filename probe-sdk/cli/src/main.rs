//! `gala-probe`: the SDK for shell probes, one command per operation (see `probe-sdk/API.md`),
//! plus `check`, which runs the daemon's own line checks over a probe's output.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use gala_ipc_proto::v1::status;
use gala_meta::{classify, parse_event, Line};
use gala_probe_sdk::{Event, Output, Schema, Severity};

use shell::ShellChannel;

mod shell;

/// Helper for gala-gopher probes written in shell.
#[derive(Parser)]
#[command(name = "gala-probe", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print one record line `|TABLE|V1|...|` (checked against the probe's meta file).
    Emit {
        /// Meta file to check against (default: $GALA_GOPHER_META).
        #[arg(long)]
        meta: Vec<PathBuf>,
        /// The table.
        table: String,
        /// The values, in the table's field order.
        #[arg(allow_hyphen_values = true)]
        values: Vec<String>,
    },
    /// Print one event line.
    Event {
        /// Entity name (the meta file's entity_name).
        entity_name: String,
        /// Entity id.
        entity_id: String,
        /// The metric (field) concerned.
        metric: String,
        /// INFO, WARN, ERROR or FATAL.
        severity: String,
        /// Free text (`|` and line breaks are replaced).
        message: String,
        /// The process concerned.
        #[arg(long, default_value_t = 0)]
        pid: u32,
        /// Its command name (default: from /proc).
        #[arg(long, default_value = "")]
        comm: String,
        /// The IP address concerned.
        #[arg(long, default_value = "")]
        ip: String,
        /// The container concerned (default: from /proc when --pid is given).
        #[arg(long, default_value = "")]
        container_id: String,
        /// The pod concerned.
        #[arg(long, default_value = "")]
        pod_id: String,
        /// The device concerned.
        #[arg(long, default_value = "")]
        device: String,
    },
    /// Read the configuration.
    Config {
        #[command(subcommand)]
        what: ConfigCommand,
    },
    /// Sleep up to SECONDS; exit 0 when they elapsed, 10 when a new configuration arrived,
    /// 11 when the daemon closed the channel.
    Wait {
        /// Seconds to sleep (fractions allowed).
        seconds: f64,
    },
    /// Send a status report (info, warn or error) to the daemon.
    Status {
        /// info, warn or error.
        level: String,
        /// The text.
        text: String,
    },
    /// Check probe output from stdin as the daemon would; exit 1 if a line would be dropped.
    Check {
        /// The probe's meta file(s).
        #[arg(long, required = true)]
        meta: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print one value by path: probe_name, seq, change_flags, subitems, snooper_mode,
    /// params.NAME, pids, custom.subitems, custom.params.LABEL, custom_labels.KEY.
    Get {
        /// The path.
        path: String,
    },
    /// Print the whole configuration as one JSON object.
    Json,
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gala-probe: {e}");
            ExitCode::from(2)
        }
    }
}

fn schema(meta: &[PathBuf]) -> Result<Schema, Box<dyn std::error::Error>> {
    Ok(if meta.is_empty() {
        Schema::discover_env()?
    } else {
        Schema::from_files(meta)?
    })
}

fn run(command: Command) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match command {
        Command::Emit {
            meta,
            table,
            values,
        } => {
            let mut out = Output::stdout(schema(&meta)?);
            out.emit_iter(&table, &values)?;
            out.flush()?;
        }
        Command::Event {
            entity_name,
            entity_id,
            metric,
            severity,
            message,
            pid,
            comm,
            ip,
            container_id,
            pod_id,
            device,
        } => {
            let severity = Severity::parse(&severity).ok_or_else(|| {
                format!("unknown severity {severity:?} (INFO, WARN, ERROR, FATAL)")
            })?;
            let mut event = Event::new(&entity_name, &entity_id, &metric, severity, &message)
                .pid(pid)
                .ip(&ip)
                .pod_id(&pod_id)
                .device(&device);
            if !comm.is_empty() {
                event = event.comm(&comm);
            }
            if !container_id.is_empty() {
                event = event.container_id(&container_id);
            }
            let mut out = Output::stdout(Schema::unchecked());
            out.event(&event)?;
            out.flush()?;
        }
        Command::Config { what } => {
            let config = ShellChannel::open()?.config()?;
            match what {
                ConfigCommand::Get { path } => println!("{}", config.get(&path)?),
                ConfigCommand::Json => println!("{}", config.to_json()),
            }
        }
        Command::Wait { seconds } => {
            let timeout = Duration::try_from_secs_f64(seconds)
                .map_err(|_| format!("bad number of seconds {seconds}"))?;
            let wake = ShellChannel::open()?.wait(timeout)?;
            return Ok(ExitCode::from(wake as u8));
        }
        Command::Status { level, text } => {
            let level = match level.to_ascii_lowercase().as_str() {
                "info" => status::Level::Info,
                "warn" => status::Level::Warn,
                "error" => status::Level::Error,
                _ => return Err(format!("unknown level {level:?} (info, warn, error)").into()),
            };
            ShellChannel::open()?.status(level, &text)?;
        }
        Command::Check { meta } => return check(&meta),
    }
    Ok(ExitCode::SUCCESS)
}

/// Reports every line of stdin the daemon would drop, with the drop reason it would count.
fn check(meta: &[PathBuf]) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut registry = gala_meta::Registry::new();
    for m in meta {
        registry.load_file(m, &gala_meta::MetaLimits::default())?;
    }
    let (mut ok, mut bad, mut text) = (0u64, 0u64, 0u64);
    for (n, line) in std::io::stdin().lock().split(b'\n').enumerate() {
        let line = line?;
        let verdict: Result<&str, (String, String)> = match classify(&line) {
            Ok(Line::Text(_)) => Ok("text"),
            Ok(Line::Log(_)) => Ok("log"),
            Ok(Line::Event(ev)) => parse_event(ev)
                .map(|_| "event")
                .map_err(|e| (e.reason().to_owned(), e.to_string())),
            Ok(Line::Record(rec)) => match registry.lookup(rec.table) {
                None => Err((
                    "unknown_table".to_owned(),
                    format!(
                        "table {:?} is in none of the meta files",
                        String::from_utf8_lossy(rec.table)
                    ),
                )),
                Some(id) => rec
                    .split_values(registry.table(id), &mut Vec::new())
                    .map(|()| "record")
                    .map_err(|e| (e.reason().to_owned(), e.to_string())),
            },
            Err(e) => Err((e.reason().to_owned(), e.to_string())),
        };
        match verdict {
            Ok("text") => text += 1,
            Ok(_) => ok += 1,
            Err((reason, why)) => {
                bad += 1;
                println!(
                    "line {}: dropped ({reason}): {why}: {}",
                    n + 1,
                    String::from_utf8_lossy(&line[..line.len().min(200)])
                );
            }
        }
    }
    println!("{ok} lines accepted, {bad} dropped, {text} log text");
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
