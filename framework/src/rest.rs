//! The REST transport over the [`ProbeManager`] (`rest_api_server`): `PUT /<probe>` with a
//! `json=` body and `GET /<probe>`, with the original's status codes and texts, plus the fixes:
//! other methods get 405, an oversized body 413, a body not complete within [`BODY_TIMEOUT`]
//! 408 (both close the connection), and nothing a client sends can take the daemon down. The HTTP(S) accept loop is [`crate::server`]; the answers come from [`crate::api`],
//! as those of `gopher-ctl` ([`crate::ctl`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONNECTION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};

use crate::api::{self, ApiError};
use crate::manager::ProbeManager;
use crate::server::{Chunks, Handler};

/// Time a client gets to send a PUT body once its head has arrived (the head has
/// [`crate::server::HEADER_READ_TIMEOUT`]): a client that stalls mid-body is answered 408 and
/// disconnected instead of holding its connection slot and buffer.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the REST API over the probe manager.
pub struct RestApi {
    manager: Arc<ProbeManager>,
}

impl RestApi {
    /// The API of `manager`.
    pub fn new(manager: Arc<ProbeManager>) -> Self {
        RestApi { manager }
    }

    async fn answer(&self, req: Request<Incoming>) -> Result<String, ApiError> {
        // The path is the probe name; the query string is ignored, as by the original.
        let name = req.uri().path().trim_start_matches('/').to_string();
        if name.is_empty() {
            return Err(ApiError::url_not_found());
        }
        match *req.method() {
            Method::GET => self.manager.get(&name).await,
            Method::PUT => {
                let collect = Limited::new(req.into_body(), api::MAX_PUT_BODY).collect();
                let body = tokio::time::timeout(BODY_TIMEOUT, collect)
                    .await
                    .map_err(|_| ApiError {
                        status: 408,
                        message: format!(
                            "request body not received within {} s",
                            BODY_TIMEOUT.as_secs()
                        ),
                    })?
                    .map_err(|e| {
                        if e.is::<http_body_util::LengthLimitError>() {
                            // The original's text, with the status that says what happened.
                            ApiError {
                                status: 413,
                                ..ApiError::body_too_large()
                            }
                        } else {
                            ApiError::bad_request_with(format!("cannot read the request body: {e}"))
                        }
                    })?
                    .to_bytes();
                let json = api::form_decoded(api::strip_json_prefix(&body)?);
                self.manager.put(&name, &json).await?;
                Ok(api::SUCCESS_BODY.to_string())
            }
            _ => Err(ApiError::method_not_allowed()),
        }
    }
}

impl Handler for RestApi {
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Chunks> {
        let (status, body) = match self.answer(req).await {
            Ok(body) => (StatusCode::OK, body),
            Err(e) => (
                StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
                e.body(),
            ),
        };
        let mut resp = Response::new(Chunks::from(Bytes::from(body)));
        *resp.status_mut() = status;
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if matches!(
            status,
            StatusCode::REQUEST_TIMEOUT | StatusCode::PAYLOAD_TOO_LARGE
        ) {
            // The rest of the body is never read: the connection cannot serve another request.
            resp.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        if status == StatusCode::METHOD_NOT_ALLOWED {
            resp.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, PUT"));
        }
        resp
    }
}
