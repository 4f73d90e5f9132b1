//! Session ids and their signed cookie form.
//!
//! An id is 128 bits from the operating system's CSPRNG. Its cookie value is
//! `<32 hex id>.<32 hex MAC>`, the MAC being the first 128 bits of
//! HMAC-SHA256(secret, "sticky/sid/v1" || id). A value that does not verify
//! is treated as no session at all and never causes a store lookup.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// A session id: 128 random bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId([u8; 16]);

impl SessionId {
    /// A fresh id from the OS CSPRNG.
    ///
    /// # Errors
    ///
    /// When the OS has no randomness to give (never on a working Linux).
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut b = [0u8; 16];
        getrandom::fill(&mut b)?;
        Ok(Self(b))
    }

    /// The id with these bytes (e.g. another framework's 128-bit id).
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The store key of this session: its 32 hex characters.
    pub fn key(&self) -> String {
        hex::encode(self.0)
    }

    /// [`key`](Self::key) without allocating.
    pub(crate) fn key_bytes(&self) -> [u8; 32] {
        let mut key = [0u8; 32];
        // 16 bytes always fit 32 hex digits.
        let _ = hex::encode_to_slice(self.0, &mut key);
        key
    }

    /// Parses the 32-hex-character form.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut b = [0u8; 16];
        hex::decode_to_slice(s, &mut b).ok()?;
        Some(Self(b))
    }

    /// First 8 bytes as a number: the input of placement hashing.
    pub(crate) fn prefix_u64(&self) -> u64 {
        let mut p = [0u8; 8];
        p.copy_from_slice(&self.0[..8]);
        u64::from_le_bytes(p)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// Ids are secrets (bearer tokens): `Debug` shows only a short prefix.
impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({}…)", &self.key()[..6])
    }
}

/// Signs and verifies session cookie values with the cluster secret.
#[derive(Clone)]
pub(crate) struct CookieSigner {
    mac: Hmac<Sha256>,
}

const LABEL: &[u8] = b"sticky/sid/v1";
/// Longest cookie value we even look at.
const MAX_VALUE: usize = 65;

impl CookieSigner {
    /// # Errors
    ///
    /// Only for key lengths HMAC rejects, which is none; kept typed rather
    /// than unwrapped.
    pub(crate) fn new(secret: &[u8]) -> Result<Self, hmac::digest::InvalidLength> {
        Ok(Self {
            mac: <Hmac<Sha256> as Mac>::new_from_slice(secret)?,
        })
    }

    /// The MAC of `id`'s cookie value.
    pub(crate) fn tag(&self, id: &SessionId) -> [u8; 16] {
        let mut m = self.mac.clone();
        m.update(LABEL);
        m.update(&id.0);
        let full = m.finalize().into_bytes();
        let mut t = [0u8; 16];
        t.copy_from_slice(&full[..16]);
        t
    }

    /// The cookie value for `id`.
    pub(crate) fn sign(&self, id: &SessionId) -> String {
        Self::value(id, &self.tag(id))
    }

    /// The cookie value of `id` whose MAC is `tag`.
    pub(crate) fn value(id: &SessionId, tag: &[u8; 16]) -> String {
        format!("{}.{}", id.key(), hex::encode(tag))
    }

    /// The id in a cookie value, if it is well formed and its MAC verifies.
    pub(crate) fn verify(&self, value: &str) -> Option<SessionId> {
        let (id, given) = parse(value)?;
        self.verifies(&id, &given).then_some(id)
    }

    /// Whether `given` is `id`'s MAC (compared in constant time).
    pub(crate) fn verifies(&self, id: &SessionId, given: &[u8; 16]) -> bool {
        bool::from(self.tag(id).ct_eq(given))
    }
}

/// The id and the MAC a cookie value presents, if it is well formed; says
/// nothing of whether the MAC is right ([`CookieSigner::verifies`]).
pub(crate) fn parse(value: &str) -> Option<(SessionId, [u8; 16])> {
    if value.len() != MAX_VALUE {
        return None;
    }
    let (id, tag) = value.split_once('.')?;
    let id = SessionId::from_hex(id)?;
    let mut given = [0u8; 16];
    hex::decode_to_slice(tag, &mut given).ok()?;
    Some((id, given))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn signed_values_verify_and_forgeries_do_not() {
        let s = CookieSigner::new(b"0123456789abcdef0123456789abcdef").unwrap();
        let id = SessionId::generate().unwrap();
        let v = s.sign(&id);
        assert_eq!(v.len(), MAX_VALUE);
        assert_eq!(s.verify(&v), Some(id));
        let other = CookieSigner::new(b"another secret another secret 12").unwrap();
        assert_eq!(other.verify(&v), None, "wrong secret");
        let mut forged = v.clone().into_bytes();
        forged[0] = if forged[0] == b'0' { b'1' } else { b'0' };
        assert_eq!(s.verify(std::str::from_utf8(&forged).unwrap()), None);
        for garbage in ["", ".", "zz", &"a".repeat(65), &v[..64], &format!("{v}0")] {
            assert_eq!(s.verify(garbage), None, "{garbage:?}");
        }
    }

    #[test]
    fn ids_are_distinct_and_debug_hides_them() {
        let a = SessionId::generate().unwrap();
        let b = SessionId::generate().unwrap();
        assert_ne!(a, b);
        assert!(!format!("{a:?}").contains(&a.key()));
        assert_eq!(SessionId::from_hex(&a.key()), Some(a));
    }
}
