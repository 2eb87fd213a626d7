//! `probes.init` at start: the probe configuration of the previous run, applied as PUTs.

use crate::config::{probes_init_override, Config};
use crate::manager::ProbeManager;
use crate::probes::init_file;

/// Applies `probes.init` (or `GOPHER_PROBES_INIT`) line by line, as PUTs: a bad line or a
/// probe that cannot start is logged with its line number; the other lines still apply.
/// Returns the lines to keep when the file is written back: comments, and the lines that
/// could not be applied (so an operator's line is never lost to a typo).
pub(super) async fn apply(config: &Config, manager: &ProbeManager) -> Vec<String> {
    let path = &config.paths.probes_init;
    let text = match probes_init_override(&|v| std::env::var(v).ok()) {
        Some(text) => text,
        None => match gala_meta::read_text(path) {
            Ok(t) => t,
            Err(gala_meta::TextError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                String::new()
            }
            // Read on with U+FFFD in place of the bad bytes: that line fails to apply and is
            // kept verbatim, the others apply, and the next save loses none of them.
            Err(e @ gala_meta::TextError::NotUtf8 { .. }) => {
                tracing::error!("{}: {e}", path.display());
                String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
            }
            Err(e) => {
                tracing::error!("{}: {e}", path.display());
                String::new()
            }
        },
    };
    let lines: Vec<&str> = text.lines().collect();
    let (entries, errors) = init_file::parse(&text);
    let mut keep: Vec<usize> = (1..=lines.len())
        .filter(|&n| lines[n - 1].trim_start().starts_with('#'))
        .collect();
    for e in errors {
        tracing::error!("{}:{e}", path.display());
        keep.push(e.line);
    }
    for entry in entries {
        let body = serde_json::Value::Object(entry.body).to_string();
        if let Err(e) = manager.put(&entry.probe, body.as_bytes()).await {
            tracing::error!(
                "{}:line {}: probe {}: {}",
                path.display(),
                entry.line,
                entry.probe,
                e.message
            );
            keep.push(entry.line);
        }
    }
    keep.sort_unstable();
    keep.into_iter().map(|n| lines[n - 1].to_string()).collect()
}
