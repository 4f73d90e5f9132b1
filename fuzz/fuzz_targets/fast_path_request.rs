//! Fuzzes the director's fast-path request parser
//! (`sticky_director::fuzzing::parse_plain_request`, i.e.
//! `fast_path::parse_request`): arbitrary bytes as what a client sent.
//!
//! It must never panic, and a request it accepts as plain must:
//!
//! * consume no more than it was given, at least the head `httparse`
//!   finds (same length, HTTP/1.1, same method, target and headers), plus
//!   exactly `Content-Length` body bytes (none without it, at most
//!   `MAX_BODY`);
//! * have exactly one `Host` header (its value is `host`), at most one
//!   `Content-Length` (all digits), no `Transfer-Encoding`, `Upgrade`,
//!   `Expect`, nor a `Connection` other than `keep-alive` tokens;
//! * have an origin-form target that is not the reserved path, and not be
//!   `CONNECT`;
//! * not depend on what follows it: the same request is parsed from
//!   exactly its own bytes, and nothing is accepted from one byte less.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sticky_director::fuzzing::{is_reserved, parse_plain_request, MAX_BODY, MAX_HEADERS};

fuzz_target!(|data: &[u8]| {
    let Some(req) = parse_plain_request(data) else {
        return;
    };
    assert!(
        req.consumed <= data.len(),
        "consumed {} of {}",
        req.consumed,
        data.len()
    );

    // What httparse alone makes of it.
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let head_len = match parsed.parse(data) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!("accepted, but httparse says {other:?}"),
    };
    assert_eq!(parsed.version, Some(1), "not HTTP/1.1");
    assert_eq!(parsed.method, Some(req.method.as_str()));
    assert_eq!(parsed.path, Some(req.target.as_str()));
    let theirs: Vec<(String, Vec<u8>)> = parsed
        .headers
        .iter()
        .map(|h| (h.name.to_owned(), h.value.to_vec()))
        .collect();
    assert_eq!(theirs, req.headers);
    assert!(head_len <= req.consumed);
    assert_eq!(req.consumed - head_len, req.body.len());
    assert_eq!(&data[head_len..req.consumed], req.body.as_slice());
    assert!(req.body.len() <= MAX_BODY);

    let named = |n: &str| {
        req.headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case(n))
            .collect::<Vec<_>>()
    };
    let hosts = named("host");
    assert_eq!(hosts.len(), 1, "Host headers: {hosts:?}");
    assert_eq!(hosts[0].1, req.host);
    let lengths = named("content-length");
    match lengths.as_slice() {
        [] => assert!(req.body.is_empty()),
        [(_, v)] => {
            assert!(!v.is_empty() && v.iter().all(u8::is_ascii_digit), "{v:?}");
            let n: usize = std::str::from_utf8(v).unwrap().parse().unwrap();
            assert_eq!(n, req.body.len());
        }
        more => panic!("several Content-Length headers accepted: {more:?}"),
    }
    for refused in ["transfer-encoding", "upgrade", "expect"] {
        assert!(named(refused).is_empty(), "{refused} accepted");
    }
    for (_, v) in named("connection") {
        for token in v.split(|&b| b == b',') {
            assert!(
                token.trim_ascii().eq_ignore_ascii_case(b"keep-alive"),
                "Connection: {v:?}"
            );
        }
    }
    assert!(req.target.starts_with('/'), "target {:?}", req.target);
    assert!(
        !is_reserved(&req.target),
        "reserved target {:?}",
        req.target
    );
    assert_ne!(req.method, "CONNECT");

    // Independent of what follows.
    let alone = parse_plain_request(&data[..req.consumed]);
    assert_eq!(
        alone.as_ref(),
        Some(&req),
        "parsed differently from its own bytes"
    );
    if req.consumed > 0 {
        let short = parse_plain_request(&data[..req.consumed - 1]);
        assert!(short.is_none(), "accepted from one byte less: {short:?}");
    }
});
