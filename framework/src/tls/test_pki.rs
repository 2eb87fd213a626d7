//! Test certificates made at run time with rcgen: two unrelated CAs, a server certificate for
//! `localhost`, a client certificate from each CA, written as PEM files into a temp dir.

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::ServerConfig;

/// A certificate authority able to issue leaf certificates.
pub(crate) struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub cert_pem: String,
}

/// A leaf certificate and its key, PEM.
pub(crate) struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert_pem = params.self_signed(&key).unwrap().pem();
        TestCa {
            issuer: Issuer::new(params, key),
            cert_pem,
        }
    }

    /// A leaf for `localhost` usable for `purpose` (server or client authentication).
    pub fn issue(&self, name: &str, purpose: ExtendedKeyUsagePurpose) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![purpose];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

impl Leaf {
    /// The chain and key for a rustls client.
    pub fn client_auth(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let chain = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap();
        (chain, key)
    }
}

/// The whole set, with its files.
pub(crate) struct TestPki {
    pub dir: tempfile::TempDir,
    pub ca: TestCa,
    pub server: Leaf,
    /// Signed by `ca`.
    pub client: Leaf,
    /// Signed by an unrelated CA.
    pub stranger: Leaf,
}

impl TestPki {
    pub fn new() -> Self {
        let ca = TestCa::new("gala test CA");
        let other_ca = TestCa::new("unrelated CA");
        let pki = TestPki {
            dir: tempfile::tempdir().unwrap(),
            server: ca.issue("gala server", ExtendedKeyUsagePurpose::ServerAuth),
            client: ca.issue("gala client", ExtendedKeyUsagePurpose::ClientAuth),
            stranger: other_ca.issue("stranger", ExtendedKeyUsagePurpose::ClientAuth),
            ca,
        };
        pki.write("ca.pem", &pki.ca.cert_pem);
        pki.write("server.pem", &pki.server.cert_pem);
        pki.write("server.key", &pki.server.key_pem);
        pki
    }

    /// Writes `name` into the temp dir and returns its path.
    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A listener config with `ssl_auth` on, mutual TLS when `mtls`.
    pub fn server_config(&self, mtls: bool) -> ServerConfig {
        ServerConfig {
            ssl_auth: true,
            private_key: self.path("server.key"),
            cert_file: self.path("server.pem"),
            ca_file: if mtls {
                self.path("ca.pem")
            } else {
                PathBuf::new()
            },
            ..ServerConfig::web_server_default()
        }
    }

    /// Trust anchors holding our CA, for clients.
    pub fn client_roots(&self) -> Arc<rustls::RootCertStore> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.ca.cert_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        Arc::new(roots)
    }
}
