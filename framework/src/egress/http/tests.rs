//! The metrics endpoint behind the shared accept loop, plain and over TLS.

use std::sync::Arc;

use super::MetricsEndpoint;
use crate::clock;
use crate::egress::prometheus::ScrapeRenderer;
use crate::server::tests::{exchange, http_request, start};
use crate::testutil::{demo_imdb, store};
use crate::tls::test_pki::TestPki;

fn endpoint() -> Arc<MetricsEndpoint> {
    let imdb = demo_imdb(16, 60_000);
    store(&imdb, "|demo_conn|c1|1000|1.5|", clock::now_ms()).unwrap();
    let renderer = ScrapeRenderer::new(imdb.registry(), "m1", false);
    Arc::new(MetricsEndpoint::new(imdb, renderer, None))
}

fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    let head = response.split("\r\n\r\n").next()?;
    head.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test]
async fn get_metrics_and_root_render_the_exposition() {
    let server = start(None, endpoint()).await;
    for path in ["/metrics", "/"] {
        let resp = http_request(server.addr, "GET", path).await.unwrap();
        assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
        assert_eq!(
            header(&resp, "content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        assert!(
            resp.contains("gala_gopher_demo_conn_tx_bytes{"),
            "series rendered: {resp}"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn other_paths_and_methods_are_refused() {
    let server = start(None, endpoint()).await;
    let resp = http_request(server.addr, "GET", "/foo").await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 404 Not Found\r\n"), "{resp}");
    assert!(resp.ends_with("not found: try /metrics\n"), "{resp}");
    let resp = http_request(server.addr, "POST", "/metrics").await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 405 "), "{resp}");
    assert_eq!(header(&resp, "allow"), Some("GET"));
    server.shutdown().await;
}

#[tokio::test]
async fn scrape_over_tls() {
    let pki = TestPki::new();
    let tls = crate::tls::acceptor(&pki.server_config(false), "web_server")
        .unwrap()
        .unwrap();
    let server = start(Some(tls), endpoint()).await;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(pki.client_roots())
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let resp = exchange(stream, "GET", "/metrics").await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert!(resp.contains("gala_gopher_demo_conn_srtt{"), "{resp}");
    server.shutdown().await;
}
