//! The last resort: the runtimes' CLIs (`docker inspect`, `isula inspect`, `crictl inspect`),
//! exec'd directly with a fixed argument list and a validated id (no shell), under a timeout,
//! through the snooper's runner ([`crate::snooper::runtime`]).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::docker::{is_id_like, null_as_empty, parse_docker_inspect};
use super::error::{DecodeError, LookupError, Result};
use super::ContainerMeta;
use crate::snooper::runtime::run_with_timeout;
use crate::snooper::{RuntimeCli, RuntimeKind};

/// What `crictl inspect` (`status`, `info.sandboxID`) and `crictl inspectp` (`status`) print,
/// the fields read here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct CrictlInspect {
    /// `status`.
    #[serde(default)]
    pub status: CrictlStatus,
    /// `info` (verbose output only).
    #[serde(default)]
    pub info: CrictlInfo,
}

/// `status` of a container or pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct CrictlStatus {
    /// `status.metadata`.
    #[serde(default)]
    pub metadata: CrictlMetadata,
    /// `status.image` (containers).
    #[serde(default)]
    pub image: CrictlImage,
    /// `status.labels`.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub labels: BTreeMap<String, String>,
}

/// `status.metadata`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct CrictlMetadata {
    /// The container's (or pod's) name.
    #[serde(default)]
    pub name: String,
}

/// `status.image`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct CrictlImage {
    /// The image reference.
    #[serde(default)]
    pub image: String,
}

/// `info`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct CrictlInfo {
    /// `info.sandboxID`.
    #[serde(rename = "sandboxID", default)]
    pub sandbox_id: String,
}

/// Parses `crictl inspect` / `crictl inspectp` output.
pub fn parse_crictl_inspect(body: &[u8]) -> Result<CrictlInspect, DecodeError> {
    Ok(serde_json::from_slice(body)?)
}

/// Runs `program args` and decodes its output with `parse`.
fn run<T>(
    cli: &RuntimeCli,
    args: &[&str],
    timeout: Duration,
    parse: impl FnOnce(&[u8]) -> Result<T, DecodeError>,
) -> Result<T> {
    let out = run_with_timeout(&cli.program, args, timeout)?;
    parse(&out).map_err(|reason| LookupError::Decode {
        socket: cli.program.clone(),
        path: args.first().copied().unwrap_or_default().to_owned(),
        reason,
    })
}

/// The metadata of container `id` (64 hex digits) from `cli`. A CLI that fails (unknown
/// container, runtime down) is an error; the caller treats all alike.
pub fn lookup(cli: &RuntimeCli, id: &str, timeout: Duration) -> Result<Option<ContainerMeta>> {
    if !is_id_like(id) {
        return Ok(None);
    }
    match cli.kind {
        RuntimeKind::Docker | RuntimeKind::Isula => {
            let inspect = |id: &str| run(cli, &["inspect", id], timeout, parse_docker_inspect);
            let Some(container) = inspect(id)? else {
                return Ok(None);
            };
            let mut meta = container.meta();
            if let Some(sandbox) = container.sandbox_id().filter(|s| *s != id && is_id_like(s)) {
                if let Ok(Some(sandbox)) = inspect(sandbox) {
                    meta.merge_pod(sandbox.meta());
                }
            }
            Ok(Some(meta))
        }
        RuntimeKind::Crictl => {
            let c = run(
                cli,
                &["inspect", "-o", "json", id],
                timeout,
                parse_crictl_inspect,
            )?;
            let s = &c.status;
            let mut meta =
                ContainerMeta::from_labels(&s.metadata.name, &s.image.image, s.labels.clone());
            let sandbox = c.info.sandbox_id.as_str();
            if is_id_like(sandbox) {
                let args = ["inspectp", "-o", "json", sandbox];
                if let Ok(pod) = run(cli, &args, timeout, parse_crictl_inspect) {
                    let labels = pod.status.labels;
                    meta.merge_pod(ContainerMeta::from_labels("", "", labels));
                }
            }
            Ok(Some(meta))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimmed `crictl inspect -o json` of a containerd CRI container.
    const INSPECT: &str = r#"{"status":{"id":"0123","metadata":{"attempt":0,"name":"app"},
      "state":"CONTAINER_RUNNING","image":{"annotations":{},"image":"docker.io/library/busybox:1.36"},
      "imageRef":"sha256:00","labels":{"io.kubernetes.container.name":"app",
      "io.kubernetes.pod.name":"web-1","io.kubernetes.pod.namespace":"prod"},"annotations":{}},
      "info":{"sandboxID":"5b1fe0","pid":4242}}"#;

    #[test]
    fn crictl_inspect_gives_name_image_labels_and_sandbox() {
        let c = parse_crictl_inspect(INSPECT.as_bytes()).unwrap();
        assert_eq!(c.status.metadata.name, "app");
        assert_eq!(c.status.image.image, "docker.io/library/busybox:1.36");
        assert_eq!(c.status.labels["io.kubernetes.pod.name"], "web-1");
        assert_eq!(c.info.sandbox_id, "5b1fe0");
        let pod = parse_crictl_inspect(
            br#"{"status":{"metadata":{"name":"web-1","uid":"u"},"labels":{"app":"web"}}}"#,
        )
        .unwrap();
        assert_eq!(pod.status.labels["app"], "web");
        assert_eq!(pod.info, CrictlInfo::default());
        assert!(parse_crictl_inspect(b"FATA[0000] no such container").is_err());
    }

    #[test]
    fn a_cli_that_fails_is_an_error_and_ids_are_checked() {
        let cli = RuntimeCli {
            kind: RuntimeKind::Docker,
            program: "/bin/false".into(),
        };
        let id = "ab".repeat(32);
        assert!(lookup(&cli, &id, Duration::from_secs(5)).is_err());
        assert!(lookup(&cli, "x;y", Duration::from_secs(5))
            .unwrap()
            .is_none());
    }
}
