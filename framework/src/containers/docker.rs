//! Docker Engine's `GET /containers/<id>/json` over `/var/run/docker.sock` (HTTP/1.1), and the
//! inspect document it returns (also what `docker inspect` and iSulad print).
//!
//! Under cri-dockerd (and iSulad's CRI) the pod's labels are on the sandbox (pause) container,
//! named by the container's `io.kubernetes.sandbox.id` label.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::error::{DecodeError, LookupError, Result};
use super::transport::http1_get;
use super::{with_sandbox, ContainerMeta, Inspected};

/// Where cri-dockerd records the sandbox a container belongs to.
pub const SANDBOX_ID_LABEL: &str = "io.kubernetes.sandbox.id";

/// The fields of a Docker inspect document read here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct DockerContainer {
    /// `Name`: `/name` (Docker) or `name` (iSulad).
    #[serde(rename = "Name", default)]
    pub name: String,
    /// `Config`.
    #[serde(rename = "Config", default)]
    pub config: DockerConfig,
}

/// The `Config` object of an inspect document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct DockerConfig {
    /// `Config.Image`: the image as the user named it.
    #[serde(rename = "Image", default)]
    pub image: String,
    /// `Config.Labels` (`null` when there are none).
    #[serde(rename = "Labels", default, deserialize_with = "null_as_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Reads a map that may be `null`.
pub(super) fn null_as_empty<'de, D>(d: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Ok(Option::<BTreeMap<String, String>>::deserialize(d)?.unwrap_or_default())
}

/// Parses an inspect document: one object (the API), or an array of them (the CLIs; the
/// first is taken, `None` if empty).
pub fn parse_docker_inspect(body: &[u8]) -> Result<Option<DockerContainer>, DecodeError> {
    let is_array = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    if is_array {
        let many: Vec<DockerContainer> = serde_json::from_slice(body)?;
        return Ok(many.into_iter().next());
    }
    Ok(Some(serde_json::from_slice(body)?))
}

impl Inspected for DockerContainer {
    fn meta(&self) -> ContainerMeta {
        DockerContainer::meta(self)
    }

    fn sandbox(&self) -> Option<String> {
        self.sandbox_id().map(str::to_owned)
    }
}

impl DockerContainer {
    /// The metadata it gives.
    pub fn meta(&self) -> ContainerMeta {
        ContainerMeta::from_labels(&self.name, &self.config.image, self.config.labels.clone())
    }

    /// Its sandbox's id, when it runs in a pod.
    pub fn sandbox_id(&self) -> Option<&str> {
        self.config.labels.get(SANDBOX_ID_LABEL).map(String::as_str)
    }
}

/// Reads container `id` from the Docker Engine on `socket`; `None` if unknown.
pub async fn inspect(
    socket: &Path,
    id: &str,
    timeout: Duration,
) -> Result<Option<DockerContainer>> {
    let path = format!("/containers/{id}/json");
    let Some(body) = http1_get(socket, &path, timeout).await? else {
        return Ok(None);
    };
    parse_docker_inspect(&body).map_err(|reason| LookupError::Decode {
        socket: socket.to_path_buf(),
        path,
        reason,
    })
}

/// The metadata of container `id` from Docker, its sandbox's labels merged in.
pub async fn lookup(socket: &Path, id: &str, timeout: Duration) -> Result<Option<ContainerMeta>> {
    with_sandbox(id, |id| async move { inspect(socket, &id, timeout).await }).await
}

/// Whether `s` may go into a request path: hex digits only (ids, never names).
pub(super) fn is_id_like(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimmed from Docker 20.10's answer for a cri-dockerd container.
    const INSPECT: &str = r#"{"Id":"1a8168be0ceb4253bf29744729f118975401ba5bddbc4c8a34e904606a0229f5",
      "Created":"2026-12-07T23:50:11.842413171Z","Path":"/bin/sleep","Args":["30"],
      "State":{"Status":"running","Running":true,"Pid":11724},
      "Image":"sha256:aec4929319377ac5853460687b936d69e1d3a31d14db31be5828816e97ea7007",
      "Name":"/k8s_app_web-1_prod_3f1e6a4c-9b2d-4e8f-a1b2-0123456789ab_0",
      "Config":{"Hostname":"1a8168be0ceb","Env":null,"Cmd":["/bin/sleep","30"],
        "Image":"busybox:local","Labels":{"io.kubernetes.container.name":"app",
        "io.kubernetes.pod.name":"web-1","io.kubernetes.pod.namespace":"prod",
        "io.kubernetes.pod.uid":"3f1e6a4c-9b2d-4e8f-a1b2-0123456789ab",
        "io.kubernetes.sandbox.id":"5b1fe0"}}}"#;

    #[test]
    fn an_api_answer_gives_name_image_pod_and_sandbox() {
        let c = parse_docker_inspect(INSPECT.as_bytes()).unwrap().unwrap();
        assert_eq!(c.sandbox_id(), Some("5b1fe0"));
        let m = c.meta();
        assert_eq!(m.name.as_deref(), Some("app"));
        assert_eq!(m.image.as_deref(), Some("busybox:local"));
        assert_eq!(m.pod_name.as_deref(), Some("web-1"));
        assert_eq!(m.pod_namespace.as_deref(), Some("prod"));
        assert_eq!(
            m.pod_uid.as_deref(),
            Some("3f1e6a4c-9b2d-4e8f-a1b2-0123456789ab")
        );
        assert_eq!(m.labels.len(), 5);
    }

    #[test]
    fn cli_arrays_null_labels_and_plain_containers() {
        let c =
            parse_docker_inspect(br#"[{"Name":"/web","Config":{"Image":"nginx","Labels":null}}]"#)
                .unwrap()
                .unwrap();
        let m = c.meta();
        assert_eq!(m.name.as_deref(), Some("web"));
        assert_eq!(m.image.as_deref(), Some("nginx"));
        assert!(m.labels.is_empty() && m.pod_name.is_none());
        assert_eq!(c.sandbox_id(), None);
        assert_eq!(parse_docker_inspect(b"[]").unwrap(), None);
        assert_eq!(
            parse_docker_inspect(b"{}").unwrap(),
            Some(DockerContainer::default())
        );
        assert!(parse_docker_inspect(b"Error: No such object").is_err());
        assert!(parse_docker_inspect(br#"{"Config":{"Labels":{"a":1}}}"#).is_err());
    }

    #[test]
    fn only_hex_ids_go_into_paths() {
        assert!(is_id_like("5b1fe0"));
        assert!(!is_id_like("../x"));
        assert!(!is_id_like(""));
    }
}
