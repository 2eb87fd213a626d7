//! The built-in probe names and their binaries, plus lookup of custom probes.

use std::path::{Path, PathBuf};

use super::custom::CustomProbe;

/// Built-in probes: REST/probes.init name and binary file name in the extend-probe dir.
pub const BUILTIN: &[(&str, &str)] = &[
    ("baseinfo", "system_infos"),
    ("virt", "virtualized_infos"),
    ("flamegraph", "stackprobe"),
    ("l7", "l7probe"),
    ("tcp", "tcpprobe"),
    ("socket", "endpoint"),
    ("io", "ioprobe"),
    ("proc", "taskprobe"),
    ("jvm", "jvmprobe"),
    ("postgre_sli", "pgsliprobe"),
    ("opengauss_sli", "pg_stat_probe.py"),
    ("nginx", "nginx_probe"),
    ("lvs", "trace_lvs"),
    ("kafka", "kafkaprobe"),
    ("tprofiling", "tprofiling"),
    ("hw", "hwprobe"),
    ("ksli", "ksliprobe"),
    ("container", "cadvisor_probe.py"),
    ("sermant", "sermant_probe.py"),
    ("sli", "sliprobe"),
    ("flowtracer", "flowtracer"),
];

/// A probe name resolved to the program that runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeBinary {
    /// The canonical probe name (built-in names in lower case).
    pub name: String,
    /// The program to execute.
    pub bin: PathBuf,
}

/// Why a probe name cannot be started.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    /// Neither a built-in nor a custom probe has this name.
    #[error("invalid probe name {0}")]
    UnknownProbe(String),
    /// The probe exists but its binary is not installed.
    #[error("probe {name}: binary {} is not installed", bin.display())]
    NotInstalled {
        /// The probe.
        name: String,
        /// Where its binary should be.
        bin: PathBuf,
    },
}

/// Finds the binary of `name`: built-in names match case-insensitively (as the original),
/// custom names exactly. The binary must exist.
pub fn resolve(
    name: &str,
    extend_probe_dir: &Path,
    custom: &[CustomProbe],
) -> Result<ProbeBinary, ResolveError> {
    let found = BUILTIN
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(n, bin)| ProbeBinary {
            name: n.to_string(),
            bin: extend_probe_dir.join(bin),
        })
        .or_else(|| {
            custom.iter().find(|c| c.name == name).map(|c| ProbeBinary {
                name: c.name.clone(),
                bin: c.bin.clone(),
            })
        })
        .ok_or_else(|| ResolveError::UnknownProbe(name.to_string()))?;
    if !found.bin.is_file() {
        return Err(ResolveError::NotInstalled {
            name: found.name,
            bin: found.bin,
        });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_names_are_case_insensitive_and_need_their_binary() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve("TCP", dir.path(), &[]).unwrap_err();
        assert_eq!(
            err,
            ResolveError::NotInstalled {
                name: "tcp".into(),
                bin: dir.path().join("tcpprobe")
            }
        );
        std::fs::write(dir.path().join("tcpprobe"), "").unwrap();
        assert_eq!(resolve("Tcp", dir.path(), &[]).unwrap().name, "tcp");
    }

    #[test]
    fn unknown_names_are_refused() {
        let err = resolve("dnsmasq", Path::new("/nonexistent"), &[]).unwrap_err();
        assert_eq!(err.to_string(), "invalid probe name dnsmasq");
    }

    #[test]
    fn custom_names_are_exact() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("my.sh");
        std::fs::write(&bin, "").unwrap();
        let custom = [CustomProbe {
            name: "Mine".into(),
            bin: bin.clone(),
            subprobes: vec![],
            params: vec![],
        }];
        assert_eq!(resolve("Mine", dir.path(), &custom).unwrap().bin, bin);
        assert!(resolve("mine", dir.path(), &custom).is_err());
    }
}
