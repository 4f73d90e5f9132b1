//! The control endpoints: the web servers' (paths, the admin token, the
//! health report), shared by the director and the web-server library (see
//! "The web-server control endpoints" in `docs/protocol.md`), and the
//! actions of the `sticky up` supervisor's control API ([`ProcessAction`]),
//! shared by `sticky up`, `sticky chaos` and the director's dashboard;
//! and [`request`], the one-shot HTTP request every tool sends to one of
//! these endpoints (or to the director's admin API).

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::header::{AUTHORIZATION, CONTENT_LENGTH, HOST};
use http::{HeaderValue, Method, Request, Response};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Prefix of every reserved path. Clients never reach it through the director.
pub const RESERVED_PREFIX: &str = "/.sticky/";
/// Health report (`GET`).
pub const HEALTH_PATH: &str = "/.sticky/health";
/// A director's health check: [`HEALTH_PATH`] saying who asks. The web
/// server notes when a director last reached it (`docs/safety.md` §2, "A
/// server no director reaches lets its sessions go").
pub const DIRECTOR_CHECK_PATH: &str = "/.sticky/health?from=director";
/// A web server's probe of a session's owner before it claims the session
/// ([`HEALTH_PATH`] saying who asks): a peer wants the owner's sessions.
pub const PEER_PROBE_PATH: &str = "/.sticky/health?from=peer";

/// Who asks for a health report, by its query ([`DIRECTOR_CHECK_PATH`],
/// [`PEER_PROBE_PATH`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthAsker {
    /// A director's health check.
    Director,
    /// Another web server's probe before a claim.
    Peer,
}

impl HealthAsker {
    /// The asker a health request's query names, if any.
    pub fn of_query(query: Option<&str>) -> Option<Self> {
        let named = |path: &str| path.split_once('?').map(|(_, q)| q) == query;
        if query.is_none() {
            None
        } else if named(DIRECTOR_CHECK_PATH) {
            Some(Self::Director)
        } else if named(PEER_PROBE_PATH) {
            Some(Self::Peer)
        } else {
            None
        }
    }
}
/// Fence: new epoch, empty cache (`POST`).
pub const FENCE_PATH: &str = "/.sticky/fence";
/// Adopt a dead server's sessions (`POST`, JSON [`AdoptRequest`]): the web
/// server claims, in the background, every session the stores list as owned
/// by `owner` whose rendezvous over `among` picks it (`docs/safety.md` §5).
pub const ADOPT_PATH: &str = "/.sticky/adopt";

/// Whether a web server holds a session in memory (`GET`, this path, `/`,
/// then the session's store key in hex): in its cache, or as a copy kept
/// after a lapse or a failed write, to be claimed back. JSON
/// [`HoldsReport`]. A takeover that can reach its quorum only by counting
/// the "no copy" of stores that restarted empty asks every other web
/// server first: the only copy left may be in one of their memories
/// (`docs/safety.md` §3).
pub const HOLDS_PATH: &str = "/.sticky/holds";

/// What `GET /.sticky/holds/KEY` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldsReport {
    /// The web server's configured name (`ws1`).
    pub name: String,
    /// Its current epoch.
    pub epoch: u64,
    /// It holds a copy of the session (or may: a request has the session
    /// open right now).
    pub holds: bool,
    /// The newest copy it holds, `[generation, seq]`; none when it holds
    /// none, or when a request has the session open (unknown then).
    #[serde(default)]
    pub stamp: Option<[u64; 2]>,
}

/// Response header of a `421 Misdirected Request` from a web server: the
/// name of the server that holds the session's live lease at the stores.
/// The director re-sends the request there once and strips the header;
/// a client calling a web server directly sees it (`docs/safety.md` §4).
pub const OWNER_HEADER: &str = "sticky-owner";

/// Request header the director adds to every request it forwards: the
/// epoch it last heard the web server report. A web server whose epoch
/// differs (it fenced itself since) refuses the request untouched, so a
/// request routed before a fence can never load or serve a session after it.
pub const EPOCH_HEADER: &str = "sticky-epoch";
/// Request header the director adds to a request it sends to another
/// server than the one the client's route cookie named, when it found that
/// one down or unreachable: `name@epoch`, that server's last epoch it
/// heard. A web server that must claim the request's session probes that
/// lease's owner first and, if the probe proves it gone, ends the lease in
/// its first round instead of finding it live (`docs/safety.md` §2). Only a
/// hint: nothing is ended without the probe's proof. The director drops
/// the header from clients' requests.
pub const MOVED_FROM_HEADER: &str = "sticky-moved-from";
/// Request header a director adds to a request it relays to a peer
/// director (its own name): the session's owner holds a live lease but
/// cannot be reached from the relaying director, and the peer may reach
/// it. A director never relays a request that carries it, so a request is
/// relayed at most once; it drops the header, as every `sticky-*` one,
/// before passing the request on. A client that sends it only keeps its
/// own request from being relayed.
pub const RELAYED_HEADER: &str = "sticky-relayed-by";
/// Response header of such a refusal (`503`), carrying the web server's
/// current epoch: the request was not processed, so the director may send
/// it elsewhere.
pub const FENCED_HEADER: &str = "sticky-fenced";
/// Response header of a web server's `503` to a session request while it
/// shuts down (SIGTERM): it has dropped its cache and ends its lease, and
/// processed nothing of the request. The director marks the server down
/// at once (its clients move to their failover servers, which may claim
/// the sessions now) and sends the request there instead, rather than
/// passing the `503` on until the process is gone.
pub const STOPPING_HEADER: &str = "sticky-stopping";

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
    /// False while the server cannot write to enough stores or does not
    /// hold its lease ([`serving`](Self::serving)): the director then
    /// prefers others for new clients.
    pub ready: bool,
    /// Configured as a standby.
    pub standby: bool,
    /// True while the server holds its lease at a quorum of stores and so
    /// may serve from its cache (`docs/safety.md` §2). A server that does
    /// not answers 503 to session requests until it does.
    #[serde(default = "serving_default")]
    pub serving: bool,
    /// True once the server was told to shut down: it serves no session
    /// any more (each answers `503` with [`STOPPING_HEADER`]) and is about
    /// to exit; the director marks it down at once.
    #[serde(default)]
    pub stopping: bool,
}

fn serving_default() -> bool {
    true
}

/// The body of `POST /.sticky/adopt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdoptRequest {
    /// The dead lease, `name@epoch`, whose sessions are adopted.
    pub owner: String,
    /// The servers the director routes the dead server's sessions to
    /// (its failover candidates). A server adopts the sessions for which
    /// the director's failover choice over these candidates is itself:
    /// highest [`weighted_score`](crate::rendezvous::weighted_score) of
    /// [`sha256_hash`](crate::rendezvous::sha256_hash)`(session cookie
    /// value, name)` and the weight, ties to the higher hash.
    pub among: Vec<AdoptTarget>,
}

/// One failover candidate of an [`AdoptRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdoptTarget {
    /// The web server's name.
    pub name: String,
    /// Its routing weight (0 counts as 1).
    pub weight: u32,
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

/// Why a [`request`] brought no answer. The messages are those the
/// director's dashboard shows for the supervisor.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The TCP connection could not be made.
    #[error("cannot connect: {0}")]
    Connect(#[source] std::io::Error),
    /// The HTTP/1.1 handshake failed.
    #[error("HTTP handshake failed: {0}")]
    Handshake(#[source] hyper::Error),
    /// The path is not a valid request target.
    #[error("bad path")]
    Path(#[source] http::uri::InvalidUri),
    /// The request failed before an answer came.
    #[error("request failed: {0}")]
    Send(#[source] hyper::Error),
    /// The answer's body could not be read or was over the size limit.
    #[error("unreadable answer: {0}")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// No whole answer within the time limit.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// `Bearer <token>`: the `Authorization` value of a [`request`] with the
/// admin token.
///
/// # Errors
///
/// If the token has bytes a header value cannot carry.
pub fn bearer(token: &str) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
    HeaderValue::from_str(&format!("Bearer {token}"))
}

/// One request to a control endpoint (`/.sticky/health`, the `sticky up`
/// supervisor's `/api/processes`, the director's `/api/cluster`...) over
/// a fresh HTTP/1.1 connection: `method path` with `Host`, the
/// `authorization` value if given (see [`bearer`]), no body
/// (`Content-Length: 0` on a `POST`). The whole exchange, connecting
/// included, must end within `limit`, and the answer's body may have at
/// most `max_answer` bytes.
///
/// # Errors
///
/// [`RequestError`] says which step failed; an answer of any status is
/// `Ok`.
pub async fn request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    authorization: Option<&HeaderValue>,
    limit: Duration,
    max_answer: usize,
) -> Result<Response<Bytes>, RequestError> {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(RequestError::Connect)?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(RequestError::Handshake)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let is_post = method == Method::POST;
        let mut req = Request::new(Empty::<Bytes>::new());
        *req.method_mut() = method;
        *req.uri_mut() = path.parse().map_err(RequestError::Path)?;
        let h = req.headers_mut();
        if let Ok(host) = HeaderValue::from_str(&addr.to_string()) {
            h.insert(HOST, host);
        }
        if let Some(value) = authorization {
            h.insert(AUTHORIZATION, value.clone());
        }
        if is_post {
            h.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        }
        let resp = sender.send_request(req).await.map_err(RequestError::Send)?;
        let (head, body) = resp.into_parts();
        let body = Limited::new(body, max_answer)
            .collect()
            .await
            .map_err(RequestError::Body)?
            .to_bytes();
        Ok(Response::from_parts(head, body))
    };
    tokio::time::timeout(limit, exchange)
        .await
        .map_err(|_| RequestError::Timeout(limit))?
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    #[test]
    fn a_health_query_names_its_asker() {
        use super::{HealthAsker, DIRECTOR_CHECK_PATH, PEER_PROBE_PATH};
        let query = |p: &'static str| p.split_once('?').map(|(_, q)| q);
        assert_eq!(
            HealthAsker::of_query(query(DIRECTOR_CHECK_PATH)),
            Some(HealthAsker::Director)
        );
        assert_eq!(
            HealthAsker::of_query(query(PEER_PROBE_PATH)),
            Some(HealthAsker::Peer)
        );
        assert_eq!(HealthAsker::of_query(None), None);
        assert_eq!(HealthAsker::of_query(Some("from=someone")), None);
    }

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
            serving: true,
            stopping: false,
        };
        let json = serde_json::to_string(&r).unwrap_or_default();
        assert_eq!(
            json,
            r#"{"name":"ws1","epoch":7,"sessions":3,"ready":true,"standby":false,"serving":true,"stopping":false}"#
        );
        let old: HealthReport = serde_json::from_str(
            r#"{"name":"ws1","epoch":7,"sessions":3,"ready":true,"standby":false}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(old.serving, "a report without the field: serving");
        assert!(!old.stopping, "a report without the field: not stopping");
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

    /// A server on port 0 that answers one request with `answer` (or never,
    /// if `None`) and hands back the request head it read.
    async fn one_shot_server(
        answer: Option<&'static str>,
    ) -> (SocketAddr, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).await.expect("read");
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            match answer {
                Some(a) => s.write_all(a.as_bytes()).await.expect("write"),
                // Hold the connection open without answering.
                None => std::future::pending::<()>().await,
            }
            String::from_utf8_lossy(&head).to_lowercase()
        });
        (addr, task)
    }

    const OK_JSON: &str =
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
    const SECOND: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn request_sends_host_token_and_an_empty_post() {
        let (addr, head) = one_shot_server(Some(OK_JSON)).await;
        let token = bearer("abc").expect("token");
        let path = "/api/processes/ws1/kill";
        let resp = request(addr, Method::POST, path, Some(&token), SECOND, 1024)
            .await
            .expect("answer");
        assert_eq!(resp.status(), http::StatusCode::OK);
        assert_eq!(
            resp.headers().get(http::header::CONTENT_TYPE),
            Some(&HeaderValue::from_static("application/json"))
        );
        assert_eq!(resp.body().as_ref(), b"{}");
        let head = head.await.expect("server");
        assert!(
            head.starts_with("post /api/processes/ws1/kill http/1.1\r\n"),
            "{head}"
        );
        assert!(head.contains(&format!("host: {addr}\r\n")), "{head}");
        assert!(head.contains("authorization: bearer abc\r\n"), "{head}");
        assert!(head.contains("content-length: 0\r\n"), "{head}");
    }

    #[tokio::test]
    async fn a_get_without_token_carries_neither() {
        let (addr, head) = one_shot_server(Some(OK_JSON)).await;
        let resp = request(addr, Method::GET, HEALTH_PATH, None, SECOND, 1024)
            .await
            .expect("answer");
        assert_eq!(resp.status(), http::StatusCode::OK);
        let head = head.await.expect("server");
        assert!(
            head.starts_with("get /.sticky/health http/1.1\r\n"),
            "{head}"
        );
        assert!(!head.contains("authorization:"), "{head}");
        assert!(!head.contains("content-length:"), "{head}");
    }

    #[tokio::test]
    async fn each_failed_step_has_its_error() {
        let closed = {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            l.local_addr().expect("addr")
        };
        let e = request(closed, Method::GET, "/", None, SECOND, 1024).await;
        assert!(matches!(e, Err(RequestError::Connect(_))), "{e:?}");

        let (addr, _head) = one_shot_server(Some(OK_JSON)).await;
        let e = request(addr, Method::GET, "/a b", None, SECOND, 1024).await;
        assert!(matches!(e, Err(RequestError::Path(_))), "{e:?}");

        let (addr, _head) = one_shot_server(Some(OK_JSON)).await;
        let e = request(addr, Method::GET, "/", None, SECOND, 1).await;
        assert!(matches!(e, Err(RequestError::Body(_))), "{e:?}");

        let (addr, _head) = one_shot_server(None).await;
        let limit = Duration::from_millis(200);
        let e = request(addr, Method::GET, "/", None, limit, 1024).await;
        assert!(
            matches!(e, Err(RequestError::Timeout(l)) if l == limit),
            "{e:?}"
        );
        assert_eq!(
            e.map(|_| ()).err().map(|e| e.to_string()),
            Some("no answer within 200ms".to_owned())
        );
    }
}
