//! `probes.init`: one probe per line, `<probe_name> <json>` (the JSON of a REST PUT body).
//!
//! Unlike the original's `init_probes.sh`, whitespace inside the JSON is kept (a `cmdline`
//! with spaces survives), a bad line is reported with its line number while the other lines
//! still apply, and the limit is checked before applying.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde_json::Value;

/// Most probe lines applied from the file (the original's `MAX_INIT_NUM`).
pub const MAX_INIT_ENTRIES: usize = 30;

/// One probe line.
#[derive(Debug, Clone, PartialEq)]
pub struct InitEntry {
    /// 1-based line number.
    pub line: usize,
    /// The probe name as written.
    pub probe: String,
    /// The probe's configuration (a JSON object).
    pub body: serde_json::Map<String, Value>,
}

impl InitEntry {
    /// Whether the body asks for the probe to run (`"state": "running"`, case-insensitive).
    pub fn wants_running(&self) -> bool {
        self.body
            .get("state")
            .and_then(Value::as_str)
            .is_some_and(|s| s.eq_ignore_ascii_case("running"))
    }
}

/// A line that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct InitFileError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Parses the file; returns the good entries and an error per bad line.
pub fn parse(text: &str) -> (Vec<InitEntry>, Vec<InitFileError>) {
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let error = |message: String| InitFileError { line, message };
        let (probe, json) = trimmed
            .split_once(char::is_whitespace)
            .unwrap_or((trimmed, ""));
        let json = json.trim();
        if json.is_empty() {
            errors.push(error(format!("probe {probe}: no JSON configuration")));
            continue;
        }
        if entries.len() == MAX_INIT_ENTRIES {
            errors.push(error(format!(
                "more than {MAX_INIT_ENTRIES} probes; this line is ignored"
            )));
            continue;
        }
        match serde_json::from_str::<Value>(json) {
            Ok(Value::Object(body)) => entries.push(InitEntry {
                line,
                probe: probe.to_string(),
                body,
            }),
            Ok(_) => errors.push(error(format!("probe {probe}: JSON must be an object"))),
            Err(e) => errors.push(error(format!("probe {probe}: invalid JSON: {e}"))),
        }
    }
    (entries, errors)
}

/// First line of a file the daemon writes.
const SAVED_HEADER: &str =
    "# Written by gala-gopher at shutdown: the probe configuration it was running with.\n";

/// Renders the file: the operator's comments and the lines that could not be applied (`kept`,
/// verbatim, so nothing the operator wrote is lost), then probe configurations as
/// `<probe> <json>` lines, in the given order.
pub fn render<'a>(
    kept: &[String],
    entries: impl IntoIterator<Item = (&'a str, &'a Value)>,
) -> String {
    let mut out = String::from(SAVED_HEADER);
    for line in kept
        .iter()
        .filter(|l| l.as_str() != SAVED_HEADER.trim_end())
    {
        out.push_str(line);
        out.push('\n');
    }
    for (probe, body) in entries {
        out.push_str(probe);
        out.push(' ');
        out.push_str(&body.to_string());
        out.push('\n');
    }
    out
}

/// Replaces the file at `path` with `text` atomically: a temporary file in the same directory
/// is written, synced and renamed over it, so a crash leaves the old or the new file, never a
/// torn one. The file is readable by its owner alone (0600): it holds the probes' credentials
/// (a `password` custom param), which GET masks.
pub fn save(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map_or_else(
        || "probes.init".into(),
        |n| n.to_string_lossy().into_owned(),
    );
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_probes_and_reports_bad_lines_by_number() {
        let text = "# comment\n\n  tcp {\"state\": \"running\", \"snoopers\": {\"proc_name\": [{\"comm\": \"a\", \"cmdline\": \"x y\"}]}}\nio\nproc [1]\nsocket {bad\nexample {\"state\":\"stopped\"}\n";
        let (entries, errors) = parse(text);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].line, 3);
        assert_eq!(entries[0].probe, "tcp");
        assert!(entries[0].wants_running());
        assert_eq!(
            entries[0].body["snoopers"]["proc_name"][0]["cmdline"], "x y",
            "whitespace inside JSON strings is kept"
        );
        assert!(!entries[1].wants_running());
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![4, 5, 6]);
    }

    #[test]
    fn stops_at_the_limit_without_off_by_one() {
        let text: String = (0..MAX_INIT_ENTRIES + 1)
            .map(|i| format!("p{i} {{}}\n"))
            .collect();
        let (entries, errors) = parse(&text);
        assert_eq!(entries.len(), MAX_INIT_ENTRIES);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, MAX_INIT_ENTRIES + 1);
    }

    #[test]
    fn saved_files_read_back_and_replace_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("probes.init");
        std::fs::write(&path, "old {}\n").unwrap();
        let tcp: Value =
            serde_json::json!({"state": "running", "snoopers": {"proc_name": [{"comm": "a b"}]}});
        let io: Value = serde_json::json!({"state": "stopped"});
        let kept = vec!["# mine".to_string(), "bad {".to_string()];
        save(&path, &render(&kept, [("tcp", &tcp), ("io", &io)])).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\n# mine\nbad {\n"), "{text}");
        let (entries, errors) = parse(&std::fs::read_to_string(&path).unwrap());
        assert_eq!(errors.len(), 1, "{errors:?}");
        let got: Vec<(&str, Value)> = entries
            .iter()
            .map(|e| (e.probe.as_str(), Value::Object(e.body.clone())))
            .collect();
        assert_eq!(got, vec![("tcp", tcp), ("io", io)]);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        /// Random text never panics and every line yields at most one entry or error.
        #[test]
        fn never_panics(text in "(\\PC{0,40}\n){0,20}") {
            let (entries, errors) = parse(&text);
            proptest::prop_assert!(entries.len() + errors.len() <= text.lines().count());
        }
    }
}
