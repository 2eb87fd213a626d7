//! A minimal unary gRPC client over HTTP/2 on a unix socket (containerd, iSulad): one request
//! message out, one response message back, the status from the trailers. No compression, no
//! streaming, no TLS — what the runtimes' local sockets need and nothing more.

use std::path::Path;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::Full;
use hyper::HeaderMap;
use hyper_util::rt::TokioExecutor;

use super::error::{DecodeError, LookupError, Result};
use super::transport::{connect, deadline, read_body};

/// Bytes before each message: the compressed flag and the big-endian length.
const PREFIX_LEN: usize = 5;
/// gRPC status `OK`.
const STATUS_OK: u32 = 0;
/// gRPC status `NOT_FOUND`: the runtime does not know the container.
pub const STATUS_NOT_FOUND: u32 = 5;

/// `message` with its gRPC length prefix (uncompressed).
pub fn encode_frame(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(PREFIX_LEN + message.len());
    out.put_u8(0);
    // Messages we send are a container id and a few bytes of protobuf.
    out.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    out.put_slice(message);
    out.freeze()
}

/// The one message of a unary response body.
pub fn decode_frame(body: &[u8]) -> Result<&[u8], DecodeError> {
    let Some((prefix, rest)) = body.split_first_chunk::<PREFIX_LEN>() else {
        return Err(DecodeError::Framing("body shorter than the 5-byte prefix"));
    };
    if prefix[0] != 0 {
        return Err(DecodeError::Framing(
            "compressed message (none was accepted)",
        ));
    }
    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    match rest.len().cmp(&len) {
        std::cmp::Ordering::Less => Err(DecodeError::Framing("message cut short")),
        std::cmp::Ordering::Greater => Err(DecodeError::Framing("more than one message")),
        std::cmp::Ordering::Equal => Ok(rest),
    }
}

/// The `grpc-status` and `grpc-message` of a response: from the trailers, or from the headers
/// of a trailers-only response. `None` when neither has a (numeric) status.
pub fn status_of(headers: &HeaderMap, trailers: Option<&HeaderMap>) -> Option<(u32, String)> {
    [trailers, Some(headers)]
        .into_iter()
        .flatten()
        .find_map(|h| {
            let code = h.get("grpc-status")?.to_str().ok()?.trim().parse().ok()?;
            let message = h
                .get("grpc-message")
                .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
                .unwrap_or_default();
            Some((code, message))
        })
}

/// Calls the unary method `path` (`/package.Service/Method`) on `socket` with the encoded
/// protobuf `request` and the metadata `headers`. The encoded response message, or `None` when
/// the runtime answers `NOT_FOUND`. Everything, connecting included, within `timeout`.
pub async fn unary(
    socket: &Path,
    path: &str,
    headers: &[(&'static str, &str)],
    request: &[u8],
    timeout: Duration,
) -> Result<Option<Bytes>> {
    deadline(socket, timeout, async {
        let http_err = |source| LookupError::Http {
            socket: socket.to_path_buf(),
            source,
        };
        let io = connect(socket).await?;
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(http_err)?;
        let conn = tokio::spawn(conn);
        let mut builder = hyper::Request::post(format!("http://localhost{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("grpc-timeout", format!("{}m", timeout.as_millis().max(1)));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder
            .body(Full::new(encode_frame(request)))
            .map_err(|_| LookupError::InvalidRequest {
                socket: socket.to_path_buf(),
                path: path.to_owned(),
            })?;
        let response = sender.send_request(request).await.map_err(http_err)?;
        let result = async {
            let http_status = response.status().as_u16();
            if http_status != 200 {
                return Err(LookupError::Status {
                    socket: socket.to_path_buf(),
                    path: path.to_owned(),
                    status: http_status,
                });
            }
            let (parts, body) = response.into_parts();
            let body = read_body(socket, path, body).await?;
            match status_of(&parts.headers, body.trailers.as_ref()) {
                Some((STATUS_OK, _)) => {}
                Some((STATUS_NOT_FOUND, _)) => return Ok(None),
                Some((code, message)) => {
                    return Err(LookupError::Grpc {
                        socket: socket.to_path_buf(),
                        path: path.to_owned(),
                        code,
                        message,
                    })
                }
                None => {
                    return Err(LookupError::Decode {
                        socket: socket.to_path_buf(),
                        path: path.to_owned(),
                        reason: DecodeError::Framing("no grpc-status"),
                    })
                }
            }
            decode_frame(&body.data)
                .map(|m| Some(body.data.slice_ref(m)))
                .map_err(|reason| LookupError::Decode {
                    socket: socket.to_path_buf(),
                    path: path.to_owned(),
                    reason,
                })
        }
        .await;
        conn.abort();
        result
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_frame_is_flag_length_message() {
        assert_eq!(
            &encode_frame(b"\x0a\x02ab")[..],
            b"\x00\x00\x00\x00\x04\x0a\x02ab"
        );
        assert_eq!(&encode_frame(b"")[..], b"\x00\x00\x00\x00\x00");
    }

    #[test]
    fn decoding_takes_exactly_one_uncompressed_message() {
        assert_eq!(decode_frame(b"\x00\x00\x00\x00\x03abc").unwrap(), b"abc");
        assert_eq!(decode_frame(b"\x00\x00\x00\x00\x00").unwrap(), b"");
        for (body, why) in [
            (&b""[..], "shorter"),
            (b"\x00\x00\x00", "shorter"),
            (b"\x01\x00\x00\x00\x01a", "compressed"),
            (b"\x00\x00\x00\x00\x04abc", "cut short"),
            (b"\x00\x00\x00\x00\x02abc", "more than one"),
            (b"\x00\xff\xff\xff\xffabc", "cut short"),
        ] {
            let err = decode_frame(body).unwrap_err();
            assert!(err.to_string().contains(why), "{body:?}: {err}");
        }
    }

    #[test]
    fn status_comes_from_trailers_else_headers() {
        let mut headers = HeaderMap::new();
        let mut trailers = HeaderMap::new();
        assert_eq!(status_of(&headers, Some(&trailers)), None);
        headers.insert("grpc-status", "5".parse().unwrap());
        headers.insert("grpc-message", "container \"x\" not found".parse().unwrap());
        assert_eq!(
            status_of(&headers, None),
            Some((5, "container \"x\" not found".into()))
        );
        trailers.insert("grpc-status", "0".parse().unwrap());
        assert_eq!(
            status_of(&headers, Some(&trailers)),
            Some((0, String::new()))
        );
        trailers.insert("grpc-status", "x".parse().unwrap());
        assert_eq!(status_of(&headers, Some(&trailers)).map(|s| s.0), Some(5));
    }

    proptest! {
        #[test]
        fn frames_round_trip(message in proptest::collection::vec(any::<u8>(), 0..512)) {
            let frame = encode_frame(&message);
            prop_assert_eq!(decode_frame(&frame).unwrap(), &message[..]);
        }

        #[test]
        fn decoding_never_panics(body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_frame(&body);
        }
    }
}
