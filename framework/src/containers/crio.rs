//! CRI-O's inspect endpoint `GET /containers/<id>` over `/var/run/crio/crio.sock` (HTTP/1.1):
//! `{"name", "image", "labels", "annotations", "sandbox", ...}` (CRI-O's `ContainerInfo`).
//! Its `name` is the kubelet's `k8s_<container>_<pod>_<namespace>_<uid>_<attempt>`; the
//! `io.kubernetes.container.name` label gives the short name. The pod's labels are those of
//! the sandbox, read the same way by the `sandbox` id.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::docker::null_as_empty;
use super::error::{DecodeError, LookupError, Result};
use super::transport::http1_get;
use super::{with_sandbox, ContainerMeta, Inspected};

/// The fields of CRI-O's `ContainerInfo` read here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct CrioContainer {
    /// `name`.
    #[serde(default)]
    pub name: String,
    /// `image`.
    #[serde(default)]
    pub image: String,
    /// `labels`.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub labels: BTreeMap<String, String>,
    /// `sandbox`: the pod sandbox's id.
    #[serde(default)]
    pub sandbox: String,
}

/// Parses CRI-O's inspect answer.
pub fn parse_crio_inspect(body: &[u8]) -> Result<CrioContainer, DecodeError> {
    Ok(serde_json::from_slice(body)?)
}

impl CrioContainer {
    /// The metadata it gives.
    pub fn meta(&self) -> ContainerMeta {
        ContainerMeta::from_labels(&self.name, &self.image, self.labels.clone())
    }
}

impl Inspected for CrioContainer {
    fn meta(&self) -> ContainerMeta {
        CrioContainer::meta(self)
    }

    fn sandbox(&self) -> Option<String> {
        Some(self.sandbox.clone())
    }
}

async fn inspect(socket: &Path, id: &str, timeout: Duration) -> Result<Option<CrioContainer>> {
    let path = format!("/containers/{id}");
    let Some(body) = http1_get(socket, &path, timeout).await? else {
        return Ok(None);
    };
    parse_crio_inspect(&body)
        .map(Some)
        .map_err(|reason| LookupError::Decode {
            socket: socket.to_path_buf(),
            path,
            reason,
        })
}

/// The metadata of container `id` from CRI-O, its sandbox's labels merged in.
pub async fn lookup(socket: &Path, id: &str, timeout: Duration) -> Result<Option<ContainerMeta>> {
    with_sandbox(id, |id| async move { inspect(socket, &id, timeout).await }).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of CRI-O 1.2x's answer (crio's `types.ContainerInfo`).
    const INSPECT: &str = r#"{"name":"k8s_app_web-1_prod_3f1e6a4c-9b2d-4e8f-a1b2-0123456789ab_0",
      "pid":4242,"image":"docker.io/library/nginx:1.25","image_ref":"docker.io/library/nginx@sha256:00",
      "created_time":1700000000000000000,
      "labels":{"io.kubernetes.container.name":"app","io.kubernetes.pod.name":"web-1",
        "io.kubernetes.pod.namespace":"prod","io.kubernetes.pod.uid":"3f1e6a4c-9b2d-4e8f-a1b2-0123456789ab"},
      "annotations":{"io.kubernetes.container.hash":"1"},
      "crio_annotations":{"io.kubernetes.cri-o.ContainerType":"container"},
      "log_path":"/var/log/pods/x.log","root":"/var/lib/containers/storage/overlay/x/merged",
      "sandbox":"9af0c2","ip_addresses":["10.0.0.5"],"host_network":false}"#;

    #[test]
    fn an_inspect_answer_gives_name_image_pod_and_sandbox() {
        let c = parse_crio_inspect(INSPECT.as_bytes()).unwrap();
        assert_eq!(c.sandbox, "9af0c2");
        let m = c.meta();
        assert_eq!(m.name.as_deref(), Some("app"));
        assert_eq!(m.image.as_deref(), Some("docker.io/library/nginx:1.25"));
        assert_eq!(m.pod_name.as_deref(), Some("web-1"));
        assert_eq!(m.pod_namespace.as_deref(), Some("prod"));
        assert_eq!(m.labels.len(), 4);
    }

    #[test]
    fn missing_fields_are_absent_and_garbage_is_an_error() {
        let c = parse_crio_inspect(br#"{"name":"plain","labels":null}"#).unwrap();
        assert_eq!(c.meta().name.as_deref(), Some("plain"));
        assert!(c.labels.is_empty() && c.sandbox.is_empty());
        assert!(parse_crio_inspect(b"can't find the container with id x").is_err());
        assert!(parse_crio_inspect(br#"{"name":1}"#).is_err());
    }
}
