//! The route cookie: `NAME.MAC`, where `MAC` is the first 16 bytes (in
//! lowercase hex) of HMAC-SHA256(cluster secret, "sticky/route/v1\0" NAME).
//!
//! Every director of a cluster computes the same value for a server, so a
//! cookie set by one director is honoured by all of them. The value of each
//! configured server is computed once, when the routing table is built, and
//! a cookie is checked against it in constant time: no MAC is computed on the
//! request path unless the cookie names a server the table does not know.
//!
//! This module also finds cookies in `Cookie` headers, without allocating.

use hmac::{Hmac, Mac};
use http::header::{HeaderMap, HeaderValue, COOKIE};
use sha2::Sha256;
use subtle::ConstantTimeEq;

const LABEL: &[u8] = b"sticky/route/v1\0";
/// Bytes of the MAC kept in the cookie (128 bits).
const MAC_BYTES: usize = 16;

/// Signs and checks route cookie values with the cluster secret.
#[derive(Clone)]
pub(crate) struct RouteSigner {
    /// HMAC keyed with the secret (the key schedule done once). `None` only
    /// if the HMAC implementation refused the key, which it never does for
    /// HMAC-SHA256; then no cookie verifies.
    keyed: Option<Hmac<Sha256>>,
}

impl RouteSigner {
    pub(crate) fn new(secret: &[u8]) -> Self {
        Self {
            keyed: <Hmac<Sha256> as Mac>::new_from_slice(secret).ok(),
        }
    }

    fn mac(&self, name: &[u8]) -> Option<[u8; MAC_BYTES]> {
        let mut m = self.keyed.clone()?;
        m.update(LABEL);
        m.update(name);
        let full = m.finalize().into_bytes();
        let mut out = [0u8; MAC_BYTES];
        out.copy_from_slice(&full[..MAC_BYTES]);
        Some(out)
    }

    /// The cookie value naming `name`.
    pub(crate) fn value(&self, name: &str) -> String {
        match self.mac(name.as_bytes()) {
            Some(mac) => format!("{name}.{}", hex::encode(mac)),
            // Never verifies (see `keyed`).
            None => format!("{name}.{}", "x".repeat(2 * MAC_BYTES)),
        }
    }

    /// The server name in `value` if its MAC is valid.
    pub(crate) fn verify<'a>(&self, value: &'a [u8]) -> Option<&'a str> {
        let (name, mac_hex) = split_value(value)?;
        let mut mac = [0u8; MAC_BYTES];
        hex::decode_to_slice(mac_hex, &mut mac).ok()?;
        let expected = self.mac(name)?;
        if bool::from(expected.ct_eq(&mac)) {
            std::str::from_utf8(name).ok()
        } else {
            None
        }
    }
}

/// Splits a cookie value into the server name and the MAC text.
pub(crate) fn split_value(value: &[u8]) -> Option<(&[u8], &[u8])> {
    let dot = value.iter().rposition(|&b| b == b'.')?;
    let (name, mac) = (&value[..dot], &value[dot + 1..]);
    (!name.is_empty() && mac.len() == 2 * MAC_BYTES).then_some((name, mac))
}

/// True when `value` equals `expected`, compared in constant time.
pub(crate) fn same_value(value: &[u8], expected: &[u8]) -> bool {
    bool::from(value.ct_eq(expected))
}

/// The cookies the director looks at in one request.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RequestCookies<'a> {
    /// The route cookie's value, if sent.
    pub(crate) route: Option<&'a [u8]>,
    /// The session cookie's value, if sent.
    pub(crate) session: Option<&'a [u8]>,
}

impl<'a> RequestCookies<'a> {
    /// Finds the first `route` and `session` cookies in the `Cookie`
    /// headers. Malformed pairs are skipped; values may be quoted.
    pub(crate) fn find(headers: &'a HeaderMap, route: &str, session: &str) -> Self {
        Self::find_in(
            headers.get_all(COOKIE).iter().map(HeaderValue::as_bytes),
            route,
            session,
        )
    }

    /// The same over the raw values of the `Cookie` headers.
    pub(crate) fn find_in(
        values: impl IntoIterator<Item = &'a [u8]>,
        route: &str,
        session: &str,
    ) -> Self {
        let mut found = Self::default();
        for header in values {
            for pair in header.split(|&b| b == b';') {
                let pair = trim(pair);
                let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                    continue;
                };
                let name = trim(&pair[..eq]);
                let mut value = trim(&pair[eq + 1..]);
                if value.len() >= 2 && value[0] == b'"' && value[value.len() - 1] == b'"' {
                    value = &value[1..value.len() - 1];
                }
                if found.route.is_none() && name == route.as_bytes() {
                    found.route = Some(value);
                } else if found.session.is_none() && name == session.as_bytes() {
                    found.session = Some(value);
                }
                if found.route.is_some() && found.session.is_some() {
                    return found;
                }
            }
        }
        found
    }
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &s[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn signer() -> RouteSigner {
        RouteSigner::new(b"a cluster secret of at least 32 bytes!")
    }

    #[test]
    fn values_verify_and_tampering_fails() {
        let s = signer();
        let v = s.value("ws1");
        assert!(v.starts_with("ws1."));
        assert_eq!(v.len(), 4 + 32);
        assert_eq!(s.verify(v.as_bytes()), Some("ws1"));
        // Pinned: every director (and every version) must agree.
        assert_eq!(v, "ws1.34b3fd1e0a2127d1caa998bbf0ea861e");
        // Another name with ws1's MAC, a flipped MAC digit, a short MAC,
        // another secret, garbage.
        let mac = &v[4..];
        assert_eq!(s.verify(format!("ws2.{mac}").as_bytes()), None);
        let mut flipped = v.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        assert_eq!(s.verify(&flipped), None);
        assert_eq!(s.verify(&v.as_bytes()[..v.len() - 2]), None);
        let other = RouteSigner::new(b"another cluster secret, 32 bytes or more");
        assert_eq!(other.verify(v.as_bytes()), None);
        for junk in [
            &b""[..],
            b".",
            b"ws1",
            b"ws1.",
            b".0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(s.verify(junk), None);
        }
        // Names may contain dots: the MAC follows the last one.
        let dotted = s.value("eu.ws1");
        assert_eq!(s.verify(dotted.as_bytes()), Some("eu.ws1"));
    }

    #[test]
    fn finds_cookies_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            COOKIE,
            HeaderValue::from_static("a=1; sticky.route=ws2.x ;b"),
        );
        h.append(
            COOKIE,
            HeaderValue::from_static("sticky.sid=\"abc\"; sticky.route=later"),
        );
        let c = RequestCookies::find(&h, "sticky.route", "sticky.sid");
        assert_eq!(c.route, Some(&b"ws2.x"[..]));
        assert_eq!(c.session, Some(&b"abc"[..]));
        let empty = HeaderMap::new();
        let none = RequestCookies::find(&empty, "sticky.route", "sticky.sid");
        assert_eq!(none, RequestCookies::default());
        let mut odd = HeaderMap::new();
        odd.append(
            COOKIE,
            HeaderValue::from_static(";;=;sticky.route;  sticky.sid = s "),
        );
        let c = RequestCookies::find(&odd, "sticky.route", "sticky.sid");
        assert_eq!(c.route, None);
        assert_eq!(c.session, Some(&b"s"[..]));
    }
}
