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
