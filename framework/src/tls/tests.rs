use std::path::PathBuf;

use super::test_pki::{TestCa, TestPki};
use super::*;

fn error(server: &ServerConfig) -> String {
    match acceptor(server, "web_server") {
        Ok(_) => panic!("accepted {server:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn off_means_no_acceptor_even_with_bad_paths() {
    let server = ServerConfig {
        ssl_auth: false,
        cert_file: PathBuf::from("/nonexistent/cert.pem"),
        ..ServerConfig::web_server_default()
    };
    assert!(acceptor(&server, "web_server").unwrap().is_none());
}

#[test]
fn valid_files_give_an_acceptor_with_and_without_client_ca() {
    let pki = TestPki::new();
    assert!(acceptor(&pki.server_config(false), "web_server")
        .unwrap()
        .is_some());
    assert!(acceptor(&pki.server_config(true), "rest_api_server")
        .unwrap()
        .is_some());
}

#[test]
fn empty_required_paths_are_named() {
    let pki = TestPki::new();
    let mut server = pki.server_config(false);
    server.cert_file = PathBuf::new();
    assert_eq!(
        error(&server),
        "web_server.cert_file: required when web_server.ssl_auth is \"on\""
    );
    let mut server = pki.server_config(false);
    server.private_key = PathBuf::new();
    assert_eq!(
        error(&server),
        "web_server.private_key: required when web_server.ssl_auth is \"on\""
    );
}

#[test]
fn missing_file_names_key_and_path() {
    let pki = TestPki::new();
    let mut server = pki.server_config(true);
    server.ca_file = pki.path("absent.pem");
    let msg = error(&server);
    assert!(
        msg.starts_with(&format!(
            "web_server.ca_file: cannot read {}: ",
            server.ca_file.display()
        )),
        "{msg}"
    );
    assert!(msg.contains("No such file"), "{msg}");
}

#[test]
fn directory_is_not_a_certificate() {
    let pki = TestPki::new();
    let mut server = pki.server_config(false);
    server.cert_file = pki.dir.path().to_owned();
    assert_eq!(
        error(&server),
        format!(
            "web_server.cert_file: {}: not a regular file",
            pki.dir.path().display()
        )
    );
}

#[test]
fn oversized_file_is_refused_without_reading_it_all() {
    let pki = TestPki::new();
    let mut server = pki.server_config(false);
    server.cert_file = pki.write("huge.pem", &"x".repeat(MAX_PEM_BYTES as usize + 10));
    assert!(
        error(&server).ends_with(&format!("larger than {MAX_PEM_BYTES} bytes")),
        "{}",
        error(&server)
    );
}

#[test]
fn file_without_certificate_is_refused() {
    let pki = TestPki::new();
    let mut server = pki.server_config(false);
    // A key where the certificate should be: valid PEM, but no CERTIFICATE block.
    server.cert_file = pki.path("server.key");
    assert_eq!(
        error(&server),
        format!(
            "web_server.cert_file: {}: no certificate found (expected PEM \"CERTIFICATE\" blocks)",
            server.cert_file.display()
        )
    );
}

#[test]
fn truncated_pem_is_refused() {
    let pki = TestPki::new();
    let mut server = pki.server_config(false);
    let cut = &pki.server.cert_pem[..pki.server.cert_pem.len() - 30];
    server.cert_file = pki.write("cut.pem", cut);
    let msg = error(&server);
    assert!(
        msg.contains("cert_file") && msg.contains("not valid PEM: section without its end line"),
        "{msg}"
    );
}

#[test]
fn certificate_in_place_of_key_is_refused() {
    let pki = TestPki::new();
    let mut server = pki.server_config(false);
    server.private_key = pki.path("server.pem");
    let msg = error(&server);
    assert!(
        msg.starts_with("web_server.private_key: ") && msg.contains("no private key found"),
        "{msg}"
    );
}

#[test]
fn garbage_key_body_is_refused() {
    let pki = TestPki::new();
    let mut server = pki.server_config(false);
    server.private_key = pki.write(
        "bad.key",
        "-----BEGIN PRIVATE KEY-----\nAAAAAAAAAAAAAAAA\n-----END PRIVATE KEY-----\n",
    );
    let msg = error(&server);
    assert!(
        msg.starts_with("web_server.private_key: ") && msg.contains("unusable private key"),
        "{msg}"
    );
}

#[test]
fn key_of_another_certificate_is_refused() {
    let pki = TestPki::new();
    let mut server = pki.server_config(false);
    server.private_key = pki.write("client.key", &pki.client.key_pem);
    assert_eq!(
        error(&server),
        format!(
            "web_server.private_key: {}: does not belong to the first certificate of {}",
            server.private_key.display(),
            server.cert_file.display()
        )
    );
}

#[test]
fn garbage_certificate_body_is_refused() {
    let pki = TestPki::new();
    let mut server = pki.server_config(false);
    server.cert_file = pki.write(
        "bad.pem",
        "-----BEGIN CERTIFICATE-----\nAAAAAAAAAAAAAAAA\n-----END CERTIFICATE-----\n",
    );
    let msg = error(&server);
    assert!(
        msg.starts_with("web_server.cert_file: ") && msg.contains("first certificate is unusable"),
        "{msg}"
    );
}

#[test]
fn ca_file_without_usable_ca_is_refused() {
    let pki = TestPki::new();
    let mut server = pki.server_config(true);
    server.ca_file = pki.write("empty.pem", "");
    assert!(error(&server).contains("ca_file"), "{}", error(&server));
    server.ca_file = pki.write(
        "junk-ca.pem",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    let msg = error(&server);
    assert!(
        msg.contains("web_server.ca_file") && msg.contains("certificate #1 is not usable as a CA"),
        "{msg}"
    );
    // A bundle of two good CAs is fine.
    let other = TestCa::new("second CA");
    server.ca_file = pki.write("bundle.pem", &(pki.ca.cert_pem.clone() + &other.cert_pem));
    assert!(acceptor(&server, "web_server").unwrap().is_some());
}
