//! Fuzzes cookie parsing and checking: the director's `Cookie` header scan
//! (`route_cookie::RequestCookies`) and route cookie check, and the session
//! layer's cookie lookup and session cookie check (`id::CookieSigner`),
//! through `sticky_director::fuzzing` and `sticky_session::fuzzing`.
//!
//! The input, split at `\n`, is the values of the request's `Cookie`
//! headers. Nothing may panic, and:
//!
//! * a cookie value the director finds is part of one header value and
//!   holds no `;`;
//! * a value either checker accepts is, but for the case of hex digits, what
//!   the signer gives for the name or id it yields (nothing else verifies);
//! * round trip, with a server name and a session id made from the input: a
//!   value the real signer makes verifies to that name or id, also after
//!   going through a `Cookie` header among other cookies (both parsers find
//!   it whole) when the name is made of cookie characters; and the same
//!   value with one byte changed does not verify (unless the change only
//!   flips the case of a hex digit, which decodes the same).

#![no_main]

use http::{header::COOKIE, HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use sticky_director::fuzzing::{find_cookies, split_route_value, RouteSigner};
use sticky_session::fuzzing::{cookie_value, SessionCookieSigner};
use sticky_session::SessionId;

const SECRET: &[u8] = b"a cluster secret of at least 32 bytes, for fuzzing";
const ROUTE: &str = "sticky.route";
const SID: &str = "sticky.sid";

/// RFC 6265 `cookie-octet`.
fn cookie_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
}

fn within(part: &[u8], whole: &[u8]) -> bool {
    let (p, w) = (part.as_ptr() as usize, whole.as_ptr() as usize);
    p >= w && p + part.len() <= w + whole.len()
}

/// `value` with byte `at % len` changed by `delta` (not 0).
fn modified(value: &[u8], at: usize, delta: u8) -> Vec<u8> {
    let mut m = value.to_vec();
    let i = at % m.len();
    m[i] = m[i].wrapping_add(delta.max(1));
    m
}

fn check_route(route: &RouteSigner, value: &[u8]) {
    let split = split_route_value(value);
    if let Some(name) = route.verify(value) {
        let (split_name, _) = split.expect("verified but does not split");
        assert_eq!(split_name, name.as_bytes());
        let signed = route.value(name);
        assert!(
            signed.as_bytes().eq_ignore_ascii_case(value),
            "{value:?} verified as {name:?}"
        );
    }
}

fn check_session(session: &SessionCookieSigner, value: &[u8]) {
    let Ok(text) = std::str::from_utf8(value) else {
        return;
    };
    if let Some(id) = session.verify(text) {
        let signed = session.sign(&id);
        assert!(
            signed.eq_ignore_ascii_case(text),
            "{text:?} verified as {id:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let route = RouteSigner::new(SECRET);
    let session = SessionCookieSigner::new(SECRET).unwrap();
    let values: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();

    // The director's scan.
    let (found_route, found_sid) = find_cookies(&values, ROUTE, SID);
    for v in [found_route, found_sid].into_iter().flatten() {
        assert!(
            values.iter().any(|h| within(v, h)),
            "{v:?} is not in a header"
        );
        assert!(!v.contains(&b';'), "{v:?}");
    }
    if let Some(v) = found_route {
        check_route(&route, v);
    }
    if let Some(v) = found_sid {
        check_session(&session, v);
    }

    // The session layer's lookup.
    let mut headers = HeaderMap::new();
    for v in &values {
        if let Ok(v) = HeaderValue::from_bytes(v) {
            headers.append(COOKIE, v);
        }
    }
    if let Some(v) = cookie_value(&headers, SID) {
        assert!(!v.contains(';'), "{v:?}");
        check_session(&session, v.as_bytes());
    }

    // Arbitrary values straight to the checkers.
    check_route(&route, data);
    check_session(&session, data);

    // Round trips, with a name and an id from the input.
    let at = data.first().map_or(0, |&b| usize::from(b));
    let delta = data.get(1).copied().unwrap_or(1);
    let name = found_route
        .and_then(split_route_value)
        .and_then(|(n, _)| std::str::from_utf8(n).ok())
        .unwrap_or_else(|| std::str::from_utf8(data).unwrap_or("ws1"));
    let mut id = [0u8; 16];
    for (d, s) in id.iter_mut().zip(data.iter().rev()) {
        *d = *s;
    }
    let id = SessionId::from_bytes(id);

    let route_value = route.value(name);
    if name.is_empty() {
        assert_eq!(route.verify(route_value.as_bytes()), None);
    } else {
        assert_eq!(route.verify(route_value.as_bytes()), Some(name));
        let changed = modified(route_value.as_bytes(), at, delta);
        if let Some(n) = route.verify(&changed) {
            assert!(
                changed.eq_ignore_ascii_case(route_value.as_bytes()),
                "{changed:?} verified as {n:?}"
            );
            assert_eq!(n, name);
        }
    }
    let sid_value = session.sign(&id);
    assert_eq!(sid_value.len(), 65);
    assert_eq!(session.verify(&sid_value), Some(id));
    let changed = modified(sid_value.as_bytes(), at, delta);
    if let Ok(text) = std::str::from_utf8(&changed) {
        if let Some(got) = session.verify(text) {
            assert!(text.eq_ignore_ascii_case(&sid_value), "{text:?} verified");
            assert_eq!(got, id);
        }
    }

    // Through a Cookie header among other cookies.
    if !name.is_empty() && name.bytes().all(cookie_octet) {
        let header = format!("a=1; {ROUTE}={route_value}; b=\"2\"; {SID}={sid_value}; c=3");
        let (r, s) = find_cookies(&[header.as_bytes()], ROUTE, SID);
        assert_eq!(r, Some(route_value.as_bytes()));
        assert_eq!(s, Some(sid_value.as_bytes()));
        assert_eq!(route.verify(route_value.as_bytes()), Some(name));
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_str(&header).unwrap());
        let v = cookie_value(&h, SID);
        assert_eq!(v, Some(sid_value.as_str()));
        assert_eq!(v.and_then(|v| session.verify(v)), Some(id));
    }
});
