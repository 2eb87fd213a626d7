//! containerd's `containerd.services.containers.v1.Containers/Get` over its gRPC socket, in
//! the `k8s.io` (CRI) and `default` namespaces; hand-written messages with only the fields read.
//!
//! A CRI container's labels hold the `io.kubernetes.*` names; its pod's labels are on the
//! sandbox (pause) container, whose id is in the container's `io.kubernetes.cri.sandbox-id`
//! label or, in the containerd releases that keep it only there, its OCI spec's annotations.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use prost::Message;

use super::error::{DecodeError, LookupError, Result};
use super::{grpc, with_sandbox, ContainerMeta, Inspected};

/// The gRPC method that reads one container's record.
pub const GET_PATH: &str = "/containerd.services.containers.v1.Containers/Get";
/// The metadata header that selects the containerd namespace.
const NAMESPACE_HEADER: &str = "containerd-namespace";
/// The namespaces searched, in order: the CRI plugin's, then `ctr`'s and Docker-less tools'.
pub const NAMESPACES: [&str; 2] = ["k8s.io", "default"];
/// Where the CRI plugin records the sandbox a container belongs to.
pub const SANDBOX_ID_KEY: &str = "io.kubernetes.cri.sandbox-id";

/// `GetContainerRequest { string id = 1; }`.
#[derive(Clone, PartialEq, Message)]
pub struct GetContainerRequest {
    /// The container id.
    #[prost(string, tag = "1")]
    pub id: String,
}

/// `GetContainerResponse { Container container = 1; }`.
#[derive(Clone, PartialEq, Message)]
pub struct GetContainerResponse {
    /// The container's record.
    #[prost(message, optional, tag = "1")]
    pub container: Option<ContainerdContainer>,
}

/// The fields of containerd's `Container` message read here (the others are skipped).
#[derive(Clone, PartialEq, Message)]
pub struct ContainerdContainer {
    /// `id = 1`: the container id (its name in containerd).
    #[prost(string, tag = "1")]
    pub id: String,
    /// `labels = 2`.
    #[prost(btree_map = "string, string", tag = "2")]
    pub labels: BTreeMap<String, String>,
    /// `image = 3`: the image reference.
    #[prost(string, tag = "3")]
    pub image: String,
    /// `spec = 5`: the OCI runtime spec, JSON in a `google.protobuf.Any`.
    #[prost(message, optional, tag = "5")]
    pub spec: Option<AnyMessage>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
pub struct AnyMessage {
    /// `type_url = 1`.
    #[prost(string, tag = "1")]
    pub type_url: String,
    /// `value = 2`.
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// Decodes a `GetContainerResponse` message; `None` when it holds no container.
pub fn parse_get_container_response(
    message: &[u8],
) -> Result<Option<ContainerdContainer>, DecodeError> {
    Ok(GetContainerResponse::decode(message)?.container)
}

impl Inspected for ContainerdContainer {
    fn meta(&self) -> ContainerMeta {
        ContainerdContainer::meta(self)
    }

    fn sandbox(&self) -> Option<String> {
        self.sandbox_id()
    }
}

impl ContainerdContainer {
    /// The metadata it gives: name from `io.kubernetes.container.name`, else the id.
    pub fn meta(&self) -> ContainerMeta {
        ContainerMeta::from_labels(&self.id, &self.image, self.labels.clone())
    }

    /// The id of its pod's sandbox container: the label, else the spec annotation.
    pub fn sandbox_id(&self) -> Option<String> {
        if let Some(id) = self.labels.get(SANDBOX_ID_KEY) {
            return Some(id.clone());
        }
        let spec = self.spec.as_ref()?;
        #[derive(serde::Deserialize)]
        struct Spec {
            #[serde(default)]
            annotations: BTreeMap<String, String>,
        }
        let mut spec: Spec = serde_json::from_slice(&spec.value).ok()?;
        spec.annotations.remove(SANDBOX_ID_KEY)
    }
}

/// Reads container `id` in `namespace` on `socket`; `None` if containerd does not know it.
pub async fn get(
    socket: &Path,
    namespace: &str,
    id: &str,
    timeout: Duration,
) -> Result<Option<ContainerdContainer>> {
    let request = GetContainerRequest { id: id.to_owned() }.encode_to_vec();
    let Some(message) = grpc::unary(
        socket,
        GET_PATH,
        &[(NAMESPACE_HEADER, namespace)],
        &request,
        timeout,
    )
    .await?
    else {
        return Ok(None);
    };
    parse_get_container_response(&message).map_err(|reason| LookupError::Decode {
        socket: socket.to_path_buf(),
        path: GET_PATH.to_owned(),
        reason,
    })
}

/// The metadata of container `id` from the containerd on `socket`, searching [`NAMESPACES`];
/// its sandbox's labels merged in when it has one (a sandbox that cannot be read is left out).
pub async fn lookup(socket: &Path, id: &str, timeout: Duration) -> Result<Option<ContainerMeta>> {
    for namespace in NAMESPACES {
        let get = |id: String| async move { get(socket, namespace, &id, timeout).await };
        if let Some(meta) = with_sandbox(id, get).await? {
            return Ok(Some(meta));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A `GetContainerResponse` as containerd 1.6 encodes it, written out field by field
    /// (with fields this client skips: runtime = 4, snapshotter = 6, created_at = 8).
    fn captured_response() -> Vec<u8> {
        fn field(tag: u32, body: &[u8]) -> Vec<u8> {
            let mut out = vec![(tag << 3 | 2) as u8];
            prost::encoding::encode_varint(body.len() as u64, &mut out);
            out.extend_from_slice(body);
            out
        }
        fn entry(k: &str, v: &str) -> Vec<u8> {
            [field(1, k.as_bytes()), field(2, v.as_bytes())].concat()
        }
        let spec = br#"{"ociVersion":"1.0.2","annotations":{"io.kubernetes.cri.sandbox-id":"5b1f","io.kubernetes.cri.container-type":"container"}}"#;
        let container = [
            field(1, b"0123abcd"),
            field(2, &entry("io.kubernetes.pod.name", "web-1")),
            field(2, &entry("io.kubernetes.container.name", "app")),
            field(3, b"docker.io/library/busybox:1.36"),
            field(4, &field(1, b"io.containerd.runc.v2")),
            field(
                5,
                &[
                    field(1, b"types.containerd.io/opencontainers/runtime-spec/1/Spec"),
                    field(2, spec),
                ]
                .concat(),
            ),
            field(6, b"overlayfs"),
            field(8, &[0x08, 0x96, 0x01]),
        ]
        .concat();
        field(1, &container)
    }

    #[test]
    fn a_get_response_decodes_to_name_image_labels_and_sandbox() {
        let c = parse_get_container_response(&captured_response())
            .unwrap()
            .unwrap();
        assert_eq!(c.id, "0123abcd");
        assert_eq!(c.image, "docker.io/library/busybox:1.36");
        assert_eq!(c.labels.len(), 2);
        assert_eq!(c.sandbox_id().as_deref(), Some("5b1f"));
        let m = c.meta();
        assert_eq!(m.name.as_deref(), Some("app"));
        assert_eq!(m.pod_name.as_deref(), Some("web-1"));
        assert_eq!(m.image.as_deref(), Some("docker.io/library/busybox:1.36"));
    }

    #[test]
    fn the_sandbox_label_wins_over_the_spec_and_plain_containers_have_none() {
        let mut c = parse_get_container_response(&captured_response())
            .unwrap()
            .unwrap();
        c.labels.insert(SANDBOX_ID_KEY.into(), "fromlabel".into());
        assert_eq!(c.sandbox_id().as_deref(), Some("fromlabel"));
        let plain = ContainerdContainer {
            id: "x".into(),
            ..Default::default()
        };
        assert_eq!(plain.sandbox_id(), None);
        assert_eq!(plain.meta().name.as_deref(), Some("x"));
    }

    #[test]
    fn requests_encode_the_id_and_bad_bytes_are_errors() {
        let req = GetContainerRequest { id: "ab".into() }.encode_to_vec();
        assert_eq!(req, b"\x0a\x02ab");
        assert_eq!(parse_get_container_response(b"").unwrap(), None);
        assert!(parse_get_container_response(b"\x0a\x05ab").is_err());
        assert!(parse_get_container_response(b"\xff").is_err());
    }

    proptest! {
        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(Some(c)) = parse_get_container_response(&bytes) {
                let _ = c.sandbox_id();
                let _ = c.meta();
            }
        }
    }
}
