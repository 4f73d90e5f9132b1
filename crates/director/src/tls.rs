//! TLS on the public listener: the certificate chain and key read from PEM
//! files into a rustls server configuration (`sticky_proto::tls`: ALPN
//! `h2` then `http/1.1`, TLS 1.2 and 1.3, the ring provider), and
//! reloading them without a restart: a new configuration replaces the old
//! one for new connections only; one that cannot be built (a file missing
//! or unreadable, no certificate, a key that is not the certificate's) is
//! refused and the old one stays in force.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::ServerConfig;

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

/// A server configuration from `files` (ALPN `h2`, then `http/1.1`), or
/// what is wrong with them.
fn build(files: &TlsFiles) -> Result<Arc<ServerConfig>, String> {
    sticky_proto::tls::server_config(
        &files.cert,
        &files.key,
        "tls_cert",
        "tls_key",
        &[b"h2", b"http/1.1"],
    )
    .map_err(|e| e.to_string())
}
