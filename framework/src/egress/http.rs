//! The metrics endpoint: `GET /metrics` (and `/`) on `web_server.bind_addr:port`, HTTP or
//! HTTPS (`web_server.ssl_auth`), served by [`crate::server`].

use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use metrics_exporter_prometheus::PrometheusHandle;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::clock;
use crate::egress::prometheus::ScrapeRenderer;
use crate::imdb::Imdb;
use crate::selfmetrics;
use crate::server::{self, Chunks, Handler};

/// Content type of text exposition format 0.0.4.
const EXPOSITION: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Everything a scrape needs.
pub struct MetricsEndpoint {
    imdb: Arc<Imdb>,
    renderer: Mutex<ScrapeRenderer>,
    self_metrics: Option<PrometheusHandle>,
}

impl MetricsEndpoint {
    /// An endpoint rendering `imdb` with `renderer`, followed by the daemon's own metrics.
    pub fn new(
        imdb: Arc<Imdb>,
        renderer: ScrapeRenderer,
        self_metrics: Option<PrometheusHandle>,
    ) -> Self {
        MetricsEndpoint {
            imdb,
            renderer: Mutex::new(renderer),
            self_metrics,
        }
    }

    /// Renders one complete response body: the families' buffers as they were rendered,
    /// then the daemon's own metrics.
    pub fn scrape(&self) -> Chunks {
        let start = Instant::now();
        let mut out = Chunks::new();
        self.renderer
            .lock()
            .render_chunks(&self.imdb, clock::now_ms(), &mut out);
        selfmetrics::imdb_series().set(self.imdb.series() as f64);
        if let Some(h) = &self.self_metrics {
            out.push_owned(h.render().into_bytes());
        }
        selfmetrics::scrape_duration().record(start.elapsed().as_secs_f64());
        out
    }
}

/// Serves `endpoint` on `listener`, over TLS when `tls` is given, until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    endpoint: Arc<MetricsEndpoint>,
    shutdown: watch::Receiver<bool>,
) {
    server::serve("metrics server", listener, tls, endpoint, shutdown).await;
}

impl Handler for MetricsEndpoint {
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Chunks> {
        if !matches!(req.uri().path(), "/" | "/metrics") {
            return plain(StatusCode::NOT_FOUND, "not found: try /metrics\n");
        }
        if req.method() != Method::GET {
            let mut resp = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            resp.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET"));
            return resp;
        }
        let body = match tokio::task::spawn_blocking(move || self.scrape()).await {
            Ok(body) => body,
            Err(e) => {
                tracing::error!("metrics server: render failed: {e}");
                return plain(StatusCode::INTERNAL_SERVER_ERROR, "render failed\n");
            }
        };
        let mut resp = Response::new(body);
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(EXPOSITION));
        resp
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Chunks> {
    let mut resp = Response::new(Chunks::from(text));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

#[cfg(test)]
mod tests;
