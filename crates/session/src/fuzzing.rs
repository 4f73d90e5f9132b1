//! Fuzzing-only entry points (`fuzz/`, `docs/fuzzing.md`): thin wrappers,
//! with no behaviour of their own, around session cookie parsing and the
//! cookie signer. Hidden from the documentation and not a stable API:
//! nothing but the fuzz targets may use it.

use http::HeaderMap;

use crate::id::{CookieSigner, SessionId};

/// Signs and verifies session cookie values.
#[derive(Clone)]
pub struct SessionCookieSigner(CookieSigner);

impl SessionCookieSigner {
    /// A signer with this cluster secret.
    ///
    /// # Errors
    ///
    /// Only for key lengths HMAC rejects, which is none.
    pub fn new(secret: &[u8]) -> Result<Self, hmac::digest::InvalidLength> {
        CookieSigner::new(secret).map(Self)
    }

    /// The cookie value for `id`.
    pub fn sign(&self, id: &SessionId) -> String {
        self.0.sign(id)
    }

    /// The id in a cookie value, if it is well formed and its MAC verifies.
    pub fn verify(&self, value: &str) -> Option<SessionId> {
        self.0.verify(value)
    }
}

/// The value of cookie `name` in the request's `Cookie` headers, as the
/// session layer finds it.
pub fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    crate::layer::cookie_value(headers, name)
}

/// A session payload as the stores hold it and the cache keeps it
/// (`{"c":N,"d":{...}}`), read the way a request reads it (`data.rs`):
/// one key without parsing the rest, the keys, emptiness, and all of it.
pub mod payload {
    use serde_json::{Map, Value};

    /// The value at `key`, found by the cached read's scan when the
    /// payload is in the usual form.
    ///
    /// # Errors
    ///
    /// When the payload, or the value found, is not JSON.
    pub fn get(payload: &[u8], key: &str) -> Result<Option<Value>, serde_json::Error> {
        crate::data::get::<Value>(payload, key)
    }

    /// The keys, in the order stored.
    ///
    /// # Errors
    ///
    /// When the payload is not a session's JSON.
    pub fn keys(payload: &[u8]) -> Result<Vec<String>, serde_json::Error> {
        crate::data::keys(payload)
    }

    /// Whether the session holds no data.
    ///
    /// # Errors
    ///
    /// When the payload is not a session's JSON.
    pub fn is_empty(payload: &[u8]) -> Result<bool, serde_json::Error> {
        crate::data::is_empty(payload)
    }

    /// All of the data, parsed.
    ///
    /// # Errors
    ///
    /// When the payload is not a session's JSON.
    pub fn parse(payload: &[u8]) -> Result<Map<String, Value>, serde_json::Error> {
        crate::data::parse(payload)
    }

    /// The payload the session layer writes for `data` created at `created`.
    ///
    /// # Errors
    ///
    /// Only those of serde_json's writer, which has none for a map.
    pub fn write(created: u64, data: &Map<String, Value>) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&crate::cache::StoredRef {
            c: created,
            d: data,
        })
    }
}
