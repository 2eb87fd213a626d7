//! iSulad through its gRPC API on `/var/run/isulad.sock`: `containers.ContainerService/Inspect`,
//! whose answer carries the same inspect JSON as `isula inspect` (Docker's shape: `Name`,
//! `Config.Image`, `Config.Labels`). The gRPC API was chosen over the CLI because this module
//! already speaks gRPC for containerd, and it saves a process per lookup; `isula inspect` stays
//! the fallback (`cli.rs`).

use std::path::Path;
use std::time::Duration;

use prost::Message;

use super::docker::{parse_docker_inspect, DockerContainer};
use super::error::{DecodeError, LookupError, Result};
use super::{grpc, with_sandbox, ContainerMeta};

/// The gRPC method.
pub const INSPECT_PATH: &str = "/containers.ContainerService/Inspect";

/// `InspectContainerRequest { string id = 1; bool bformat = 2; int32 timeout = 3; }`.
#[derive(Clone, PartialEq, Message)]
pub struct InspectContainerRequest {
    /// The container id or name.
    #[prost(string, tag = "1")]
    pub id: String,
    /// Pretty-printed JSON (not wanted).
    #[prost(bool, tag = "2")]
    pub bformat: bool,
    /// Seconds iSulad may take.
    #[prost(int32, tag = "3")]
    pub timeout: i32,
}

/// `InspectContainerResponse { string ContainerJSON = 1; uint32 cc = 2; string errmsg = 3; }`.
#[derive(Clone, PartialEq, Message)]
pub struct InspectContainerResponse {
    /// The inspect document.
    #[prost(string, tag = "1")]
    pub container_json: String,
    /// iSulad's result code: 0 is success.
    #[prost(uint32, tag = "2")]
    pub cc: u32,
    /// The error, when `cc` is not 0.
    #[prost(string, tag = "3")]
    pub errmsg: String,
}

/// Decodes an `InspectContainerResponse`: the container, or `None` when iSulad reports a
/// failure (`cc` ≠ 0: no such container) or an empty document.
pub fn parse_inspect_container_response(
    message: &[u8],
) -> Result<Option<DockerContainer>, DecodeError> {
    let response = InspectContainerResponse::decode(message)?;
    if response.cc != 0 || response.container_json.trim().is_empty() {
        return Ok(None);
    }
    parse_docker_inspect(response.container_json.as_bytes())
}

async fn inspect(socket: &Path, id: &str, timeout: Duration) -> Result<Option<DockerContainer>> {
    let request = InspectContainerRequest {
        id: id.to_owned(),
        bformat: false,
        timeout: i32::try_from(timeout.as_secs().max(1)).unwrap_or(i32::MAX),
    }
    .encode_to_vec();
    let Some(message) = grpc::unary(socket, INSPECT_PATH, &[], &request, timeout).await? else {
        return Ok(None);
    };
    parse_inspect_container_response(&message).map_err(|reason| LookupError::Decode {
        socket: socket.to_path_buf(),
        path: INSPECT_PATH.to_owned(),
        reason,
    })
}

/// The metadata of container `id` from iSulad, its CRI sandbox's labels merged in.
pub async fn lookup(socket: &Path, id: &str, timeout: Duration) -> Result<Option<ContainerMeta>> {
    with_sandbox(id, |id| async move { inspect(socket, &id, timeout).await }).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(json: &str, cc: u32, errmsg: &str) -> Vec<u8> {
        InspectContainerResponse {
            container_json: json.into(),
            cc,
            errmsg: errmsg.into(),
        }
        .encode_to_vec()
    }

    #[test]
    fn a_successful_answer_carries_the_inspect_json() {
        let json = r#"{"Id":"ab","Name":"web","Image":"busybox","Config":{"Image":"busybox:latest","Labels":{"io.kubernetes.pod.name":"p"}}}"#;
        let bytes = response(json, 0, "");
        // Field 1, length-delimited, then the JSON: what iSulad writes.
        assert_eq!(bytes[0], 0x0a);
        let c = parse_inspect_container_response(&bytes).unwrap().unwrap();
        let m = c.meta();
        assert_eq!(m.name.as_deref(), Some("web"));
        assert_eq!(m.image.as_deref(), Some("busybox:latest"));
        assert_eq!(m.pod_name.as_deref(), Some("p"));
    }

    #[test]
    fn failures_are_unknown_containers_and_garbage_is_an_error() {
        let bytes = response("", 1, "Inspect error: No such container:ab");
        assert_eq!(parse_inspect_container_response(&bytes).unwrap(), None);
        assert_eq!(parse_inspect_container_response(b"").unwrap(), None);
        assert!(parse_inspect_container_response(&response("{", 0, "")).is_err());
        assert!(parse_inspect_container_response(b"\x0a\x09").is_err());
        let request = InspectContainerRequest {
            id: "ab".into(),
            bformat: false,
            timeout: 1,
        }
        .encode_to_vec();
        assert_eq!(request, b"\x0a\x02ab\x18\x01");
    }
}
