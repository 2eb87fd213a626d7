//! Custom probes declared in `gala-gopher-custom.json` (docs/reference/rest-api.md §10): read
//! strictly (a key the format does not know, such as a misspelt `ipc_encodng`, is an error that
//! names the probe and the key instead of a setting silently ignored), validated, and turned
//! into the catalogue's entries (their [`DeclaredProbe`] implementation).
//!
//! Differences from the original, decided for non-root test runs and packagers: the json file
//! and each `bin` must be owned by root *or by the daemon's user* and must not be writable by
//! group or others (the original demanded exactly 0640 / 0550, owner root). Probes keep the
//! order of the file (their type numbers follow it) and a name declared twice is refused.

use std::collections::BTreeSet;
use std::fmt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use gala_ipc_proto::Encoding;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::catalogue::{
    DeclaredProbe, ProbeKind, ProbeOrigin, SnoopKinds, SubItem, BUILTIN, CUSTOM_TYPE_BASE,
};
use super::params::ParamKey;
use crate::textcheck::has_unsafe_chars;

/// Most custom probes the file may declare.
pub const MAX_CUSTOM_PROBES: usize = 8;
/// Most sub-items or params one custom probe may declare.
const MAX_ITEMS: usize = 8;
/// Longest name, sub-item or param label, in bytes.
const MAX_NAME: usize = 64;
/// Longest `bin` path, in bytes.
const MAX_BIN: usize = 100;

/// Params GET shows for a custom probe beyond those shown for every probe
/// (docs/reference/rest-api.md §7).
const SHOWN_PARAMS: &[ParamKey] = &[
    ParamKey::SamplePeriod,
    ParamKey::DevName,
    ParamKey::CadvisorPort,
    ParamKey::CustomParam,
];

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
    /// Whether it also gets the original's messages on the System V queue (`ipc`, new,
    /// optional, `socket` by default).
    pub ipc: IpcChannel,
}

/// The `ipc` option of a custom probe: which control channels it is served on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IpcChannel {
    /// `"socket"`: the Unix socket at fd 3 only.
    #[default]
    Socket,
    /// `"sysv"`: the socket, and the original's messages on its System V message queue
    /// (crate::legacy_ipc).
    Sysv,
}

impl std::str::FromStr for IpcChannel {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "socket" => Ok(IpcChannel::Socket),
            "sysv" => Ok(IpcChannel::Sysv),
            _ => Err(()),
        }
    }
}

impl DeclaredProbe for CustomProbe {
    /// The catalogue entry of this probe at 1-based `position` of the file.
    ///
    /// Custom probes take process and container snoopers (the original read an undefined
    /// catalogue slot here) but do not require them, sub-item `i` has bit `1 << i`, and they
    /// stop with SIGINT like every other extend probe.
    fn kind(&self, position: u32) -> ProbeKind {
        ProbeKind {
            name: self.name.clone(),
            type_number: CUSTOM_TYPE_BASE + position,
            bin: self.bin.clone(),
            subitems: self
                .subprobes
                .iter()
                .enumerate()
                .map(|(i, name)| SubItem {
                    name: name.clone(),
                    bit: 1u32.checked_shl(i as u32).unwrap_or(0),
                })
                .collect(),
            snoop: SnoopKinds::BOTH,
            requires_snoopers: false,
            shown_params: SHOWN_PARAMS.to_vec(),
            stop_signal: nix::sys::signal::Signal::SIGINT,
            origin: ProbeOrigin::Custom {
                position,
                params: self.params.clone(),
            },
            encoding: self.ipc_encoding,
        }
    }
}

/// Why `gala-gopher-custom.json` was refused; every message starts with the file's path.
#[derive(Debug, thiserror::Error)]
pub enum CustomProbeError {
    /// The file could not be read.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said, or the line that is not UTF-8.
        error: gala_meta::TextError,
    },
    /// The text is not a valid declaration (`<file>:<line>: ...` when the line of the probe
    /// is known).
    #[error("{}{}: {error}", path.display(), error.line().map(|l| format!(":{l}")).unwrap_or_default())]
    Content {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        error: ContentError,
    },
    /// The file itself may not be trusted (owner, mode, type).
    #[error("{}: {error}", path.display())]
    Untrusted {
        /// The file.
        path: PathBuf,
        /// Why not.
        error: FileError,
    },
    /// A probe's program may not be trusted.
    #[error("{}: probe {probe}: bin {error}", path.display())]
    UntrustedBin {
        /// The custom-probe file.
        path: PathBuf,
        /// The probe whose `bin` it is.
        probe: String,
        /// Why not.
        error: FileError,
    },
}

/// What is wrong with the text of the file.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// Not JSON, or not an object of probes.
    #[error("invalid json: {0}")]
    Json(serde_json::Error),
    /// More probes than allowed.
    #[error("{0} custom probes declared, at most {MAX_CUSTOM_PROBES} allowed")]
    TooMany(usize),
    /// The same name twice, in any case (JSON readers disagree on which one counts, and
    /// probe names match in any case).
    #[error("probe {0:?} is declared twice (names match in any case)")]
    Duplicate(String),
    /// One probe's declaration is wrong.
    #[error("probe {name:?}: {error}")]
    Probe {
        /// The probe name as written.
        name: String,
        /// The line of its name in the file (1-based).
        line: usize,
        /// What is wrong.
        error: DeclarationError,
    },
}

impl ContentError {
    /// The line of the declaration at fault, when one probe's declaration is (JSON syntax
    /// errors name their line and column themselves).
    pub fn line(&self) -> Option<usize> {
        match self {
            ContentError::Probe { line, .. } => Some(*line),
            _ => None,
        }
    }
}

/// What is wrong with one probe's declaration.
#[derive(Debug, thiserror::Error)]
pub enum DeclarationError {
    /// A name, sub-item or param label that is empty or too long.
    #[error("{what} {value:?} must be 1-{MAX_NAME} bytes")]
    Length {
        /// Which kind of string.
        what: &'static str,
        /// The string.
        value: String,
    },
    /// The name of a built-in probe (in any case).
    #[error("name is taken by a built-in probe")]
    Builtin,
    /// A name the unsafe-character rule refuses, or one with a `/`.
    #[error("name contains unsafe characters")]
    UnsafeName,
    /// The declaration is not a JSON object.
    #[error("must be an object")]
    NotAnObject,
    /// An unknown key, a missing one or a value of the wrong type; the message names the key.
    #[error("{0}")]
    Key(serde_json::Error),
    /// A `bin` that is not an absolute, short, safe path.
    #[error("invalid custom probe bin path {0:?}: must be absolute, 1-{MAX_BIN} bytes, without unsafe characters")]
    Bin(String),
    /// More sub-items or params than allowed.
    #[error("\"{what}\" has {count} items, at most {MAX_ITEMS}")]
    TooManyItems {
        /// `probe` or `custom_param`.
        what: &'static str,
        /// How many.
        count: usize,
    },
    /// A sub-item or param listed twice.
    #[error("\"{0}\" has duplicate items")]
    DuplicateItems(&'static str),
}

/// Why a file the daemon would trust (the json, a probe's program) is refused.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// It cannot be inspected.
    #[error("{}: {error}", path.display())]
    Stat {
        /// The file.
        path: PathBuf,
        /// What the system said.
        error: std::io::Error,
    },
    /// A symbolic link, directory or special file.
    #[error("{} is not a regular file", path.display())]
    NotRegular {
        /// The file.
        path: PathBuf,
    },
    /// Owned by somebody else than root or the daemon's user.
    #[error("{} must be owned by root or uid {uid}", path.display())]
    Owner {
        /// The file.
        path: PathBuf,
        /// The daemon's effective uid.
        uid: u32,
    },
    /// Group or others may change it.
    #[error("{} is writable by group or others (mode {mode:o})", path.display())]
    Writable {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A program its owner cannot execute.
    #[error("{} is not executable", path.display())]
    NotExecutable {
        /// The file.
        path: PathBuf,
    },
}

/// Loads the custom probes of `path`; a missing or empty file declares none.
pub fn load(path: &Path) -> Result<Vec<CustomProbe>, CustomProbeError> {
    let text = match gala_meta::read_text(path) {
        Ok(t) => t,
        Err(gala_meta::TextError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Vec::new())
        }
        Err(error) => {
            return Err(CustomProbeError::Io {
                path: path.into(),
                error,
            })
        }
    };
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    check_owner_and_mode(path, false).map_err(|error| CustomProbeError::Untrusted {
        path: path.into(),
        error,
    })?;
    let probes = parse(&text).map_err(|error| CustomProbeError::Content {
        path: path.into(),
        error,
    })?;
    for p in &probes {
        check_owner_and_mode(&p.bin, true).map_err(|error| CustomProbeError::UntrustedBin {
            path: path.into(),
            probe: p.name.clone(),
            error,
        })?;
    }
    Ok(probes)
}

/// Parses and validates the file content (everything but file-system checks).
pub fn parse(text: &str) -> Result<Vec<CustomProbe>, ContentError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let Entries(entries) = Entries::deserialize(&mut de).map_err(ContentError::Json)?;
    de.end().map_err(ContentError::Json)?;
    if entries.len() > MAX_CUSTOM_PROBES {
        return Err(ContentError::TooMany(entries.len()));
    }
    let mut names = BTreeSet::new();
    let lines = top_level_key_lines(text);
    entries
        .into_iter()
        .enumerate()
        .map(|(i, (name, value))| {
            if !names.insert(name.to_ascii_lowercase()) {
                return Err(ContentError::Duplicate(name));
            }
            parse_probe(&name, value).map_err(|error| ContentError::Probe {
                name,
                line: lines.get(i).copied().unwrap_or(1),
                error,
            })
        })
        .collect()
}

/// The 1-based line of each key of the top-level object of `text` (valid JSON), in order.
fn top_level_key_lines(text: &str) -> Vec<usize> {
    let mut lines = Vec::new();
    let (mut line, mut depth) = (1, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    // Whether the next string at depth 1 is a key (after `{` or `,`).
    let mut expect_key = false;
    for c in text.chars() {
        if c == '\n' {
            line += 1;
        }
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                if depth == 1 && expect_key {
                    lines.push(line);
                }
                expect_key = false;
                in_string = true;
            }
            '{' | '[' => {
                depth += 1;
                expect_key = depth == 1 && c == '{';
            }
            '}' | ']' => depth = depth.saturating_sub(1),
            ',' => expect_key = depth == 1,
            c if c.is_whitespace() => {}
            _ => expect_key = false,
        }
    }
    lines
}

/// The top-level object's entries in file order (a map type would sort them by name).
struct Entries(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;

        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = Entries;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of custom probes")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }

        deserializer.deserialize_map(EntriesVisitor)
    }
}

/// One probe's declaration as written; a key not listed here is an error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Declaration {
    #[serde(deserialize_with = "bin")]
    bin: String,
    #[serde(deserialize_with = "subitems")]
    probe: Vec<String>,
    #[serde(deserialize_with = "param_labels")]
    custom_param: String,
    #[serde(default = "default_encoding", deserialize_with = "encoding")]
    ipc_encoding: Encoding,
    #[serde(default, deserialize_with = "ipc_channel")]
    ipc: IpcChannel,
}

// The type errors of serde do not name the key ("invalid type: integer `1`, expected a
// string"); these say which key and what it takes.

fn bin<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    String::deserialize(d).map_err(|_| de::Error::custom("\"bin\" must be a string"))
}

fn subitems<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Vec::deserialize(d).map_err(|_| de::Error::custom("\"probe\" must be an array of strings"))
}

fn param_labels<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    String::deserialize(d)
        .map_err(|_| de::Error::custom("\"custom_param\" must be a comma-separated string"))
}

fn encoding<'de, D: Deserializer<'de>>(d: D) -> Result<Encoding, D::Error> {
    let text = String::deserialize(d).ok();
    text.and_then(|t| t.parse().ok())
        .ok_or_else(|| de::Error::custom("\"ipc_encoding\" must be \"json\" or \"proto\""))
}

fn ipc_channel<'de, D: Deserializer<'de>>(d: D) -> Result<IpcChannel, D::Error> {
    let text = String::deserialize(d).ok();
    text.and_then(|t| t.parse().ok())
        .ok_or_else(|| de::Error::custom("\"ipc\" must be \"socket\" or \"sysv\""))
}

fn default_encoding() -> Encoding {
    Encoding::Json
}

fn parse_probe(name: &str, value: Value) -> Result<CustomProbe, DeclarationError> {
    check_len("name", name)?;
    if BUILTIN.iter().any(|(b, _)| b.eq_ignore_ascii_case(name)) {
        return Err(DeclarationError::Builtin);
    }
    if has_unsafe_chars(name) || name.contains('/') {
        return Err(DeclarationError::UnsafeName);
    }
    if !value.is_object() {
        return Err(DeclarationError::NotAnObject);
    }
    let decl = Declaration::deserialize(value).map_err(DeclarationError::Key)?;
    let bin = decl.bin;
    if bin.is_empty() || bin.len() > MAX_BIN || !bin.starts_with('/') || has_unsafe_chars(&bin) {
        return Err(DeclarationError::Bin(bin));
    }
    let params: Vec<String> = decl
        .custom_param
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    for (what, items) in [("probe", &decl.probe), ("custom_param", &params)] {
        if items.len() > MAX_ITEMS {
            return Err(DeclarationError::TooManyItems {
                what,
                count: items.len(),
            });
        }
        if items.iter().collect::<BTreeSet<_>>().len() != items.len() {
            return Err(DeclarationError::DuplicateItems(what));
        }
        for item in items {
            check_len(what, item)?;
        }
    }
    Ok(CustomProbe {
        name: name.into(),
        bin: bin.into(),
        subprobes: decl.probe,
        params,
        ipc_encoding: decl.ipc_encoding,
        ipc: decl.ipc,
    })
}

fn check_len(what: &'static str, s: &str) -> Result<(), DeclarationError> {
    if s.is_empty() || s.len() > MAX_NAME {
        return Err(DeclarationError::Length {
            what,
            value: s.to_owned(),
        });
    }
    Ok(())
}

/// The file must be a regular file (not a symlink), owned by root or the daemon's user, not
/// writable by group or others, and, for a program, executable by its owner.
fn check_owner_and_mode(path: &Path, executable: bool) -> Result<(), FileError> {
    let path_buf = || path.to_path_buf();
    let md = std::fs::symlink_metadata(path).map_err(|error| FileError::Stat {
        path: path_buf(),
        error,
    })?;
    if !md.file_type().is_file() {
        return Err(FileError::NotRegular { path: path_buf() });
    }
    let uid = nix::unistd::geteuid().as_raw();
    if md.uid() != 0 && md.uid() != uid {
        return Err(FileError::Owner {
            path: path_buf(),
            uid,
        });
    }
    let mode = md.permissions().mode();
    if mode & 0o022 != 0 {
        return Err(FileError::Writable {
            path: path_buf(),
            mode: mode & 0o7777,
        });
    }
    if executable && mode & 0o100 == 0 {
        return Err(FileError::NotExecutable { path: path_buf() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::catalogue::Catalogue;

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
                ipc: IpcChannel::Socket,
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
        .unwrap_err()
        .to_string();
        assert!(err.contains("ipc_encoding"), "{err}");
    }

    #[test]
    fn the_legacy_channel_can_be_chosen() {
        let probes = parse(
            r#"{"a": {"bin": "/x/a", "probe": [], "custom_param": "", "ipc": "sysv"},
                "b": {"bin": "/x/b", "probe": [], "custom_param": "", "ipc": "socket"},
                "c": {"bin": "/x/c", "probe": [], "custom_param": ""}}"#,
        )
        .unwrap();
        let channels: Vec<_> = probes.iter().map(|p| p.ipc).collect();
        assert_eq!(
            channels,
            [IpcChannel::Sysv, IpcChannel::Socket, IpcChannel::Socket]
        );
        for bad in [r#""msgq""#, "1", "null"] {
            let text = format!(
                r#"{{"a": {{"bin": "/x/a", "probe": [], "custom_param": "", "ipc": {bad}}}}}"#
            );
            assert_eq!(
                parse(&text).unwrap_err().to_string(),
                "probe \"a\": \"ipc\" must be \"socket\" or \"sysv\"",
                "{bad}"
            );
        }
    }

    #[test]
    fn a_bad_ipc_value_in_the_file_stops_with_the_file_and_the_probe() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("gala-gopher-custom.json");
        std::fs::write(
            &json,
            "{\"a\": {\"bin\": \"/x/a\", \"probe\": [], \"custom_param\": \"\"},\n \"b\": {\"bin\": \"/x/b\", \"probe\": [], \"custom_param\": \"\",\n \"ipc\": \"SysV\"}}\n",
        )
        .unwrap();
        std::fs::set_permissions(&json, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = load(&json).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{}:2: probe \"b\": \"ipc\" must be \"socket\" or \"sysv\"",
                json.display()
            )
        );
    }

    #[test]
    fn top_level_keys_are_found_with_their_lines() {
        let text =
            "{\"a\": {\"b\": [\"x,\\\"y\", {\"c\": 1}], \"d\": \"}\"},\n\n  \"e\"\n: 2, \"f\": {}}";
        assert_eq!(top_level_key_lines(text), [1, 3, 4]);
        assert!(top_level_key_lines("[1, 2]").is_empty());
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_probe_and_the_key() {
        let err = parse(
            r#"{"a": {"bin": "/x/a", "probe": [], "custom_param": "", "ipc_encodng": "proto"}}"#,
        )
        .unwrap_err();
        assert!(
            matches!(&err, ContentError::Probe { name, line: 1, error: DeclarationError::Key(_) } if name == "a"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "probe \"a\": unknown field `ipc_encodng`, expected one of `bin`, `probe`, \
             `custom_param`, `ipc_encoding`, `ipc`"
        );
    }

    #[test]
    fn probes_keep_the_file_order_and_a_name_counts_once() {
        let probes = parse(
            r#"{"zeta": {"bin": "/x/z", "probe": [], "custom_param": ""},
                "alpha": {"bin": "/x/a", "probe": [], "custom_param": ""}}"#,
        )
        .unwrap();
        let names: Vec<_> = probes.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["zeta", "alpha"]);
        let cat = Catalogue::new(Path::new("/x"), &probes);
        assert_eq!(cat.lookup("zeta").unwrap().type_number, 101);
        assert_eq!(cat.lookup("alpha").unwrap().type_number, 102);
        let err = parse(
            r#"{"a": {"bin": "/x/a", "probe": [], "custom_param": ""},
                "a": {"bin": "/x/b", "probe": [], "custom_param": ""}}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "probe \"a\" is declared twice (names match in any case)"
        );
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
                r#"{"My": {"bin": "/x", "probe": [], "custom_param": ""}, "my": {"bin": "/y", "probe": [], "custom_param": ""}}"#,
                "declared twice (names match in any case)",
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
            (r#"{"a": 1}"#, "must be an object"),
            (
                r#"{"a": {"bin": 1, "probe": [], "custom_param": ""}}"#,
                "\"bin\" must be a string",
            ),
            (
                r#"{"a": {"bin": "/x", "probe": [], "custom_param": ""}} x"#,
                "invalid json: trailing characters",
            ),
        ];
        for (text, want) in cases {
            let err = parse(text).unwrap_err().to_string();
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
        assert_eq!(
            err,
            format!(
                "{}: probe p: bin {} is writable by group or others (mode 777)",
                json.display(),
                bin.display()
            )
        );
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o750)).unwrap();
        assert_eq!(load(&json).unwrap().len(), 1);
    }

    #[test]
    fn a_misspelt_key_in_the_file_is_named_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("gala-gopher-custom.json");
        std::fs::write(
            &json,
            "{\"a\": {\"bin\": \"/x/a\", \"probe\": [], \"custom_param\": \"\",\n \"ipc_encodng\": \"proto\"}}\n",
        )
        .unwrap();
        std::fs::set_permissions(&json, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = load(&json).unwrap_err();
        assert!(matches!(err, CustomProbeError::Content { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "{}:1: probe \"a\": unknown field `ipc_encodng`",
                json.display()
            )),
            "{text}"
        );
    }

    #[test]
    fn custom_probes_join_the_catalogue_after_the_builtins() {
        let probe = |name: &str, bin: &str| CustomProbe {
            name: name.into(),
            bin: bin.into(),
            subprobes: vec!["a".into(), "b".into(), "c".into()],
            params: vec!["p1".into(), "p2".into()],
            ipc_encoding: Encoding::Json,
            ipc: IpcChannel::Socket,
        };
        let custom = [probe("First", "/opt/first"), probe("second", "/opt/second")];
        let cat = Catalogue::new(Path::new("/opt/gala-gopher/extend_probes"), &custom);
        assert_eq!(cat.len(), BUILTIN.len() + 2);
        let first = cat.lookup("First").unwrap();
        assert_eq!(cat.lookup("first"), Some(first), "names match in any case");
        assert_eq!(first.type_number, 101);
        assert_eq!(cat.by_type_number(102).unwrap().name, "second");
        assert_eq!(first.bin, Path::new("/opt/first"));
        assert_eq!(first.subitem_mask(&["a", "c"]), 0b101);
        assert!(first.subitem("A").is_none(), "custom sub-items are exact");
        assert_eq!(first.snoop, SnoopKinds::BOTH);
        assert!(!first.requires_snoopers);
        assert_eq!(first.stop_signal, nix::sys::signal::Signal::SIGINT);
        assert_eq!(first.custom_params().unwrap(), ["p1", "p2"]);
        assert!(cat.lookup("tcp").unwrap().custom_params().is_none());
        assert_eq!(cat.iter().filter(|p| p.is_custom()).count(), 2);
    }
}
