//! The metrics endpoint: `GET /metrics` (and `/`) on `web_server.bind_addr:port`, HTTP or
//! HTTPS (`web_server.ssl_auth`), served by [`crate::server`].

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
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
use crate::server::{self, Handler};

/// Content type of text exposition format 0.0.4.
const EXPOSITION: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Response buffers kept for reuse: a large exposition costs more in page faults than in
/// rendering when its buffer is allocated afresh for every scrape.
type BufferPool = Arc<Mutex<Vec<Vec<u8>>>>;

/// Most buffers kept in the pool (one per concurrent scraper).
const POOLED_BUFFERS: usize = 2;

/// A response body that returns its buffer to the pool once hyper has sent it.
struct PooledBuffer {
    buf: Vec<u8>,
    pool: BufferPool,
}

impl AsRef<[u8]> for PooledBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut pool = self.pool.lock();
        if pool.len() < POOLED_BUFFERS {
            pool.push(buf);
        }
    }
}

/// Everything a scrape needs.
pub struct MetricsEndpoint {
    imdb: Arc<Imdb>,
    renderer: Mutex<ScrapeRenderer>,
    self_metrics: Option<PrometheusHandle>,
    pool: BufferPool,
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
            pool: BufferPool::default(),
        }
    }

    /// Renders one complete response body.
    pub fn scrape(&self) -> Bytes {
        let start = Instant::now();
        let mut out = self.pool.lock().pop().unwrap_or_default();
        self.renderer
            .lock()
            .render(&self.imdb, clock::now_ms(), &mut out);
        selfmetrics::imdb_series().set(self.imdb.series() as f64);
        if let Some(h) = &self.self_metrics {
            out.extend_from_slice(h.render().as_bytes());
        }
        selfmetrics::scrape_duration().record(start.elapsed().as_secs_f64());
        Bytes::from_owner(PooledBuffer {
            buf: out,
            pool: self.pool.clone(),
        })
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
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Full<Bytes>> {
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
        let mut resp = Response::new(Full::new(body));
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(EXPOSITION));
        resp
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

#[cfg(test)]
mod tests;
