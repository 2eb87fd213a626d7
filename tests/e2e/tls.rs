//! `web_server.ssl_auth = "on"`: the real daemon serves `/metrics` over TLS 1.3 with mutual TLS,
//! checked with a rustls client and certificates made at run time.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gala_e2e::{http_get, Sandbox, DEMO_META, IMDB_DEFAULT};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

const DEMO_PROBE: &str = r#"#!/bin/sh
while :; do
  printf '%s\n' '|demo_conn|c1|1000|1.5|'
  sleep 0.2
done
"#;

/// A CA that issues leaf certificates for `localhost`.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

/// PEM certificate and key.
struct Leaf {
    cert_pem: String,
    key_pem: String,
}

impl Ca {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let cert_pem = params.self_signed(&key).unwrap().pem();
        Ca {
            issuer: Issuer::new(params, key),
            cert_pem,
        }
    }

    fn issue(&self, purpose: ExtendedKeyUsagePurpose) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.extended_key_usages = vec![purpose];
        Leaf {
            cert_pem: params.signed_by(&key, &self.issuer).unwrap().pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

/// `GET /metrics` over TLS 1.3 trusting `ca`, presenting `client` if given: status and body.
fn https_get(port: u16, ca: &Ca, client: Option<&Leaf>) -> Result<(u16, String), String> {
    https_get_path(port, "/metrics", ca, client)
}

/// `GET <path>` over TLS 1.3 trusting `ca`, presenting `client` if given: status and body.
fn https_get_path(
    port: u16,
    path: &str,
    ca: &Ca,
    client: Option<&Leaf>,
) -> Result<(u16, String), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots);
    let config = match client {
        Some(leaf) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    tls.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no header end")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("bad status line")?;
    Ok((status, body.to_owned()))
}

#[test]
fn metrics_over_mutual_tls() {
    let mut sandbox = Sandbox::new();
    let ca = Ca::new("gala e2e CA");
    let client = ca.issue(ExtendedKeyUsagePurpose::ClientAuth);
    let server = ca.issue(ExtendedKeyUsagePurpose::ServerAuth);
    let stranger = Ca::new("other CA").issue(ExtendedKeyUsagePurpose::ClientAuth);
    let dir = sandbox.path().to_owned();
    sandbox.web_server_tls = format!(
        r#"ssl_auth = "on"; private_key = "{}"; cert_file = "{}"; ca_file = "{}";"#,
        write(&dir, "server.key", &server.key_pem).display(),
        write(&dir, "server.pem", &server.cert_pem).display(),
        write(&dir, "ca.pem", &ca.cert_pem).display(),
    );
    sandbox.add_custom_probe("demo", DEMO_PROBE, DEMO_META);
    sandbox.write_probes_init("demo {\"state\": \"running\"}\n");
    sandbox.write_config(IMDB_DEFAULT, "");
    let daemon = sandbox.start_when(|port| https_get(port, &ca, Some(&client)).is_ok());
    let port = sandbox.metrics_port;

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = https_get(port, &ca, Some(&client)).expect("mTLS scrape");
        assert_eq!(status, 200);
        if body.contains("gala_gopher_demo_conn_tx_bytes{") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no demo series over HTTPS: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let anonymous = https_get(port, &ca, None);
    assert!(anonymous.is_err(), "no client certificate: {anonymous:?}");
    let foreign = https_get(port, &ca, Some(&stranger));
    assert!(foreign.is_err(), "certificate of another CA: {foreign:?}");
    let plain = http_get(port, "/metrics");
    assert!(
        !matches!(plain, Ok((200, _))),
        "plain HTTP is not served: {plain:?}"
    );
    // Refused clients did not disturb the server.
    assert_eq!(https_get(port, &ca, Some(&client)).unwrap().0, 200);
    assert!(daemon.terminate().success());
}

#[test]
fn rest_api_over_mutual_tls() {
    let mut sandbox = Sandbox::new();
    let ca = Ca::new("gala e2e CA");
    let client = ca.issue(ExtendedKeyUsagePurpose::ClientAuth);
    let server = ca.issue(ExtendedKeyUsagePurpose::ServerAuth);
    let dir = sandbox.path().to_owned();
    sandbox.rest_api_tls = format!(
        r#"ssl_auth = "on"; private_key = "{}"; cert_file = "{}"; ca_file = "{}";"#,
        write(&dir, "server.key", &server.key_pem).display(),
        write(&dir, "server.pem", &server.cert_pem).display(),
        write(&dir, "ca.pem", &ca.cert_pem).display(),
    );
    sandbox.write_config(IMDB_DEFAULT, "");
    let daemon = sandbox.start();
    let port = sandbox.rest_port;
    let served = https_get_path(port, "/tcp", &ca, Some(&client)).expect("mTLS GET");
    assert_eq!(served, (200, "{}\n".to_owned()));
    let anonymous = https_get_path(port, "/tcp", &ca, None);
    assert!(anonymous.is_err(), "no client certificate: {anonymous:?}");
    let plain = http_get(port, "/tcp");
    assert!(
        !matches!(plain, Ok((200, _))),
        "plain HTTP is not served: {plain:?}"
    );
    assert!(daemon.terminate().success());
}

#[test]
fn unusable_certificate_stops_start_up_naming_the_file() {
    let mut sandbox = Sandbox::new();
    let dir = sandbox.path().to_owned();
    let ca = Ca::new("gala e2e CA");
    let server = ca.issue(ExtendedKeyUsagePurpose::ServerAuth);
    let key = write(&dir, "server.key", &server.key_pem);
    // The key where the certificate should be.
    sandbox.web_server_tls = format!(
        r#"ssl_auth = "on"; private_key = "{0}"; cert_file = "{0}";"#,
        key.display()
    );
    sandbox.write_config(IMDB_DEFAULT, "");
    let mut child = sandbox.command().spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("gala-gopher kept running with an unusable cert_file");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        err.contains(&format!(
            "web_server.cert_file: {}: no certificate found",
            key.display()
        )),
        "{err}"
    );
}
