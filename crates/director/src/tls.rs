//! TLS on the public listener: the certificate chain and key read from PEM
//! files, the rustls server configuration built from them (ALPN `h2` then
//! `http/1.1`, TLS 1.2 and 1.3, the ring provider), and reloading them
//! without a restart: a new configuration replaces the old one for new
//! connections only; one that cannot be built (a file missing or
//! unreadable, no certificate, a key that is not the certificate's) is
//! refused and the old one stays in force.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ServerConfig;
use rustls::sign::CertifiedKey;

use crate::DirectorError;

/// The certificate chain and private key files of the public listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain: the server's certificate first, then its
    /// intermediates.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the first certificate.
    pub key: PathBuf,
}

/// Largest certificate or key file read (a chain is a few KiB).
const MAX_PEM_FILE: u64 = 1 << 20;

/// The public listener's TLS state: where its files are, and the server
/// configuration new connections use.
pub(crate) struct Tls {
    files: TlsFiles,
    current: ArcSwap<ServerConfig>,
}

impl Tls {
    /// Reads `files` and builds the first configuration.
    pub(crate) fn load(files: TlsFiles) -> Result<Self, DirectorError> {
        let config = build(&files).map_err(DirectorError::Config)?;
        Ok(Self {
            files,
            current: ArcSwap::from(config),
        })
    }

    /// The configuration a new connection uses.
    pub(crate) fn current(&self) -> Arc<ServerConfig> {
        self.current.load_full()
    }

    /// Reads the files again; on success new connections use them, on
    /// failure the old certificate stays in force and the error says why.
    pub(crate) fn reload(&self) -> Result<(), DirectorError> {
        match build(&self.files) {
            Ok(config) => {
                self.current.store(config);
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                Ok(())
            }
            Err(e) => {
                tracing::error!(
                    error = %e,
                    "TLS certificate not reloaded: the old certificate stays in force"
                );
                Err(DirectorError::Reload(format!(
                    "TLS certificate not reloaded, the old one stays in force: {e}"
                )))
            }
        }
    }
}

/// The crypto provider: rustls's ring provider (`docs/tls.md` says why
/// ring, and what it lacks: rustls 0.23.48 deprecates it for having no
/// post-quantum key exchange).
#[allow(deprecated)]
pub(crate) fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// The ALPN protocols offered, most preferred first.
fn alpn() -> Vec<Vec<u8>> {
    vec![b"h2".to_vec(), b"http/1.1".to_vec()]
}

/// A server configuration from `files`, or what is wrong with them.
fn build(files: &TlsFiles) -> Result<Arc<ServerConfig>, String> {
    let cert_pem = read_pem(&files.cert, "tls_cert")?;
    let key_pem = read_pem(&files.key, "tls_key")?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            format!(
                "tls_cert {}: not a PEM certificate chain: {e}",
                files.cert.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "tls_cert {} holds no certificate (expected -----BEGIN CERTIFICATE-----)",
            files.cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        format!(
            "tls_key {}: no PEM private key (PKCS#8, PKCS#1 or SEC1): {e}",
            files.key.display()
        )
    })?;
    let provider = Arc::new(provider());
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("tls_key {}: unusable private key: {e}", files.key.display()))?;
    let certified = CertifiedKey::new(certs, signing);
    certified.keys_match().map_err(|e| {
        format!(
            "tls_key {} is not the key of the first certificate in tls_cert {}: {e}",
            files.key.display(),
            files.cert.display()
        )
    })?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Single(Arc::new(certified))));
    config.alpn_protocols = alpn();
    Ok(Arc::new(config))
}

/// Resolves every handshake to the one certificate chain.
#[derive(Debug)]
struct Single(Arc<CertifiedKey>);

impl rustls::server::ResolvesServerCert for Single {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

/// A PEM file's bytes, at most [`MAX_PEM_FILE`].
fn read_pem(path: &Path, field: &str) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .map_err(|e| format!("cannot read {field} {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {field} {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_PEM_FILE {
        return Err(format!(
            "{field} {} is larger than {MAX_PEM_FILE} bytes: not a PEM file",
            path.display()
        ));
    }
    Ok(bytes)
}
