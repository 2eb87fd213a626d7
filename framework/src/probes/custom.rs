//! Custom probes declared in `gala-gopher-custom.json` (docs/reference/rest-api.md §10).
//!
//! Differences from the original, decided for non-root test runs and packagers: the json file
//! and each `bin` must be owned by root *or by the daemon's user* and must not be writable by
//! group or others (the original demanded exactly 0640 / 0550, owner root).

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use gala_ipc_proto::Encoding;
use serde_json::Value;

use super::catalogue::BUILTIN;
use crate::textcheck::has_unsafe_chars;

/// Most custom probes the file may declare.
pub const MAX_CUSTOM_PROBES: usize = 8;
/// Most sub-items or params one custom probe may declare.
const MAX_ITEMS: usize = 8;

/// One probe of `gala-gopher-custom.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomProbe {
    /// The probe name (REST path, probes.init name); case-sensitive.
    pub name: String,
    /// Absolute path of its program.
    pub bin: PathBuf,
    /// Declared sub-items (`probe`).
    pub subprobes: Vec<String>,
    /// Declared parameter labels (`custom_param`).
    pub params: Vec<String>,
    /// Encoding of its control channel (`ipc_encoding`, new, optional): `json` by default,
    /// since custom probes are usually scripts.
    pub ipc_encoding: Encoding,
}

/// Why the custom-probe file was refused.
#[derive(Debug, thiserror::Error)]
pub enum CustomProbeError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The content or the permissions are wrong.
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Loads the custom probes of `path`; a missing or empty file declares none.
pub fn load(path: &Path) -> Result<Vec<CustomProbe>, CustomProbeError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(CustomProbeError::Io {
                path: path.into(),
                source,
            })
        }
    };
    let invalid = |message: String| CustomProbeError::Invalid {
        path: path.into(),
        message,
    };
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    check_owner_and_mode(path, false).map_err(invalid)?;
    let probes = parse(&text).map_err(invalid)?;
    for p in &probes {
        check_owner_and_mode(&p.bin, true)
            .map_err(|e| invalid(format!("probe {}: bin {e}", p.name)))?;
    }
    Ok(probes)
}

/// Parses and validates the file content (everything but file-system checks).
pub fn parse(text: &str) -> Result<Vec<CustomProbe>, String> {
    let root: serde_json::Map<String, Value> =
        serde_json::from_str(text).map_err(|e| format!("invalid json: {e}"))?;
    if root.len() > MAX_CUSTOM_PROBES {
        return Err(format!(
            "{} custom probes declared, at most {MAX_CUSTOM_PROBES} allowed",
            root.len()
        ));
    }
    root.into_iter()
        .map(|(name, v)| parse_probe(&name, &v).map_err(|e| format!("probe {name:?}: {e}")))
        .collect()
}

fn parse_probe(name: &str, v: &Value) -> Result<CustomProbe, String> {
    check_len("name", name)?;
    if BUILTIN.iter().any(|(b, _)| b.eq_ignore_ascii_case(name)) {
        return Err("name is taken by a built-in probe".into());
    }
    if has_unsafe_chars(name) || name.contains('/') {
        return Err("name contains unsafe characters".into());
    }
    let obj = v.as_object().ok_or("must be an object")?;
    let bin = obj
        .get("bin")
        .and_then(Value::as_str)
        .ok_or("\"bin\" must be a string")?;
    if bin.is_empty() || bin.len() > 100 || !bin.starts_with('/') || has_unsafe_chars(bin) {
        return Err(format!(
            "invalid custom probe bin path {bin:?}: must be absolute, 1-100 bytes, without unsafe characters"
        ));
    }
    let subprobes = obj
        .get("probe")
        .and_then(Value::as_array)
        .ok_or("\"probe\" must be an array of strings")?
        .iter()
        .map(|s| {
            s.as_str()
                .map(str::to_string)
                .ok_or("\"probe\" must be an array of strings")
        })
        .collect::<Result<Vec<_>, _>>()?;
    let ipc_encoding = match obj.get("ipc_encoding") {
        None => Encoding::Json,
        Some(v) => v
            .as_str()
            .and_then(|e| e.parse().ok())
            .ok_or("\"ipc_encoding\" must be \"json\" or \"proto\"")?,
    };
    let params: Vec<String> = obj
        .get("custom_param")
        .and_then(Value::as_str)
        .ok_or("\"custom_param\" must be a comma-separated string")?
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    for (what, items) in [("probe", &subprobes), ("custom_param", &params)] {
        if items.len() > MAX_ITEMS {
            return Err(format!(
                "\"{what}\" has {} items, at most {MAX_ITEMS}",
                items.len()
            ));
        }
        if items.iter().collect::<BTreeSet<_>>().len() != items.len() {
            return Err(format!("\"{what}\" has duplicate items"));
        }
        for item in items {
            check_len(what, item)?;
        }
    }
    Ok(CustomProbe {
        name: name.into(),
        bin: bin.into(),
        subprobes,
        params,
        ipc_encoding,
    })
}

fn check_len(what: &str, s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 64 {
        return Err(format!("{what} {s:?} must be 1-64 bytes"));
    }
    Ok(())
}

/// The file must be a regular file (not a symlink), owned by root or the daemon's user, not
/// writable by group or others, and, for a program, executable by its owner.
fn check_owner_and_mode(path: &Path, executable: bool) -> Result<(), String> {
    let md = std::fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !md.file_type().is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    let me = nix::unistd::geteuid().as_raw();
    if md.uid() != 0 && md.uid() != me {
        return Err(format!(
            "{} must be owned by root or uid {me}",
            path.display()
        ));
    }
    let mode = md.permissions().mode();
    if mode & 0o022 != 0 {
        return Err(format!(
            "{} is writable by group or others (mode {:o})",
            path.display(),
            mode & 0o7777
        ));
    }
    if executable && mode & 0o100 == 0 {
        return Err(format!("{} is not executable", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_shape() {
        let probes = parse(
            r#"{"example": {"bin": "/opt/x/example.sh", "probe": ["a", "b"], "custom_param": "p1,p2"}}"#,
        )
        .unwrap();
        assert_eq!(
            probes,
            vec![CustomProbe {
                name: "example".into(),
                bin: "/opt/x/example.sh".into(),
                subprobes: vec!["a".into(), "b".into()],
                params: vec!["p1".into(), "p2".into()],
                ipc_encoding: gala_ipc_proto::Encoding::Json,
            }]
        );
    }

    #[test]
    fn the_control_channel_encoding_can_be_chosen() {
        let probes = parse(
            r#"{"a": {"bin": "/x/a", "probe": [], "custom_param": "", "ipc_encoding": "proto"},
                "b": {"bin": "/x/b", "probe": [], "custom_param": ""}}"#,
        )
        .unwrap();
        assert_eq!(probes[0].ipc_encoding, Encoding::Proto);
        assert_eq!(probes[1].ipc_encoding, Encoding::Json);
        let err = parse(
            r#"{"a": {"bin": "/x/a", "probe": [], "custom_param": "", "ipc_encoding": "xml"}}"#,
        )
        .unwrap_err();
        assert!(err.contains("ipc_encoding"), "{err}");
    }

    #[test]
    fn refuses_what_the_original_refuses() {
        let cases = [
            (
                r#"{"tcp": {"bin": "/x", "probe": [], "custom_param": ""}}"#,
                "built-in",
            ),
            (
                r#"{"a": {"bin": "x", "probe": [], "custom_param": ""}}"#,
                "bin path",
            ),
            (
                r#"{"a": {"bin": "/x;rm", "probe": [], "custom_param": ""}}"#,
                "bin path",
            ),
            (
                r#"{"a": {"bin": "/x", "probe": ["s", "s"], "custom_param": ""}}"#,
                "duplicate",
            ),
            (
                r#"{"a": {"bin": "/x", "probe": "s", "custom_param": ""}}"#,
                "array",
            ),
            (r#"{"a": {"bin": "/x", "probe": []}}"#, "custom_param"),
            (
                r#"{"a": {"bin": "/x", "probe": [], "custom_param": ""},}"#,
                "invalid json",
            ),
            (r#"[1]"#, "invalid json"),
        ];
        for (text, want) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn missing_or_empty_file_declares_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(&dir.path().join("none.json")).unwrap().is_empty());
        let empty = dir.path().join("empty.json");
        std::fs::write(&empty, "\n").unwrap();
        assert!(load(&empty).unwrap().is_empty());
    }

    #[test]
    fn writable_bin_is_refused() {
        // tempdir() names start with '.', which the unsafe-character rule refuses in paths.
        let dir = tempfile::Builder::new().prefix("gg").tempdir().unwrap();
        let bin = dir.path().join("p.sh");
        std::fs::write(&bin, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o777)).unwrap();
        let json = dir.path().join("custom.json");
        let body = format!(
            r#"{{"p": {{"bin": "{}", "probe": [], "custom_param": ""}}}}"#,
            bin.display()
        );
        std::fs::write(&json, body).unwrap();
        std::fs::set_permissions(&json, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = load(&json).unwrap_err().to_string();
        assert!(err.contains("writable by group or others"), "{err}");
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o750)).unwrap();
        assert_eq!(load(&json).unwrap().len(), 1);
    }
}
