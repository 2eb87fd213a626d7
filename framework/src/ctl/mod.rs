//! The daemon's side of `gopher-ctl`: the socket [`listener`] and [`CtlApi`], which answers
//! its requests from the probe manager the way the REST API does. The wire format and the
//! client live in the `gopher-ctl` package (`gopher_ctl`), which the binary uses alone.

use std::sync::Arc;

use gopher_ctl::CtlRequest;

use crate::api::{self, ApiError};
use crate::egress::http::MetricsEndpoint;
use crate::manager::ProbeManager;

pub mod listener;
#[cfg(test)]
mod tests;

pub use listener::{serve, CtlHandler, CtlListener, CtlServerError};

/// Answers `gopher-ctl`: probe get/set exactly as REST GET/PUT (same bodies, same texts), and
/// the metrics text (non-destructive, as a scrape).
pub struct CtlApi {
    manager: Arc<ProbeManager>,
    metrics: Option<Arc<MetricsEndpoint>>,
}

impl CtlApi {
    /// The gopher-ctl API of `manager`; `metrics` renders `gopher-ctl metric` when the metrics
    /// go to the web server.
    pub fn new(manager: Arc<ProbeManager>, metrics: Option<Arc<MetricsEndpoint>>) -> Self {
        CtlApi { manager, metrics }
    }
}

impl CtlHandler for CtlApi {
    async fn handle(self: Arc<Self>, req: CtlRequest) -> String {
        let answer = match req {
            // The original's text for any failed get.
            CtlRequest::ProbeGet { name } => self
                .manager
                .get(&name)
                .await
                .map_err(|_| ApiError::bad_request_with("Failed to get probe config")),
            CtlRequest::ProbeSet { name, json } => self
                .manager
                .put(&name, json.as_bytes())
                .await
                .map(|()| api::SUCCESS_BODY.to_string()),
            CtlRequest::Metrics => {
                let Some(metrics) = self.metrics.clone() else {
                    return String::new();
                };
                let text = tokio::task::spawn_blocking(move || metrics.scrape().concat()).await;
                return text
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
            }
        };
        answer.unwrap_or_else(|e| e.body())
    }
}
