//! Fuzzes the cached read of a session's data (`sticky_session`'s
//! `data.rs`, through `sticky_session::fuzzing::payload`): a request reads
//! one key by scanning the stored payload with `memchr` instead of parsing
//! it, so that scan is checked against serde_json, the parser it stands in
//! for.
//!
//! The input's first line is a key to look up; the rest is a payload. Nothing
//! may panic, and:
//!
//! * for the payload as given: when serde_json reads it as a session (its
//!   whole data parses), every key of that data and the input's key read
//!   through the scan give exactly what serde_json's map holds, the keys are
//!   that map's (duplicates aside: the last one wins, as in the map), and
//!   emptiness agrees;
//! * when the rest parses as any JSON object, the same holds for the payload
//!   the session layer writes for it (`{"c":N,"d":{...}}`, the form every
//!   cached payload has), with escaped keys, nested values and strings full
//!   of quotes and backslashes; and the scan must then never need its
//!   fallback to disagree.

#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use sticky_session::fuzzing::payload;

fn agrees(payload: &[u8], extra_key: &str) {
    let (get, keys, empty) = (
        payload::get(payload, extra_key),
        payload::keys(payload),
        payload::is_empty(payload),
    );
    let Ok(map) = payload::parse(payload) else {
        return;
    };
    for key in map.keys().map(String::as_str).chain([extra_key]) {
        match payload::get(payload, key) {
            Ok(found) => assert_eq!(found.as_ref(), map.get(key), "value of {key:?}"),
            Err(e) => panic!("{key:?}: the scan failed on a payload that parses: {e}"),
        }
    }
    assert_eq!(get.ok().flatten().as_ref(), map.get(extra_key));
    let keys: BTreeSet<String> = keys.expect("keys of a payload that parses").into_iter().collect();
    let expected: BTreeSet<String> = map.keys().cloned().collect();
    assert_eq!(keys, expected);
    assert_eq!(empty.expect("emptiness of a payload that parses"), map.is_empty());
}

fuzz_target!(|input: &[u8]| {
    let (key, rest) = match input.iter().position(|&b| b == b'\n') {
        Some(i) => (&input[..i], &input[i + 1..]),
        None => (&input[..0], input),
    };
    let key = String::from_utf8_lossy(key);
    agrees(rest, &key);
    if let Ok(data) = serde_json::from_slice::<Map<String, Value>>(rest) {
        let created = u64::from(input.len() as u32);
        let written = payload::write(created, &data).expect("a map always serializes");
        agrees(&written, &key);
        assert_eq!(payload::parse(&written).ok().as_ref(), Some(&data));
    }
});
