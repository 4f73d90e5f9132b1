//! The control endpoints: the web servers' (paths, the admin token, the
//! health report), shared by the director and the web-server library (see
//! "The web-server control endpoints" in `docs/protocol.md`), and the
//! actions of the `sticky up` supervisor's control API ([`ProcessAction`]),
//! shared by `sticky up`, `sticky chaos` and the director's dashboard.

use std::fmt;
use std::str::FromStr;

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

/// What the `sticky up` supervisor's control API does to a process
/// (`POST /api/processes/{name}/{action}`): the dashboard's buttons, and
/// the faults `sticky chaos` injects and heals. On the wire it is the
/// lowercase word ([`as_str`](Self::as_str)); see `docs/up.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessAction {
    /// SIGKILL; as a fault, healed by a restart.
    Kill,
    /// SIGSTOP; as a fault, healed by a resume.
    Pause,
    /// SIGCONT: heals a pause.
    Resume,
    /// Stop if running (SIGTERM, then SIGKILL), start again with the same
    /// arguments; as a fault, it heals itself.
    Restart,
}

impl ProcessAction {
    /// Every action, in the order the dashboard shows them.
    pub const ALL: [Self; 4] = [Self::Kill, Self::Pause, Self::Resume, Self::Restart];

    /// The wire name: `kill`, `pause`, `resume` or `restart`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Kill => "kill",
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Restart => "restart",
        }
    }

    /// The action that ends a fault made by this one: a restart after a
    /// kill, a resume after a pause; none after a restart (it ends by
    /// itself) or a resume (no fault).
    pub const fn heal(self) -> Option<Self> {
        match self {
            Self::Kill => Some(Self::Restart),
            Self::Pause => Some(Self::Resume),
            Self::Resume | Self::Restart => None,
        }
    }
}

impl fmt::Display for ProcessAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A word that names no [`ProcessAction`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown action {0:?}: use kill, pause, resume or restart")]
pub struct UnknownAction(pub String);

impl FromStr for ProcessAction {
    type Err = UnknownAction;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| UnknownAction(s.to_owned()))
    }
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

    #[test]
    fn process_actions_keep_their_wire_names() {
        let words: Vec<String> = ProcessAction::ALL.iter().map(|a| a.to_string()).collect();
        assert_eq!(words, ["kill", "pause", "resume", "restart"]);
        for a in ProcessAction::ALL {
            assert_eq!(a.as_str().parse::<ProcessAction>(), Ok(a));
            let json = serde_json::to_string(&a).unwrap_or_default();
            assert_eq!(json, format!("\"{a}\""));
        }
        assert!("Kill".parse::<ProcessAction>().is_err(), "case matters");
        assert!(" kill".parse::<ProcessAction>().is_err());
        assert!("stop".parse::<ProcessAction>().is_err());
    }

    #[test]
    fn faults_heal_with_their_counterpart() {
        assert_eq!(ProcessAction::Kill.heal(), Some(ProcessAction::Restart));
        assert_eq!(ProcessAction::Pause.heal(), Some(ProcessAction::Resume));
        assert_eq!(ProcessAction::Restart.heal(), None);
        assert_eq!(ProcessAction::Resume.heal(), None);
    }
}
