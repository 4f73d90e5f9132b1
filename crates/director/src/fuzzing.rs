//! Fuzzing-only entry points (`fuzz/`, `docs/fuzzing.md`): thin wrappers,
//! with no behaviour of their own, around the fast path's request parser,
//! the chunked-body scanner and the route cookie. Hidden from the
//! documentation and not a stable API: nothing but the fuzz targets may use
//! it.

use crate::chunked;
use crate::fast_path;
use crate::route_cookie;

/// Most request headers the fast path accepts.
pub const MAX_HEADERS: usize = fast_path::MAX_HEADERS;
/// Largest request body the fast path accepts.
pub const MAX_BODY: usize = fast_path::MAX_BODY;
/// Longest chunk-size line or trailer line the scanner accepts.
pub const MAX_CHUNK_LINE: usize = chunked::MAX_LINE;
/// Most bytes of trailers the scanner accepts.
pub const MAX_TRAILERS: usize = chunked::MAX_TRAILERS;

/// A request the fast path accepted, copied out of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainRequest {
    /// The method.
    pub method: String,
    /// The request target (origin form).
    pub target: String,
    /// Every header, in order, as parsed.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The value of the one `Host` header.
    pub host: Vec<u8>,
    /// The body (`Content-Length` bytes, or none).
    pub body: Vec<u8>,
    /// Bytes of the buffer the request takes: head and body.
    pub consumed: usize,
}

/// What the fast path makes of `buf`, the bytes read from a client: the
/// request at its start if it is whole and plain, `None` if the connection
/// would be handed to the general path.
pub fn parse_plain_request(buf: &[u8]) -> Option<PlainRequest> {
    let mut headers = [httparse::EMPTY_HEADER; fast_path::MAX_HEADERS];
    let req = fast_path::parse_request(buf, &mut headers)?;
    Some(PlainRequest {
        method: req.method.as_str().to_owned(),
        target: req.target.to_owned(),
        headers: req
            .headers
            .iter()
            .map(|h| (h.name.to_owned(), h.value.to_vec()))
            .collect(),
        host: req.host.to_vec(),
        body: req.body.to_vec(),
        consumed: req.consumed,
    })
}

/// Whether the fast path treats `target` as the reserved path.
pub fn is_reserved(target: &str) -> bool {
    crate::forward::is_reserved(target)
}

/// The chunked-body scanner.
#[derive(Debug, Clone, Default)]
pub struct ChunkedScanner(chunked::ChunkedScanner);

impl ChunkedScanner {
    /// A scanner at the start of a body.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the next bytes of the body; how many belong to it, or why the
    /// body is malformed (the error's text).
    ///
    /// # Errors
    ///
    /// When the body is malformed.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<usize, String> {
        self.0.feed(bytes).map_err(|e| e.to_string())
    }

    /// The whole body has been seen.
    pub fn is_done(&self) -> bool {
        self.0.is_done()
    }
}

/// Signs and checks route cookie values.
#[derive(Clone)]
pub struct RouteSigner(route_cookie::RouteSigner);

impl RouteSigner {
    /// A signer with this cluster secret.
    pub fn new(secret: &[u8]) -> Self {
        Self(route_cookie::RouteSigner::new(secret))
    }

    /// The cookie value naming the server `name`.
    pub fn value(&self, name: &str) -> String {
        self.0.value(name)
    }

    /// The server name in `value` if its MAC is valid.
    pub fn verify<'a>(&self, value: &'a [u8]) -> Option<&'a str> {
        self.0.verify(value)
    }
}

/// Splits a route cookie value into the server name and the MAC text, as
/// the routing table does before comparing it with a known server's value.
pub fn split_route_value(value: &[u8]) -> Option<(&[u8], &[u8])> {
    route_cookie::split_value(value)
}

/// The first `route` and `session` cookie values in these `Cookie` header
/// values, as the director finds them: `(route, session)`.
pub fn find_cookies<'a>(
    values: &[&'a [u8]],
    route: &str,
    session: &str,
) -> (Option<&'a [u8]>, Option<&'a [u8]>) {
    let found = route_cookie::RequestCookies::find_in(values.iter().copied(), route, session);
    (found.route, found.session)
}
