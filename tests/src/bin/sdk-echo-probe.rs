//! The Rust SDK's conformance probe: the behaviour described in `tests/probes/sdk_echo.meta`,
//! written with `gala-probe-sdk`, run by `tests/e2e/sdk.rs` under the real daemon.

use std::time::Duration;

use gala_probe_sdk::{emit, Config, Event, Probe, Severity, Wake};

/// `items` joined by `,`, or `none`.
fn joined<T: ToString>(items: impl IntoIterator<Item = T>) -> String {
    let v: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    if v.is_empty() {
        "none".to_owned()
    } else {
        v.join(",")
    }
}

fn level(config: &Config) -> String {
    config.custom_param("level").unwrap_or("0").to_owned()
}

fn announce(probe: &mut Probe) -> Result<(), gala_probe_sdk::EmitError> {
    let config = probe.config();
    let id = format!("rust-{}", config.seq());
    let message = format!(
        "applied config {} with level {} | ok",
        config.seq(),
        level(&config)
    );
    probe.event(&Event::new(
        "sdk_echo",
        &id,
        "seq",
        Severity::Warn,
        &message,
    ))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut probe = Probe::connect()?;
    announce(&mut probe)?;
    loop {
        let config = probe.config();
        emit!(
            probe,
            "sdk_echo",
            "rust",
            config.probe_name(),
            joined(config.custom_subitems()),
            joined(config.pids()),
            config.params().report_period,
            level(&config),
            config.seq()
        )?;
        let period = Duration::from_secs(config.params().report_period.into());
        match probe.wait(period) {
            Wake::Timeout => {}
            Wake::Config => announce(&mut probe)?,
            Wake::Stop => return Ok(()),
        }
    }
}
