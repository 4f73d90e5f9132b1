//! Clients of the demo shop that `sticky web` serves (`/api/counter`,
//! `/api/cart`): [`Browser`] keeps the session cookie, [`CookieJar`] every
//! cookie (the director's route cookie too); [`Answer`] is a parsed
//! answer with its [`Stamp`].

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;

use serde_json::Value;

use crate::http::{request_with_cookie, Response};

/// The session cookie's default name.
pub const COOKIE_NAME: &str = "sticky.sid";

/// browser tab. The same jar may be used against any web server (as the
/// director would route it after a failover).
#[derive(Debug, Clone)]
pub struct Browser {
    cookie_name: String,
    /// The session cookie's value, if any.
    pub cookie: Option<String>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    /// An empty jar for the `sticky.sid` cookie.
    pub fn new() -> Self {
        Self {
            cookie_name: COOKIE_NAME.into(),
            cookie: None,
        }
    }

    /// A jar already holding `value` (e.g. a forged one).
    pub fn with_cookie(value: &str) -> Self {
        Self {
            cookie: Some(value.to_owned()),
            ..Self::new()
        }
    }

    /// The session id: the part of the cookie before the `.`.
    pub fn session_id(&self) -> Option<String> {
        self.cookie
            .as_deref()
            .and_then(|c| c.split_once('.'))
            .map(|(id, _)| id.to_owned())
    }

    /// The session id; panics if the jar has no session cookie.
    pub fn id(&self) -> String {
        self.session_id()
            .expect("the browser has no session cookie")
    }

    /// Sends a request with the jar's cookie (and `json` as the body, if
    /// given) and updates the jar from `Set-Cookie`. Panics on I/O errors.
    pub fn request(
        &mut self,
        addr: SocketAddr,
        method: &str,
        path: &str,
        json: Option<&Value>,
    ) -> Response {
        let cookie = self
            .cookie
            .as_ref()
            .map(|c| format!("{}={c}", self.cookie_name))
            .unwrap_or_default();
        let r = request_with_cookie(addr, method, path, &cookie, json)
            .unwrap_or_else(|e| panic!("{method} {path} on {addr}: {e}"));
        match r.set_cookie(&self.cookie_name) {
            Some(Some(v)) => self.cookie = Some(v),
            Some(None) => self.cookie = None,
            None => {}
        }
        r
    }

    /// `GET path`.
    pub fn get(&mut self, addr: SocketAddr, path: &str) -> Response {
        self.request(addr, "GET", path, None)
    }

    /// `POST path` with an optional JSON body.
    pub fn post(&mut self, addr: SocketAddr, path: &str, json: Option<&Value>) -> Response {
        self.request(addr, "POST", path, json)
    }

    /// `POST /api/counter`, which must answer 200: the parsed answer.
    pub fn increment(&mut self, addr: SocketAddr) -> Answer {
        Answer::from(&self.post(addr, "/api/counter", None))
    }

    /// `GET /api/counter`, which must answer 200: the parsed answer.
    pub fn counter(&mut self, addr: SocketAddr) -> Answer {
        Answer::from(&self.get(addr, "/api/counter"))
    }
}

/// A session stamp `(generation, seq)`, ordered lexicographically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Stamp {
    /// Grows at every change of host.
    pub generation: u64,
    /// Grows at every write.
    pub seq: u64,
}

impl Stamp {
    /// Parses the demo app's `"gen.seq"`.
    pub fn parse(s: &str) -> Stamp {
        let (g, q) = s
            .split_once('.')
            .unwrap_or_else(|| panic!("bad stamp {s:?}"));
        Stamp {
            generation: g.parse().unwrap_or_else(|_| panic!("bad stamp {s:?}")),
            seq: q.parse().unwrap_or_else(|_| panic!("bad stamp {s:?}")),
        }
    }
}

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.generation, self.seq)
    }
}

/// A demo app answer (`/api/counter` or `/api/cart...`).
#[derive(Debug, Clone)]
pub struct Answer {
    /// The whole JSON body.
    pub json: Value,
    /// `value` (counter answers; 0 otherwise).
    pub value: u64,
    /// `server`.
    pub server: String,
    /// `stamp`.
    pub stamp: Stamp,
    /// `source`: `cache`, `store` or `new`.
    pub source: String,
}

impl From<&Response> for Answer {
    /// Panics unless the response is a 200 with the demo app's fields.
    fn from(r: &Response) -> Self {
        let json = r.json_ok();
        let field = |k: &str| {
            json[k]
                .as_str()
                .unwrap_or_else(|| panic!("answer without {k:?}: {json}"))
                .to_owned()
        };
        Answer {
            value: json["value"].as_u64().unwrap_or(0),
            server: field("server"),
            stamp: Stamp::parse(&field("stamp")),
            source: field("source"),
            json,
        }
    }
}

impl Answer {
    /// The `items` of a cart answer.
    pub fn items(&self) -> Vec<String> {
        self.json["items"]
            .as_array()
            .unwrap_or_else(|| panic!("answer without items: {}", self.json))
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    }
}

/// An HTTP client keeping every cookie it is given (the director's route
/// cookie as well as the session cookie), like one browser tab talking to
/// the director.
#[derive(Debug, Clone, Default)]
pub struct CookieJar {
    /// Cookie names and values.
    pub cookies: BTreeMap<String, String>,
}

impl CookieJar {
    /// An empty jar.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends a request with the jar's cookies (and `json` as the body, if
    /// given) and updates the jar from `Set-Cookie`. Errors are returned
    /// (a request during a failover may fail); see [`CookieJar::request`].
    pub fn try_request(
        &mut self,
        addr: SocketAddr,
        method: &str,
        path: &str,
        json: Option<&Value>,
    ) -> io::Result<Response> {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let r = request_with_cookie(addr, method, path, &cookie, json)?;
        for (k, v) in r.cookies_set() {
            match v {
                Some(v) => self.cookies.insert(k, v),
                None => self.cookies.remove(&k),
            };
        }
        Ok(r)
    }

    /// [`try_request`](Self::try_request), panicking on I/O errors.
    pub fn request(
        &mut self,
        addr: SocketAddr,
        method: &str,
        path: &str,
        json: Option<&Value>,
    ) -> Response {
        self.try_request(addr, method, path, json)
            .unwrap_or_else(|e| panic!("{method} {path} on {addr}: {e}"))
    }

    /// `POST /api/cart/items {"item": item}`, which must answer 200.
    pub fn add_item(&mut self, addr: SocketAddr, item: &str) -> Answer {
        let body = serde_json::json!({ "item": item });
        Answer::from(&self.request(addr, "POST", "/api/cart/items", Some(&body)))
    }

    /// `GET /api/cart`, which must answer 200.
    pub fn cart(&mut self, addr: SocketAddr) -> Answer {
        Answer::from(&self.request(addr, "GET", "/api/cart", None))
    }

    /// The session id (the session cookie's value before the `.`).
    pub fn session_id(&self) -> Option<String> {
        self.cookies
            .get(COOKIE_NAME)
            .and_then(|c| c.split_once('.'))
            .map(|(id, _)| id.to_owned())
    }
}

// ---------------------------------------------------------------------------
