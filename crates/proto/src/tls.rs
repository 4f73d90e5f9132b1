//! TLS settings shared by the director and `sticky store`: a rustls
//! server configuration from a PEM certificate chain and key, checked (a
//! key that is not the first certificate's is refused), and the crypto
//! provider every Sticky TLS endpoint uses (ring; `docs/tls.md` says why).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ServerConfig;
use rustls::sign::CertifiedKey;

/// A certificate, key or CA file that cannot be used: the message names
/// the file, the setting and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

#[cfg(test)]
mod tests {
    #[test]
    fn tls_store_urls_name_their_host() {
        let host = |u: &str| super::store_tls_host(u);
        assert_eq!(
            host("sticky+tls://10.0.0.5:7379").as_deref(),
            Some("10.0.0.5")
        );
        assert_eq!(
            host("rediss://user:p@ss@redis.internal:6380/?protocol=resp3").as_deref(),
            Some("redis.internal")
        );
        assert_eq!(host("rediss://[::1]:6380").as_deref(), Some("::1"));
        assert_eq!(host("redis://10.0.0.5:6379"), None);
        assert_eq!(host("sticky://10.0.0.5:7379"), None);
        assert_eq!(host("10.0.0.5:7379"), None);
    }
}

/// Largest certificate, key or CA file read (a chain is a few KiB).
const MAX_PEM_FILE: u64 = 1 << 20;

/// The crypto provider: rustls's ring provider (`docs/tls.md` says why
/// ring, and what it lacks: rustls 0.23.48 deprecates it for having no
/// post-quantum key exchange).
#[allow(deprecated)]
pub fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// A server configuration from the PEM chain `cert` and key `key`
/// (`cert_field` and `key_field` name the settings in messages), offering
/// `alpn`.
///
/// # Errors
///
/// [`TlsError`] when a file is missing, unreadable, larger than 1 MiB,
/// holds no certificate or no key, or the key is not the first
/// certificate's.
pub fn server_config(
    cert: &Path,
    key: &Path,
    cert_field: &str,
    key_field: &str,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_pem = read_pem(cert, cert_field)?;
    let key_pem = read_pem(key, key_field)?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            TlsError(format!(
                "{cert_field} {}: not a PEM certificate chain: {e}",
                cert.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(TlsError(format!(
            "{cert_field} {} holds no certificate (expected -----BEGIN CERTIFICATE-----)",
            cert.display()
        )));
    }
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        TlsError(format!(
            "{key_field} {}: no PEM private key (PKCS#8, PKCS#1 or SEC1): {e}",
            key.display()
        ))
    })?;
    let provider = Arc::new(provider());
    let signing = provider
        .key_provider
        .load_private_key(private)
        .map_err(|e| {
            TlsError(format!(
                "{key_field} {}: unusable private key: {e}",
                key.display()
            ))
        })?;
    let certified = CertifiedKey::new(certs, signing);
    certified.keys_match().map_err(|e| {
        TlsError(format!(
            "{key_field} {} is not the key of the first certificate in {cert_field} {}: {e}",
            key.display(),
            cert.display()
        ))
    })?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("TLS setup: {e}")))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Single(Arc::new(certified))));
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A CA file's PEM text (what clients verify servers against), checked to
/// hold at least one certificate.
///
/// # Errors
///
/// [`TlsError`] when it is missing, unreadable, too large or holds no
/// certificate.
pub fn read_ca(path: &Path, field: &str) -> Result<Vec<u8>, TlsError> {
    let pem = read_pem(path, field)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            TlsError(format!(
                "{field} {}: not PEM certificates: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(TlsError(format!(
            "{field} {} holds no certificate (expected -----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(pem)
}

/// A client configuration that verifies servers against the CA
/// certificates in `ca` (PEM), or without it against the system's trust
/// store. Verification is never off.
///
/// # Errors
///
/// [`TlsError`] when `ca` cannot be read or holds no certificate, or no
/// trusted certificate is left.
pub fn client_config(ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let pem = read_ca(path, "the CA file")?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert
                    .map_err(|e| TlsError(format!("CA file {}: not PEM: {e}", path.display())))?;
                roots.add(cert).map_err(|e| {
                    TlsError(format!(
                        "CA file {}: unusable certificate: {e}",
                        path.display()
                    ))
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(TlsError(
                    "the system's trust store holds no certificate: give a CA file".into(),
                ));
            }
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The host a TLS store URL (`sticky+tls://`, `rediss://`) names, which
/// its certificate must match; `None` for other addresses.
pub fn store_tls_host(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sticky+tls://")
        .or_else(|| url.strip_prefix("rediss://"))?;
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let host_port = rest.split(['/', '?', '#']).next()?;
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        host_port.split(':').next()?
    };
    (!host.is_empty()).then(|| host.to_owned())
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
fn read_pem(path: &Path, field: &str) -> Result<Vec<u8>, TlsError> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .map_err(|e| TlsError(format!("cannot read {field} {}: {e}", path.display())))?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| TlsError(format!("cannot read {field} {}: {e}", path.display())))?;
    if bytes.len() as u64 > MAX_PEM_FILE {
        return Err(TlsError(format!(
            "{field} {} is larger than {MAX_PEM_FILE} bytes: not a PEM file",
            path.display()
        )));
    }
    Ok(bytes)
}
