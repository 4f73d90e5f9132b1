//! Store addresses: which [`Backend`] an address selects, and the `redis`
//! crate's connection settings for it (credentials from
//! [`ClientOptions`] applied, `TCP_NODELAY` on), without ever quoting a
//! password in an error or in the address shown as
//! [`StoreClient::addr`](crate::StoreClient::addr).
//!
//! - `host:port`, `sticky://...`: a `sticky store` ([`Backend::Native`]);
//!   `sticky+tls://...` one that speaks TLS;
//! - `redis://...`, `valkey://...`, `redis+unix://...`: Redis
//!   ([`Backend::Scripts`]); `rediss://...` over TLS;
//! - `redis+cluster://...`: a Redis Cluster ([`cluster_client`]).

use std::borrow::Cow;

use redis::io::tcp::TcpSettings;
use redis::IntoConnectionInfo;

use crate::backend::Backend;
use crate::error::{clip, ClientError};
use crate::options::ClientOptions;

/// Scheme of a `sticky store` served over TLS (`sticky store --tls-cert`).
pub(crate) const STICKY_TLS: &str = "sticky+tls://";

/// Scheme of a Redis Cluster address:
/// `redis+cluster://[user:password@]host:port,host:port[/?protocol=resp3]`.
pub(crate) const CLUSTER_SCHEME: &str = "redis+cluster://";

/// The cluster client for a Redis Cluster address (`rest` follows the
/// scheme), the address to show as [`StoreClient::addr`](crate::StoreClient::addr) and the nodes for
/// messages.
pub(crate) fn cluster_client(
    rest: &str,
    options: &ClientOptions,
) -> Result<(redis::cluster::ClusterClient, String, String), ClientError> {
    // Messages never quote the address: it may carry a password.
    let invalid = || {
        ClientError::InvalidConfig(String::from(
            "a Redis Cluster address is redis+cluster://[user:password@]host:port,host:port...",
        ))
    };
    let (hosts_etc, userinfo) = match rest.rsplit_once('@') {
        Some((creds, hosts)) => (hosts, format!("{creds}@")),
        None => (rest, String::new()),
    };
    let split = hosts_etc.find(['/', '?']).unwrap_or(hosts_etc.len());
    let (hosts, suffix) = hosts_etc.split_at(split);
    let mut nodes = Vec::new();
    for host in hosts.split(',') {
        if host.is_empty() {
            return Err(invalid());
        }
        let url = redis::parse_redis_url(&format!("redis://{userinfo}{host}{suffix}"))
            .ok_or_else(invalid)?;
        let info = url.into_connection_info().map_err(|_| invalid())?;
        let mut settings = info
            .redis_settings()
            .clone()
            .set_lib_name("sticky", env!("CARGO_PKG_VERSION"));
        if let Some(username) = &options.username {
            settings = settings.set_username(username);
        }
        if let Some(password) = &options.password {
            settings = settings.set_password(password);
        }
        nodes.push(info.set_redis_settings(settings));
    }
    let tcp = TcpSettings::default().set_nodelay(true);
    let client = redis::cluster::ClusterClientBuilder::new(nodes)
        .connection_timeout(options.connect_timeout)
        .response_timeout(options.request_timeout)
        .tcp_settings(tcp)
        .build()
        .map_err(|e| ClientError::InvalidConfig(clip(&e.to_string())))?;
    Ok((
        client,
        format!("{CLUSTER_SCHEME}{hosts}{suffix}"),
        hosts.to_owned(),
    ))
}

/// The connection info for `addr` with `options` applied, the address
/// to show as [`StoreClient::addr`](crate::StoreClient::addr), and the backend the address selects.
pub(crate) fn connection_info(
    addr: &str,
    options: &ClientOptions,
) -> Result<(redis::ConnectionInfo, String, Backend), ClientError> {
    const STICKY: &str = "sticky://";
    if addr.contains('#') {
        // The redis crate's `#insecure` turns certificate checks off.
        return Err(ClientError::InvalidConfig(String::from(
            "store addresses take no #fragment (certificate verification cannot be turned off; give a CA file instead)",
        )));
    }
    let (url_text, backend) = if let Some(rest) = addr.strip_prefix(STICKY) {
        (Cow::Owned(format!("redis://{rest}")), Backend::Native)
    } else if let Some(rest) = addr.strip_prefix(STICKY_TLS) {
        (Cow::Owned(format!("rediss://{rest}")), Backend::Native)
    } else if addr.contains("://") {
        (Cow::Borrowed(addr), Backend::Scripts)
    } else {
        (Cow::Owned(format!("redis://{addr}")), Backend::Native)
    };
    // Messages never quote `addr`: it may carry a password.
    let invalid = || {
        ClientError::InvalidConfig(String::from(
            "store address is neither host:port nor a sticky://, sticky+tls://, redis:// or rediss:// URL",
        ))
    };
    let mut url = redis::parse_redis_url(&url_text).ok_or_else(invalid)?;
    let info = url.clone().into_connection_info().map_err(|_| invalid())?;
    let public_addr = if url.password().is_some() || !url.username().is_empty() {
        // Both only fail for URLs that cannot carry credentials.
        let _ = url.set_password(None);
        let _ = url.set_username("");
        match (
            backend,
            url.as_str().strip_prefix("redis://"),
            url.as_str().strip_prefix("rediss://"),
        ) {
            // A `sticky://` (`sticky+tls://`) URL, so that the address
            // still selects the native commands.
            (Backend::Native, Some(rest), _) => format!("{STICKY}{rest}"),
            (Backend::Native, _, Some(rest)) => format!("{STICKY_TLS}{rest}"),
            _ => url.to_string(),
        }
    } else {
        addr.to_owned()
    };
    let mut redis_settings = info
        .redis_settings()
        .clone()
        .set_lib_name("sticky", env!("CARGO_PKG_VERSION"));
    if let Some(username) = &options.username {
        redis_settings = redis_settings.set_username(username);
    }
    if let Some(password) = &options.password {
        redis_settings = redis_settings.set_password(password);
    }
    // Requests are small and latency-bound: no Nagle.
    let tcp_settings: TcpSettings = info.tcp_settings().clone().set_nodelay(true);
    let info = info
        .set_redis_settings(redis_settings)
        .set_tcp_settings(tcp_settings);
    Ok((info, public_addr, backend))
}
