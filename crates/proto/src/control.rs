//! The web servers' control endpoints, shared by the director and the
//! web-server library (see "The web-server control endpoints" in
//! `docs/protocol.md`).

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Prefix of every reserved path. Clients never reach it through the director.
pub const RESERVED_PREFIX: &str = "/.sticky/";
/// Health report (`GET`).
pub const HEALTH_PATH: &str = "/.sticky/health";
/// Fence: new epoch, empty cache (`POST`).
pub const FENCE_PATH: &str = "/.sticky/fence";

/// Request header the director adds to every request it forwards: the
/// epoch it last heard the web server report. A web server whose epoch
/// differs (it fenced itself since) refuses the request untouched, so a
/// request routed before a fence can never load or serve a session after it.
pub const EPOCH_HEADER: &str = "sticky-epoch";
/// Response header of such a refusal (`503`), carrying the web server's
/// current epoch: the request was not processed, so the director may send
/// it elsewhere.
pub const FENCED_HEADER: &str = "sticky-fenced";

const ADMIN_LABEL: &[u8] = b"sticky/admin/v1";

/// The admin token for `secret`: lowercase hex of
/// HMAC-SHA256(secret, "sticky/admin/v1"). Sent as `Authorization: Bearer`.
pub fn admin_token(secret: &[u8]) -> String {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .map(|mut m| {
            m.update(ADMIN_LABEL);
            m.finalize().into_bytes()
        })
        .unwrap_or_default();
    hex::encode(mac)
}

/// True when the `Authorization` header value carries `expected_token`,
/// compared in constant time.
pub fn authorized(header: Option<&[u8]>, expected_token: &str) -> bool {
    let Some(value) = header.and_then(|h| h.strip_prefix(b"Bearer ")) else {
        return false;
    };
    bool::from(value.ct_eq(expected_token.as_bytes()))
}

/// What `GET /.sticky/health` and `POST /.sticky/fence` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    /// The web server's configured name (`ws1`).
    pub name: String,
    /// Grows at every fence; random at process start.
    pub epoch: u64,
    /// Sessions in the local cache.
    pub sessions: u64,
    /// False while the server cannot write to enough stores.
    pub ready: bool,
    /// Configured as a standby.
    pub standby: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_keyed_and_checked() {
        let t = admin_token(b"a secret of at least thirty-two chars!!");
        assert_eq!(t.len(), 64);
        assert_ne!(t, admin_token(b"another secret of at least thirty-two c"));
        let header = format!("Bearer {t}");
        assert!(authorized(Some(header.as_bytes()), &t));
        assert!(!authorized(Some(t.as_bytes()), &t), "scheme is required");
        assert!(!authorized(Some(b"Bearer 00"), &t));
        assert!(!authorized(None, &t));
    }

    #[test]
    fn report_json_matches_the_documented_shape() {
        let r = HealthReport {
            name: "ws1".into(),
            epoch: 7,
            sessions: 3,
            ready: true,
            standby: false,
        };
        let json = serde_json::to_string(&r).unwrap_or_default();
        assert_eq!(
            json,
            r#"{"name":"ws1","epoch":7,"sessions":3,"ready":true,"standby":false}"#
        );
    }
}
