//! Container and pod metadata from the container runtimes: what a container id stands for
//! (its name, image, pod), used to label series and to resolve `container_name` snoopers.

use std::collections::BTreeMap;

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

/// Looks containers up by id.
pub trait ContainerLookup: Send + Sync {
    /// The metadata of the container with this full 64-hex lowercase id, or `None` when no
    /// runtime knows it (or none is running). May block up to the runtimes' timeout.
    fn lookup(&self, full_id: &str) -> Option<ContainerMeta>;
}
