//! Container and pod metadata from the container runtimes: what a container id stands for
//! (its name, image, pod), used to label series and to resolve `container_name` snoopers.
//!
//! [`RuntimeDirectory`] asks the runtimes' API sockets in order — containerd (gRPC, namespaces
//! `k8s.io` then `default`), Docker Engine (HTTP), CRI-O (HTTP), iSulad (gRPC) — then the
//! installed CLIs (`docker`, `isula`, `crictl` inspect). A runtime that is not running gives no
//! names, not errors. What each runtime gives is in `docs/containers.md`.

mod cli;
mod containerd;
mod crio;
mod directory;
mod docker;
mod error;
pub mod grpc;
mod isulad;
mod transport;

use std::collections::BTreeMap;

pub use cli::{parse_crictl_inspect, CrictlInspect};
pub use containerd::{parse_get_container_response, ContainerdContainer};
pub use crio::{parse_crio_inspect, CrioContainer};
pub use directory::{RuntimeDirectory, RuntimeName, RuntimeSockets, DEFAULT_LOOKUP_TIMEOUT};
pub use docker::{parse_docker_inspect, DockerContainer};
pub use error::{DecodeError, LookupError, Result};
pub use isulad::parse_inspect_container_response;

/// The container-name label the kubelet sets on every container (CRI).
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// The pod-name label.
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
/// The pod-namespace label.
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// The pod-uid label.
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";

/// What the runtime that runs a container says of it. Values a runtime does not know are
/// `None` (and left out of labels).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerMeta {
    /// The container's name (Kubernetes: the container's name in its pod).
    pub name: Option<String>,
    /// The image the container runs.
    pub image: Option<String>,
    /// The pod's name (`io.kubernetes.pod.name`).
    pub pod_name: Option<String>,
    /// The pod's namespace (`io.kubernetes.pod.namespace`).
    pub pod_namespace: Option<String>,
    /// The pod's uid, dashed lowercase (`io.kubernetes.pod.uid`).
    pub pod_uid: Option<String>,
    /// The container's labels, and its pod's where the runtime keeps them apart; what
    /// `pod_labels` copies from.
    pub labels: BTreeMap<String, String>,
}

impl ContainerMeta {
    /// The metadata of a container the runtime calls `runtime_name` (Docker's leading `/`
    /// dropped), running `image`, with `labels`: the Kubernetes labels, where present, give the
    /// container's name in its pod and the pod. Empty strings count as absent.
    pub fn from_labels(
        runtime_name: &str,
        image: &str,
        labels: BTreeMap<String, String>,
    ) -> ContainerMeta {
        let label = |key: &str| {
            labels
                .get(key)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        ContainerMeta {
            name: label(LABEL_CONTAINER_NAME)
                .or_else(|| non_empty(runtime_name.trim_start_matches('/'))),
            image: non_empty(image),
            pod_name: label(LABEL_POD_NAME),
            pod_namespace: label(LABEL_POD_NAMESPACE),
            pod_uid: label(LABEL_POD_UID).and_then(|u| crate::snooper::normalise_pod_id(&u)),
            labels,
        }
    }

    /// Adds the labels of the container's pod (its sandbox) that the container does not set
    /// itself, and the pod fields the container lacked.
    pub fn merge_pod(&mut self, sandbox: ContainerMeta) {
        for (key, value) in sandbox.labels {
            self.labels.entry(key).or_insert(value);
        }
        if self.pod_name.is_none() {
            self.pod_name = sandbox.pod_name;
        }
        if self.pod_namespace.is_none() {
            self.pod_namespace = sandbox.pod_namespace;
        }
        if self.pod_uid.is_none() {
            self.pod_uid = sandbox.pod_uid;
        }
    }
}

/// A runtime's answer about one container.
trait Inspected {
    /// The metadata it gives.
    fn meta(&self) -> ContainerMeta;
    /// The id of its pod's sandbox container, when it runs in a pod.
    fn sandbox(&self) -> Option<String>;
}

/// The metadata of container `id` as `inspect` finds it, with the labels of its pod's sandbox
/// (found with `inspect` too) merged in; a sandbox that cannot be read is left out.
async fn with_sandbox<C, F>(
    id: &str,
    inspect: impl Fn(String) -> F,
) -> Result<Option<ContainerMeta>>
where
    C: Inspected,
    F: std::future::Future<Output = Result<Option<C>>>,
{
    let Some(container) = inspect(id.to_owned()).await? else {
        return Ok(None);
    };
    let mut meta = container.meta();
    if let Some(sandbox) = container
        .sandbox()
        .filter(|s| s != id && docker::is_id_like(s))
    {
        if let Ok(Some(sandbox)) = inspect(sandbox).await {
            meta.merge_pod(sandbox.meta());
        }
    }
    Ok(Some(meta))
}

/// Looks containers up by id.
pub trait ContainerLookup: Send + Sync {
    /// The metadata of the container with this full 64-hex lowercase id, or `None` when no
    /// runtime knows it (or none is running). May block up to the runtimes' timeout.
    fn lookup(&self, full_id: &str) -> Option<ContainerMeta>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn kubernetes_labels_name_the_container_and_its_pod() {
        let l = labels(&[
            (LABEL_CONTAINER_NAME, "app"),
            (LABEL_POD_NAME, "web-1"),
            (LABEL_POD_NAMESPACE, "prod"),
            (LABEL_POD_UID, "3F1E6A4C9B2D4E8FA1B20123456789AB"),
        ]);
        let m = ContainerMeta::from_labels("/k8s_app_web-1", "busybox:1", l.clone());
        assert_eq!(m.name.as_deref(), Some("app"));
        assert_eq!(m.image.as_deref(), Some("busybox:1"));
        assert_eq!(m.pod_name.as_deref(), Some("web-1"));
        assert_eq!(m.pod_namespace.as_deref(), Some("prod"));
        assert_eq!(
            m.pod_uid.as_deref(),
            Some("3f1e6a4c-9b2d-4e8f-a1b2-0123456789ab")
        );
        assert_eq!(m.labels, l);
    }

    #[test]
    fn without_kubernetes_labels_the_runtime_name_is_kept() {
        let m = ContainerMeta::from_labels("/web", "", labels(&[(LABEL_POD_UID, "bad")]));
        assert_eq!(m.name.as_deref(), Some("web"));
        assert_eq!(m.image, None);
        assert_eq!(m.pod_uid, None);
        assert_eq!(
            ContainerMeta::from_labels("", "", BTreeMap::new()),
            ContainerMeta::default()
        );
    }

    #[test]
    fn pod_labels_complete_the_container_labels() {
        let mut m = ContainerMeta::from_labels(
            "c",
            "i",
            labels(&[("io.cri-containerd.kind", "container"), ("tier", "own")]),
        );
        let sandbox = ContainerMeta::from_labels(
            "s",
            "pause",
            labels(&[
                ("io.cri-containerd.kind", "sandbox"),
                ("app", "web"),
                (LABEL_POD_NAME, "web-1"),
            ]),
        );
        m.merge_pod(sandbox);
        assert_eq!(m.labels["io.cri-containerd.kind"], "container");
        assert_eq!(m.labels["app"], "web");
        assert_eq!(m.labels["tier"], "own");
        assert_eq!(m.pod_name.as_deref(), Some("web-1"));
        assert_eq!(m.name.as_deref(), Some("c"));
    }
}
