//! TLS for tests: a certificate authority made at test time ([`TestCa`],
//! with rcgen) issuing certificates for `localhost`, `127.0.0.1` and
//! `::1` as PEM files, and a real HTTPS client ([`HttpsClient`]: hyper's
//! client over tokio-rustls, HTTP/2 or HTTP/1.1 by ALPN) that checks the
//! server's certificate against that authority and shows which protocol
//! and certificate the server chose.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::http::Response;
use crate::process::temp_dir;

/// A certificate authority of one test, its files in a directory of
/// their own.
pub struct TestCa {
    dir: PathBuf,
    ca_file: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    issued: AtomicUsize,
}

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The certificate chain (the leaf, then the authority).
    pub cert: PathBuf,
    /// Its private key (PKCS#8).
    pub key: PathBuf,
    /// The leaf certificate, DER: what a client sees.
    pub der: Vec<u8>,
}

impl TestCa {
    /// A new authority (`prefix` names its directory).
    pub fn new(prefix: &str) -> Self {
        let dir = temp_dir(prefix);
        let key = KeyPair::generate().expect("a CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("sticky test CA {prefix}"));
        let cert = params.self_signed(&key).expect("a self-signed CA");
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, cert.pem()).expect("write the CA file");
        Self {
            dir,
            ca_file,
            issuer: Issuer::new(params, key),
            issued: AtomicUsize::new(0),
        }
    }

    /// The authority's certificate (PEM): what clients trust.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// A new certificate for `localhost`, `127.0.0.1` and `::1`, with
    /// common name `name`, in new files.
    pub fn issue(&self, name: &str) -> CertFiles {
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        let cert = self.dir.join(format!("{name}-{n}.pem"));
        let key = self.dir.join(format!("{name}-{n}.key"));
        self.issue_into(name, &cert, &key)
    }

    /// A new certificate (as [`issue`](Self::issue)) written over `cert`
    /// and `key`: a certificate renewed in place.
    pub fn issue_into(&self, name: &str, cert: &Path, key: &Path) -> CertFiles {
        self.issue_for_into(name, &["localhost", "127.0.0.1", "::1"], cert, key)
    }

    /// A new certificate for the DNS names and IP addresses `hosts` (its
    /// subject alternative names), with common name `name`, written over
    /// `cert` (the chain: it, then the authority) and `key`.
    pub fn issue_for_into(&self, name: &str, hosts: &[&str], cert: &Path, key: &Path) -> CertFiles {
        let leaf_key = KeyPair::generate().expect("a key");
        let mut params =
            CertificateParams::new(hosts.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>())
                .expect("certificate params");
        params.distinguished_name.push(DnType::CommonName, name);
        let leaf = params
            .signed_by(&leaf_key, &self.issuer)
            .expect("a certificate signed by the test CA");
        let ca_pem = std::fs::read_to_string(&self.ca_file).expect("read the CA file");
        std::fs::write(cert, format!("{}{ca_pem}", leaf.pem())).expect("write the certificate");
        std::fs::write(key, leaf_key.serialize_pem()).expect("write the key");
        CertFiles {
            cert: cert.to_owned(),
            key: key.to_owned(),
            der: leaf.der().to_vec(),
        }
    }

    /// The directory of its files (for other files of the same test).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The HTTP version an [`HttpsClient`] offers by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpVersion {
    /// `http/1.1` only.
    Http1,
    /// `h2` only.
    Http2,
}

enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

/// One HTTPS connection (kept alive across requests), blocking like the
/// crate's other clients: its own single-threaded event loop runs the
/// connection while a request waits.
pub struct HttpsClient {
    rt: tokio::runtime::Runtime,
    sender: Sender,
    authority: String,
    /// The protocol the server chose by ALPN.
    pub alpn: Option<Vec<u8>>,
    /// The server's leaf certificate (DER).
    pub peer_cert: Vec<u8>,
}

/// A client configuration trusting only `ca` (a PEM file), offering `alpn`.
pub fn client_config(ca: &Path, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("read the CA file") {
        roots
            .add(cert.expect("a CA certificate"))
            .expect("add the CA");
    }
    // The director's provider (docs/tls.md).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// A blocking TLS connection to `addr` as `localhost`, trusting only
/// `ca`, offering `alpn`: for raw exchanges (an upgrade, RESP) over TLS.
/// The handshake runs on the first read or write.
pub fn tls_stream(
    addr: SocketAddr,
    ca: &Path,
    alpn: &[&[u8]],
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    let tcp = std::net::TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(crate::HTTP_TIMEOUT))
        .expect("read timeout");
    let name = ServerName::try_from("localhost").expect("a server name");
    let conn = rustls::ClientConnection::new(Arc::new(client_config(ca, alpn)), name)
        .expect("a TLS client");
    rustls::StreamOwned::new(conn, tcp)
}

impl HttpsClient {
    /// Connects to `addr` as `localhost`, trusting only `ca`, offering
    /// `version`; the handshake's error if it fails (an untrusted
    /// certificate, no TLS there).
    pub fn connect(addr: SocketAddr, ca: &Path, version: HttpVersion) -> Result<Self, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("an event loop");
        let alpn: &[u8] = match version {
            HttpVersion::Http1 => b"http/1.1",
            HttpVersion::Http2 => b"h2",
        };
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(ca, &[alpn])));
        let connected = rt.block_on(async {
            let tcp = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| format!("connect {addr}: {e}"))?;
            let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
            let tls = tokio::time::timeout(crate::HTTP_TIMEOUT, connector.connect(name, tcp))
                .await
                .map_err(|_| "TLS handshake timed out".to_owned())?
                .map_err(|e| format!("TLS handshake: {e}"))?;
            let (_, session) = tls.get_ref();
            let chosen = session.alpn_protocol().map(<[u8]>::to_vec);
            let peer_cert = session
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.to_vec())
                .unwrap_or_default();
            let io = TokioIo::new(tls);
            let sender = match version {
                HttpVersion::Http1 => {
                    let (sender, conn) = http1::handshake(io)
                        .await
                        .map_err(|e| format!("HTTP/1.1 handshake: {e}"))?;
                    tokio::spawn(conn);
                    Sender::H1(sender)
                }
                HttpVersion::Http2 => {
                    let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
                        .await
                        .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
                    tokio::spawn(conn);
                    Sender::H2(sender)
                }
            };
            Ok::<_, String>((sender, chosen, peer_cert))
        })?;
        let (sender, alpn, peer_cert) = connected;
        Ok(Self {
            rt,
            sender,
            authority: format!("localhost:{}", addr.port()),
            alpn,
            peer_cert,
        })
    }

    /// One request on this connection; `Err` if the connection failed.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, String> {
        let mut builder = http::Request::builder().method(method);
        builder = match &self.sender {
            // HTTP/2 names the host in `:authority`.
            Sender::H2(_) => builder.uri(format!("https://{}{path}", self.authority)),
            Sender::H1(_) => builder.uri(path).header("host", &self.authority),
        };
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let req = builder
            .body(Full::new(Bytes::copy_from_slice(body)))
            .map_err(|e| e.to_string())?;
        let sender = &mut self.sender;
        self.rt.block_on(async {
            let exchange = async {
                let resp = match sender {
                    Sender::H1(s) => {
                        s.ready().await.map_err(|e| e.to_string())?;
                        s.send_request(req).await
                    }
                    Sender::H2(s) => {
                        s.ready().await.map_err(|e| e.to_string())?;
                        s.send_request(req).await
                    }
                }
                .map_err(|e| format!("request: {e}"))?;
                let (parts, body) = resp.into_parts();
                let body = body
                    .collect()
                    .await
                    .map_err(|e| format!("body: {e}"))?
                    .to_bytes();
                let headers = parts
                    .headers
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.as_str().to_owned(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    })
                    .collect();
                Ok::<_, String>(Response {
                    status: parts.status.as_u16(),
                    headers,
                    body: body.to_vec(),
                })
            };
            tokio::time::timeout(crate::HTTP_TIMEOUT, exchange)
                .await
                .map_err(|_| "request timed out".to_owned())?
        })
    }

    /// `GET path` with these headers; panics if the connection fails.
    pub fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Response {
        self.request("GET", path, headers, b"")
            .unwrap_or_else(|e| panic!("GET {path} over HTTPS: {e}"))
    }
}
