//! A one-shot look at a session store for operators' tools (the director's
//! dashboard, `sticky status`): `AUTH` if a password is given, `PING`, and
//! `INFO`, pipelined on a fresh connection (TLS for a store that speaks
//! it, [`ProbeTls`]) that is closed afterwards.
//!
//! It is not the session client (the `sticky-client` crate): it keeps no
//! connection, every call is bounded by one deadline, and it needs no
//! `redis` crate, so the director can use it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// How to reach a store that speaks TLS: the name its certificate must
/// have, and the client configuration that verifies it
/// ([`crate::tls::client_config`]).
#[derive(Debug, Clone)]
pub struct ProbeTls {
    name: ServerName<'static>,
    config: Arc<rustls::ClientConfig>,
}

impl ProbeTls {
    /// TLS to `host` (a DNS name or an IP address), verified with `config`.
    ///
    /// # Errors
    ///
    /// [`ProbeError::Protocol`] if `host` is neither a name nor an address.
    pub fn new(host: &str, config: Arc<rustls::ClientConfig>) -> Result<Self, ProbeError> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| ProbeError::Protocol(format!("{host:?} is not a TLS server name")))?;
        Ok(Self { name, config })
    }
}

/// Largest `INFO` answer read.
const MAX_INFO: usize = 1 << 20;

/// What a store reports about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreInfo {
    /// Its process id (`process_id`), if it reports one.
    pub pid: Option<u32>,
    /// Keys held (session copies and tombstones).
    pub keys: u64,
    /// Accounted memory in bytes (`used_memory`).
    pub used_memory: u64,
    /// Its memory limit in bytes; 0: none (`maxmemory`).
    pub max_memory: u64,
    /// Client connections open now (`connected_clients`).
    pub connected_clients: u64,
    /// Seconds since it started (`uptime_in_seconds`).
    pub uptime_secs: u64,
    /// Milliseconds left of a restarted `sticky store`'s recovery window
    /// (`recovering_ms`), in which it grants no lease and accepts no kill
    /// or prepare; 0 otherwise, and for Redis.
    pub recovering_ms: u64,
}

/// Why a store could not be looked at.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// No connection (refused, unreachable, reset).
    #[error("cannot connect: {0}")]
    Connect(#[source] std::io::Error),
    /// The connection broke during the exchange.
    #[error("connection lost: {0}")]
    Io(#[source] std::io::Error),
    /// No complete answer before the deadline.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The store refused our password, or wants one.
    #[error("authentication: {0}")]
    Auth(String),
    /// The answer is not what a store sends.
    #[error("unexpected answer: {0}")]
    Protocol(String),
}

fn encode(args: &[&[u8]], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// One reply: `Ok(text)` for a status or bulk string, `Err(text)` for an
/// error reply.
async fn reply<S: AsyncRead + Unpin>(
    r: &mut BufReader<S>,
) -> Result<Result<String, String>, ProbeError> {
    let mut line = String::new();
    let n = r.read_line(&mut line).await.map_err(ProbeError::Io)?;
    if n == 0 {
        return Err(ProbeError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line.split_at(line.len().min(1));
    match kind {
        "+" => Ok(Ok(rest.to_owned())),
        "-" => Ok(Err(rest.chars().take(256).collect())),
        "$" => {
            let len: usize = rest
                .parse()
                .map_err(|_| ProbeError::Protocol(format!("bad bulk length {rest:?}")))?;
            if len > MAX_INFO {
                return Err(ProbeError::Protocol(format!("{len}-byte answer")));
            }
            let mut buf = vec![0u8; len + 2];
            r.read_exact(&mut buf).await.map_err(ProbeError::Io)?;
            buf.truncate(len);
            Ok(Ok(String::from_utf8_lossy(&buf).into_owned()))
        }
        _ => Err(ProbeError::Protocol(format!(
            "reply {:?}",
            line.chars().take(64).collect::<String>()
        ))),
    }
}

/// Parses the text of an `INFO` answer.
pub fn parse_info(text: &str) -> StoreInfo {
    let mut info = StoreInfo::default();
    for line in text.lines() {
        let Some((k, v)) = line.trim().split_once(':') else {
            continue;
        };
        let num = || v.parse::<u64>().unwrap_or(0);
        match k {
            "process_id" => info.pid = v.parse().ok(),
            "used_memory" => info.used_memory = num(),
            "maxmemory" => info.max_memory = num(),
            "connected_clients" => info.connected_clients = num(),
            "uptime_in_seconds" => info.uptime_secs = num(),
            "recovering_ms" => info.recovering_ms = num(),
            "db0" => {
                info.keys = v
                    .split(',')
                    .find_map(|f| f.strip_prefix("keys="))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
            }
            _ => {}
        }
    }
    info
}

/// Connects to the store at `addr`, authenticates with `password` if
/// given, and asks `PING` and `INFO`, all within `limit`.
///
/// # Errors
///
/// [`ProbeError`]: the store is unreachable, slow, refuses the password,
/// or answers something else than a store would.
pub async fn probe_store(
    addr: SocketAddr,
    password: Option<&str>,
    limit: Duration,
) -> Result<StoreInfo, ProbeError> {
    probe_store_with(addr, None, password, limit).await
}

/// [`probe_store`] over TLS when `tls` is given (the store's certificate
/// verified as `tls` says).
///
/// # Errors
///
/// As [`probe_store`]; a failed TLS handshake is [`ProbeError::Connect`].
pub async fn probe_store_with(
    addr: SocketAddr,
    tls: Option<&ProbeTls>,
    password: Option<&str>,
    limit: Duration,
) -> Result<StoreInfo, ProbeError> {
    let exchange = async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(ProbeError::Connect)?;
        let _ = stream.set_nodelay(true);
        match tls {
            None => ask(stream, password).await,
            Some(tls) => {
                let connector = tokio_rustls::TlsConnector::from(Arc::clone(&tls.config));
                let stream = connector
                    .connect(tls.name.clone(), stream)
                    .await
                    .map_err(ProbeError::Connect)?;
                ask(stream, password).await
            }
        }
    };
    tokio::time::timeout(limit, exchange)
        .await
        .map_err(|_| ProbeError::Timeout(limit))?
}

/// `AUTH` (if `password`), `PING` and `INFO` on an open connection.
async fn ask<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    password: Option<&str>,
) -> Result<StoreInfo, ProbeError> {
    let mut r = BufReader::new(stream);
    let mut req = Vec::new();
    if let Some(p) = password {
        encode(&[b"AUTH", p.as_bytes()], &mut req);
    }
    encode(&[b"PING"], &mut req);
    encode(&[b"INFO"], &mut req);
    r.get_mut().write_all(&req).await.map_err(ProbeError::Io)?;
    r.get_mut().flush().await.map_err(ProbeError::Io)?;
    if password.is_some() {
        if let Err(e) = reply(&mut r).await? {
            return Err(ProbeError::Auth(e));
        }
    }
    match reply(&mut r).await? {
        Ok(pong) if pong == "PONG" => {}
        Ok(other) => return Err(ProbeError::Protocol(format!("PING answered {other:?}"))),
        Err(e) if e.starts_with("NOAUTH") || e.starts_with("WRONGPASS") => {
            return Err(ProbeError::Auth(e))
        }
        Err(e) => return Err(ProbeError::Protocol(e)),
    }
    match reply(&mut r).await? {
        Ok(text) => Ok(parse_info(&text)),
        Err(e) => Err(ProbeError::Protocol(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields_are_read() {
        let text = "# Server\r\nprocess_id:42\r\nuptime_in_seconds:7\r\n\r\n# Clients\r\n\
                    connected_clients:3\r\n\r\n# Memory\r\nused_memory:1024\r\nmaxmemory:0\r\n\r\n\
                    # Keyspace\r\ndb0:keys=5,expires=5,avg_ttl=0\r\n\r\n\
                    # Ownership\r\nleases:2\r\nrestarted:1\r\nrecovering_ms:250\r\n";
        let info = parse_info(text);
        assert_eq!(
            info,
            StoreInfo {
                pid: Some(42),
                keys: 5,
                used_memory: 1024,
                max_memory: 0,
                connected_clients: 3,
                uptime_secs: 7,
                recovering_ms: 250,
            }
        );
        assert_eq!(parse_info("# Keyspace\r\n").keys, 0);
    }
}
