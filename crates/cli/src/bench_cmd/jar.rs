//! A virtual user's cookie jar: keeps every cookie the server sets and sends
//! them all back, like a browser on a single site would.
//!
//! Attributes (Path, Domain, Expires...) are ignored except for removal:
//! `Max-Age=0` (or negative) or an empty value deletes the cookie. The
//! `Cookie` header is rebuilt only when the jar changes, so a request costs
//! a reference-count increment, not a string build.

use http::HeaderValue;

/// Cookies received from one site, in the order they were first set.
#[derive(Debug, Default)]
pub(crate) struct CookieJar {
    cookies: Vec<(String, String)>,
    header: Option<HeaderValue>,
}

impl CookieJar {
    /// The `Cookie` header to send, if the jar holds any cookie.
    pub(crate) fn header(&self) -> Option<&HeaderValue> {
        self.header.as_ref()
    }

    /// How many cookies the jar holds.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.cookies.len()
    }

    /// Applies one `Set-Cookie` header value. Malformed values are ignored,
    /// as browsers do.
    pub(crate) fn set(&mut self, set_cookie: &[u8]) {
        let Ok(text) = std::str::from_utf8(set_cookie) else {
            return;
        };
        let mut parts = text.split(';');
        let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else {
            return;
        };
        let name = name.trim();
        let value = value.trim();
        if name.is_empty() {
            return;
        }
        let expired = parts.any(|attr| {
            attr.split_once('=').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("max-age")
                    && v.trim().parse::<i64>().is_ok_and(|age| age <= 0)
            })
        });
        let pos = self.cookies.iter().position(|(n, _)| n == name);
        let changed = match (pos, expired || value.is_empty()) {
            (Some(i), true) => {
                self.cookies.remove(i);
                true
            }
            (None, true) => false,
            (Some(i), false) if self.cookies[i].1 == value => false,
            (Some(i), false) => {
                value.clone_into(&mut self.cookies[i].1);
                true
            }
            (None, false) => {
                self.cookies.push((name.to_owned(), value.to_owned()));
                true
            }
        };
        if changed {
            self.rebuild();
        }
    }

    fn rebuild(&mut self) {
        if self.cookies.is_empty() {
            self.header = None;
            return;
        }
        let mut text = String::new();
        for (name, value) in &self.cookies {
            if !text.is_empty() {
                text.push_str("; ");
            }
            text.push_str(name);
            text.push('=');
            text.push_str(value);
        }
        // A cookie with bytes not allowed in a header cannot be sent back:
        // drop it rather than the whole jar.
        match HeaderValue::from_str(&text) {
            Ok(v) => self.header = Some(v),
            Err(_) => {
                self.cookies.retain(|(n, v)| {
                    HeaderValue::from_str(n).is_ok() && HeaderValue::from_str(v).is_ok()
                });
                self.header = None;
                if !self.cookies.is_empty() {
                    self.rebuild();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(jar: &CookieJar) -> Option<&str> {
        jar.header().and_then(|h| h.to_str().ok())
    }

    #[test]
    fn keeps_every_cookie_and_sends_them_back() {
        let mut jar = CookieJar::default();
        assert_eq!(sent(&jar), None);
        jar.set(b"sticky.sid=abc.def; Path=/; HttpOnly; SameSite=Lax");
        jar.set(b"sticky.route=ws1.mac; Path=/");
        assert_eq!(sent(&jar), Some("sticky.sid=abc.def; sticky.route=ws1.mac"));
        // A new value replaces the old one in place.
        jar.set(b"sticky.sid=rotated; Path=/");
        assert_eq!(sent(&jar), Some("sticky.sid=rotated; sticky.route=ws1.mac"));
        assert_eq!(jar.len(), 2);
    }

    #[test]
    fn removes_expired_cookies_and_ignores_garbage() {
        let mut jar = CookieJar::default();
        jar.set(b"a=1");
        jar.set(b"b=2; Max-Age=3600");
        jar.set(b"a=; Max-Age=0; Path=/");
        assert_eq!(sent(&jar), Some("b=2"));
        jar.set(b"b=2; max-age=-1");
        assert_eq!(sent(&jar), None);
        jar.set(b"no-equals-sign");
        jar.set(b"=value-without-name");
        jar.set(&[0xff, b'=', b'1']);
        assert_eq!(jar.len(), 0);
        jar.set(b"  spaced  =  v  ; HttpOnly");
        assert_eq!(sent(&jar), Some("spaced=v"));
    }
}
