//! `sticky check`'s half in this crate: every problem of a cluster file at
//! once ([`check_text`]), each a [`Problem`] naming its field, what is
//! wrong and what to do. [`ClusterFile::parse`](crate::ClusterFile::parse)
//! stops at the first; this goes on: each section (and each `[[web]]` and
//! `[[store]]` entry) is read on its own, `[session]` and `[director]` key
//! by key, then the whole file's rules are checked on what could be read,
//! and the files it names (secret, certificates, CA) are looked for.

use std::collections::HashSet;
use std::path::Path;

use serde::de::DeserializeOwned;

use crate::problem::Problem;
use crate::{DirectorSection, Mode, SessionSection, StoreEntry, WebEntry};

/// The top-level settings.
const TOP_LEVEL: [&str; 8] = [
    "secret",
    "secret_file",
    "replicas",
    "mode",
    "session",
    "director",
    "web",
    "store",
];

/// Every problem of the cluster file text `text` (empty: usable as far as
/// the file itself tells). Files it names are looked for relative to the
/// working directory, as the processes will.
pub fn check_text(text: &str) -> Vec<Problem> {
    let mut out = Vec::new();
    let table: toml::Table = match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => {
            out.push(Problem::new(
                "(syntax)",
                one_line(&e.to_string()),
                "fix the TOML at the line shown, then check again",
            ));
            return out;
        }
    };
    for key in table.keys() {
        if !TOP_LEVEL.contains(&key.as_str()) {
            out.push(unknown(key, "the top level"));
        }
    }
    let secret: Option<String> = field(&table, "secret", "secret", &mut out);
    let secret_file: Option<std::path::PathBuf> =
        field(&table, "secret_file", "secret_file", &mut out);
    let replicas: Option<usize> = field(&table, "replicas", "replicas", &mut out);
    let _: Option<Mode> = field(&table, "mode", "mode", &mut out);
    match (&secret, &secret_file) {
        (Some(_), Some(_)) => out.push(Problem::new(
            "secret, secret_file",
            "both are given".into(),
            "keep one: secret_file keeps the secret out of this file",
        )),
        (None, None) if !table.contains_key("secret") && !table.contains_key("secret_file") => {
            out.push(Problem::new(
                "secret",
                "no cluster secret".into(),
                "add secret = \"...\" (32 characters or more; `sticky init` makes one) or secret_file = \"/path\"",
            ));
        }
        (Some(s), None) if s.chars().count() < 32 => out.push(Problem::new(
            "secret",
            format!("{} characters; at least 32 are needed", s.chars().count()),
            "use a longer random secret, e.g. `openssl rand -hex 32`",
        )),
        (None, Some(f)) => match std::fs::read_to_string(f) {
            Ok(text) if text.lines().next().unwrap_or_default().chars().count() < 32 => {
                out.push(Problem::new(
                    "secret_file",
                    format!(
                        "the first line of {} is shorter than 32 characters",
                        f.display()
                    ),
                    "put a secret of 32 characters or more on its first line",
                ));
            }
            Ok(_) => {}
            Err(e) => out.push(Problem::new(
                "secret_file",
                format!("cannot read {}: {e}", f.display()),
                "create the file (mode 0600) or fix the path",
            )),
        },
        _ => {}
    }
    if let Some(r) = replicas {
        if !(1..=2).contains(&r) {
            out.push(Problem::new(
                "replicas",
                format!("{r}; it must be 1 or 2"),
                "set replicas = 2 (each session on two stores) or 1",
            ));
        }
    }

    let session: Option<SessionSection> = section_by_key(&table, "session", "[session]", &mut out);
    let director: Option<DirectorSection> =
        section_by_key(&table, "director", "[director]", &mut out);
    let webs: Vec<WebEntry> = entries(&table, "web", &mut out);
    let stores: Vec<StoreEntry> = entries(&table, "store", &mut out);

    if let Some(d) = &director {
        out.extend(d.problems().into_iter().map(|mut p| {
            if let Some(m) = p.message.strip_prefix("[director] ") {
                p.message = m.to_owned();
            }
            p
        }));
        for (field, path) in [("tls_cert", &d.tls_cert), ("tls_key", &d.tls_key)] {
            if let Some(p) = path {
                readable(&format!("[director] {field}"), p, &mut out);
            }
        }
    }
    if let Some(s) = &session {
        if let Some(p) = &s.store_tls_ca {
            readable("[session] store_tls_ca", p, &mut out);
        }
    }
    let mut names: HashSet<String> = HashSet::new();
    if let Some(d) = &director {
        names.extend(d.instances().into_iter().map(|d| d.name));
    }
    if webs.is_empty() && !has_entry_problem(&out, "[[web]]") {
        out.push(no_entries("web"));
    }
    for w in &webs {
        if w.name.is_empty() || !names.insert(w.name.clone()) {
            out.push(Problem::new(
                &format!("[[web]] {:?} name", w.name),
                "empty, or already the name of another process".into(),
                "give every web server, store and director its own name",
            ));
        }
    }
    if stores.is_empty() && !has_entry_problem(&out, "[[store]]") {
        out.push(no_entries("store"));
    }
    for s in &stores {
        let at = |f: &str| format!("[[store]] {:?} {f}", s.name);
        if s.name.is_empty() || !names.insert(s.name.clone()) {
            out.push(Problem::new(
                &at("name"),
                "empty, or already the name of another process".into(),
                "give every web server, store and director its own name",
            ));
        }
        if s.url.as_ref().is_some_and(|u| !u.contains("://")) {
            // Never quote the URL: it may carry a password.
            out.push(Problem::new(
                &at("url"),
                "not a URL".into(),
                "write it as redis://host:port, rediss://host:port, sticky://host:port or sticky+tls://host:port",
            ));
        }
        if s.url.as_ref().is_some_and(|u| u.contains('#')) {
            out.push(Problem::new(
                &at("url"),
                "has a #fragment (such as #insecure)".into(),
                "remove it: certificate checks cannot be turned off; give [session] store_tls_ca instead",
            ));
        }
        if s.requirepass.is_some() && s.requirepass_file.is_some() {
            out.push(Problem::new(
                &at("requirepass"),
                "both requirepass and requirepass_file are given".into(),
                "keep one (requirepass_file keeps it out of this file)",
            ));
        }
        if let Some(p) = &s.requirepass_file {
            readable(&at("requirepass_file"), p, &mut out);
        }
        if s.tls_cert.is_some() != s.tls_key.is_some() {
            out.push(Problem::new(
                &at("tls_cert, tls_key"),
                "tls_cert and tls_key go together".into(),
                "add the missing one, or remove both for plain RESP",
            ));
        }
        for (f, path) in [("tls_cert", &s.tls_cert), ("tls_key", &s.tls_key)] {
            if let Some(p) = path {
                readable(&at(f), p, &mut out);
            }
        }
        let tls_url = s
            .url
            .as_ref()
            .is_some_and(|u| u.starts_with("sticky+tls://"));
        if s.tls_cert.is_some() && !tls_url {
            out.push(Problem::new(
                &at("url"),
                "the store serves TLS (tls_cert) but web servers are not told to use it".into(),
                "add url = \"sticky+tls://HOST:PORT\" (the name or address its certificate has)",
            ));
        }
    }
    if let Some(r) = replicas.filter(|r| (1..=2).contains(r)) {
        if !stores.is_empty() && stores.len() < r {
            out.push(Problem::new(
                "replicas",
                format!(
                    "replicas = {r} needs at least {r} stores; the file has {}",
                    stores.len()
                ),
                "add a [[store]] or set replicas = 1",
            ));
        }
    }
    out
}

/// Whether a problem about `prefix` entries was already reported.
fn has_entry_problem(out: &[Problem], prefix: &str) -> bool {
    out.iter().any(|p| p.field.starts_with(prefix))
}

fn no_entries(kind: &str) -> Problem {
    Problem::new(
        &format!("[[{kind}]]"),
        format!("no [[{kind}]] entry"),
        match kind {
            "web" => "add a [[web]] with name and listen for each web server",
            _ => "add a [[store]] with name and listen for each session store",
        },
    )
}

fn unknown(key: &str, place: &str) -> Problem {
    Problem::new(
        key,
        format!("unknown setting in {place}"),
        "remove it or fix its spelling (docs/configuration.md lists every setting)",
    )
}

/// One top-level value read as `T`, or a problem.
fn field<T: DeserializeOwned>(
    table: &toml::Table,
    key: &str,
    name: &str,
    out: &mut Vec<Problem>,
) -> Option<T> {
    let value = table.get(key)?.clone();
    match value.try_into::<T>() {
        Ok(v) => Some(v),
        Err(e) => {
            out.push(Problem::new(
                name,
                one_line(&e.to_string()),
                "give a value of the kind docs/configuration.md shows",
            ));
            None
        }
    }
}

/// A section whose every field has a default (`[session]`, `[director]`),
/// read key by key so that each bad key is reported; `None` if any is
/// bad or the section is absent.
fn section_by_key<T: DeserializeOwned>(
    table: &toml::Table,
    key: &str,
    place: &str,
    out: &mut Vec<Problem>,
) -> Option<T> {
    let value = table.get(key)?;
    let Some(section) = value.as_table() else {
        out.push(Problem::new(
            place,
            "not a table".into(),
            &format!("write it as a {place} section"),
        ));
        return None;
    };
    let before = out.len();
    for (k, v) in section {
        let mut one = toml::Table::new();
        one.insert(k.clone(), v.clone());
        if let Err(e) = toml::Value::Table(one).try_into::<T>() {
            let message = one_line(&e.to_string());
            if message.contains("unknown field") {
                out.push(unknown(&format!("{place} {k}"), place));
            } else {
                out.push(Problem::new(
                    &format!("{place} {k}"),
                    message,
                    "give a value of the kind docs/configuration.md shows",
                ));
            }
        }
    }
    if out.len() > before {
        return None;
    }
    match value.clone().try_into::<T>() {
        Ok(v) => Some(v),
        Err(e) => {
            out.push(Problem::new(
                place,
                one_line(&e.to_string()),
                "fix the section as docs/configuration.md shows",
            ));
            None
        }
    }
}

/// The `[[kind]]` entries that can be read; a problem for each that
/// cannot.
fn entries<T: DeserializeOwned>(table: &toml::Table, kind: &str, out: &mut Vec<Problem>) -> Vec<T> {
    let Some(value) = table.get(kind) else {
        return Vec::new();
    };
    let Some(list) = value.as_array() else {
        out.push(Problem::new(
            &format!("[[{kind}]]"),
            "not a list of tables".into(),
            &format!("write each entry as a [[{kind}]] table"),
        ));
        return Vec::new();
    };
    let mut read = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        let name = entry
            .get("name")
            .and_then(toml::Value::as_str)
            .map_or_else(|| format!("#{}", i + 1), |n| format!("{n:?}"));
        match entry.clone().try_into::<T>() {
            Ok(v) => read.push(v),
            Err(e) => out.push(Problem::new(
                &format!("[[{kind}]] {name}"),
                one_line(&e.to_string()),
                &format!("every [[{kind}]] needs name and listen (\"host:port\"); see docs/configuration.md"),
            )),
        }
    }
    read
}

/// A problem unless `path` can be read.
fn readable(field: &str, path: &Path, out: &mut Vec<Problem>) {
    if let Err(e) = std::fs::File::open(path) {
        out.push(Problem::new(
            field,
            format!("cannot read {}: {e}", path.display()),
            "fix the path, or the file's permissions for the user the process runs as",
        ));
    }
}

/// A message on one line (the TOML parser's span drawings dropped), its
/// Rust type names in plain words.
fn one_line(message: &str) -> String {
    let lines: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('|') && !l.starts_with('^'))
        .collect();
    crate::problem::plain_words(&lines.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_reported_at_once_with_its_field() {
        let text = r#"
            secret = "short"
            replicas = 3
            colour = "blue"
            [session]
            lease_ms = "soon"
            [director]
            fall = 0
            tls_cert = "/nonexistent/chain.pem"
            bogus = 1
            [[web]]
            name = "ws1"
            [[web]]
            name = "ws2"
            listen = "127.0.0.1:8002"
            [[store]]
            name = "ws2"
            listen = "127.0.0.1:7001"
            url = "127.0.0.1:7001"
            [[store]]
            name = "s9"
            listen = "127.0.0.1:7009"
            tls_cert = "/nonexistent/store.pem"
        "#;
        let problems = check_text(text);
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        for expected in [
            "secret",
            "replicas",
            "colour",
            "[session] lease_ms",
            "[director] bogus",
            "[[web]] \"ws1\"",
            "[[store]] \"ws2\" name",
            "[[store]] \"ws2\" url",
            "[[store]] \"s9\" tls_cert, tls_key",
            "[[store]] \"s9\" tls_cert",
            "[[store]] \"s9\" url",
        ] {
            assert!(
                fields.contains(&expected),
                "{expected} missing from {problems:#?}"
            );
        }
        assert!(problems.iter().all(|p| !p.fix.is_empty()));
        // [director] had a bad key: its other rules wait for it.
        let text = "secret = \"0123456789abcdef0123456789abcdef\"\n[director]\nfall = 0\nmax_connections = 0\n\
                    tls_cert = \"/nonexistent/chain.pem\"\n";
        let fields: Vec<String> = check_text(text).into_iter().map(|p| p.field).collect();
        for expected in [
            "[director] fall, rise",
            "[director] max_connections",
            "[director] tls_cert, tls_key",
            "[director] tls_cert",
            "[[web]]",
            "[[store]]",
        ] {
            assert!(
                fields.iter().any(|f| f == expected),
                "{expected} missing from {fields:?}"
            );
        }
    }

    #[test]
    fn a_good_file_has_no_problem_and_syntax_errors_are_one() {
        let good = "secret = \"0123456789abcdef0123456789abcdef\"\n\
                    [[web]]\nname = \"ws1\"\nlisten = \"127.0.0.1:8001\"\n\
                    [[store]]\nname = \"s1\"\nlisten = \"127.0.0.1:7001\"\n\
                    [[store]]\nname = \"s2\"\nlisten = \"127.0.0.1:7002\"\n";
        assert_eq!(check_text(good), Vec::new());
        let broken = check_text("secret = \"unterminated\n");
        assert_eq!(broken.len(), 1, "{broken:?}");
        assert_eq!(broken[0].field, "(syntax)");
        assert!(!broken[0].message.contains('\n'));
    }
}
