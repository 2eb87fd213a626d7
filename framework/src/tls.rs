//! TLS for the daemon's HTTP listeners (`ssl_auth = "on"` in `web_server` / `rest_api_server`):
//! TLS 1.3 only, as the original since 6dddcb85, and mutual TLS when `ca_file` is set.
//!
//! Everything is checked when the server starts, so a bad file stops start-up with the key and
//! the file at fault instead of failing each handshake later.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, RootCertStore};
use tokio_rustls::TlsAcceptor;

use crate::config::ServerConfig;

/// Largest PEM file read: certificate chains and CA bundles are a few KiB, so anything bigger is
/// a wrong path (a log file, a device) rather than a certificate.
const MAX_PEM_BYTES: u64 = 1 << 20;

/// Why a TLS listener cannot be set up; every variant names the config key and the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// `private_key` or `cert_file` is empty although `ssl_auth` is on.
    #[error("{section}.{key}: required when {section}.ssl_auth is \"on\"")]
    Missing {
        /// Config section (`web_server`, `rest_api_server`).
        section: String,
        /// The key left empty.
        key: &'static str,
    },
    /// The file cannot be opened or read.
    #[error("{section}.{key}: cannot read {}: {error}", path.display())]
    Read {
        /// Config section.
        section: String,
        /// The key naming the file.
        key: &'static str,
        /// The configured path.
        path: PathBuf,
        /// What the system said.
        error: std::io::Error,
    },
    /// The file was read but its content is unusable.
    #[error("{section}.{key}: {}: {reason}", path.display())]
    Invalid {
        /// Config section.
        section: String,
        /// The key naming the file.
        key: &'static str,
        /// The configured path.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the assembled configuration (should not happen once the files are valid).
    #[error("{section}: TLS setup failed: {reason}")]
    Setup {
        /// Config section.
        section: String,
        /// rustls's message.
        reason: String,
    },
}

/// The TLS acceptor for the listener `server` of config section `section`, or `None` when
/// `ssl_auth` is off. TLS 1.3 only; with a non-empty `ca_file`, clients must present a
/// certificate signed by one of its CAs.
pub fn acceptor(server: &ServerConfig, section: &str) -> Result<Option<TlsAcceptor>, TlsError> {
    if !server.ssl_auth {
        return Ok(None);
    }
    let files = Files { section };
    let provider = Arc::new(rustls::crypto::ring::default_provider());

    let cert_path = files.required("cert_file", &server.cert_file)?;
    let key_path = files.required("private_key", &server.private_key)?;
    let chain = files.certificates("cert_file", cert_path)?;
    let key = files.private_key(key_path)?;
    files.check_key_matches(&provider, &chain, &key, cert_path, key_path)?;

    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| files.setup(e))?;
    let builder = if server.ca_file.as_os_str().is_empty() {
        builder.with_no_client_auth()
    } else {
        let roots = files.ca_roots(&server.ca_file)?;
        // The builder's default requires a certificate: no `allow_unauthenticated()`.
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| files.invalid("ca_file", &server.ca_file, e.to_string()))?;
        builder.with_client_cert_verifier(verifier)
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| files.setup(e))?;
    // Both listeners speak HTTP/1.1 only; a client that insists on h2 is told so in the handshake.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

/// Reads and checks the PEM files of one section, naming the section and key in every error.
struct Files<'a> {
    section: &'a str,
}

impl Files<'_> {
    fn required<'p>(&self, key: &'static str, path: &'p Path) -> Result<&'p Path, TlsError> {
        if path.as_os_str().is_empty() {
            return Err(TlsError::Missing {
                section: self.section.to_owned(),
                key,
            });
        }
        Ok(path)
    }

    /// The bytes of a regular file of at most [`MAX_PEM_BYTES`].
    fn read(&self, key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
        let read_error = |error| TlsError::Read {
            section: self.section.to_owned(),
            key,
            path: path.to_owned(),
            error,
        };
        let file = std::fs::File::open(path).map_err(read_error)?;
        let meta = file.metadata().map_err(read_error)?;
        if !meta.is_file() {
            return Err(self.invalid(key, path, "not a regular file".into()));
        }
        let mut bytes = Vec::new();
        file.take(MAX_PEM_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(read_error)?;
        if bytes.len() as u64 > MAX_PEM_BYTES {
            return Err(self.invalid(key, path, format!("larger than {MAX_PEM_BYTES} bytes")));
        }
        Ok(bytes)
    }

    /// Every `CERTIFICATE` block of the file; at least one.
    fn certificates(
        &self,
        key: &'static str,
        path: &Path,
    ) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let bytes = self.read(key, path)?;
        let certs = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.invalid(key, path, format!("not valid PEM: {}", pem_reason(&e))))?;
        if certs.is_empty() {
            return Err(self.invalid(
                key,
                path,
                "no certificate found (expected PEM \"CERTIFICATE\" blocks)".into(),
            ));
        }
        Ok(certs)
    }

    /// The first private key block of the file (PKCS#8, PKCS#1 or SEC1).
    fn private_key(&self, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
        let bytes = self.read("private_key", path)?;
        PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
            let reason = match e {
                pem::Error::NoItemsFound => {
                    "no private key found (expected a PEM \"PRIVATE KEY\", \
                     \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\" block)"
                        .to_owned()
                }
                other => format!("not valid PEM: {}", pem_reason(&other)),
            };
            self.invalid("private_key", path, reason)
        })
    }

    /// Checks that the key is usable and belongs to the first certificate of the chain, so that
    /// the error names the file at fault.
    fn check_key_matches(
        &self,
        provider: &CryptoProvider,
        chain: &[CertificateDer<'static>],
        key: &PrivateKeyDer<'static>,
        cert_path: &Path,
        key_path: &Path,
    ) -> Result<(), TlsError> {
        let signing_key = provider
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|e| {
                self.invalid(
                    "private_key",
                    key_path,
                    format!("unusable private key: {e}"),
                )
            })?;
        match CertifiedKey::new(chain.to_vec(), signing_key).keys_match() {
            Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(()),
            Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => Err(self
                .invalid(
                    "private_key",
                    key_path,
                    format!(
                        "does not belong to the first certificate of {}",
                        cert_path.display()
                    ),
                )),
            Err(e) => Err(self.invalid(
                "cert_file",
                cert_path,
                format!("first certificate is unusable: {e}"),
            )),
        }
    }

    /// The trust anchors of `ca_file`; every certificate in it must be a usable CA.
    fn ca_roots(&self, path: &Path) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        for (i, cert) in self.certificates("ca_file", path)?.into_iter().enumerate() {
            roots.add(cert).map_err(|e| {
                self.invalid(
                    "ca_file",
                    path,
                    format!("certificate #{} is not usable as a CA: {e}", i + 1),
                )
            })?;
        }
        Ok(roots)
    }

    fn invalid(&self, key: &'static str, path: &Path, reason: String) -> TlsError {
        TlsError::Invalid {
            section: self.section.to_owned(),
            key,
            path: path.to_owned(),
            reason,
        }
    }

    fn setup(&self, e: rustls::Error) -> TlsError {
        TlsError::Setup {
            section: self.section.to_owned(),
            reason: e.to_string(),
        }
    }
}

/// A PEM parse error in words (the library's text shows raw byte vectors).
fn pem_reason(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { end_marker } => format!(
            "section without its end line {:?}",
            String::from_utf8_lossy(end_marker)
        ),
        pem::Error::IllegalSectionStart { line } => {
            format!("malformed BEGIN line {:?}", String::from_utf8_lossy(line))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
pub(crate) mod test_pki;
#[cfg(test)]
mod tests;
