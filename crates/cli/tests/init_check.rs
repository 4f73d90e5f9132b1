//! `sticky init FILE` writes a commented cluster file (a new secret, mode
//! 0600) that `sticky check` accepts and the processes start from; it
//! never overwrites a file unasked. `sticky check` reports every problem
//! of a broken file at once, each with its field and what to do, and
//! exits non-zero.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;

use sticky_test_support::{temp_dir, Sticky, TestCa};

/// The `sticky` binary under test.
const STICKY: Sticky = Sticky::new(env!("CARGO_BIN_EXE_sticky"));

fn sticky(args: &[&str]) -> (bool, String) {
    let out = STICKY.command().args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn init_writes_a_private_commented_file_that_check_accepts() {
    let dir = temp_dir("init-check");
    let file = dir.join("cluster.toml");
    let path = file.to_str().unwrap();
    let (ok, out) = sticky(&["init", path]);
    assert!(ok, "{out}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the file holds the secret");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.lines().filter(|l| l.starts_with('#')).count() >= 20,
        "commented:\n{text}"
    );
    let parsed = sticky_config::ClusterFile::load(&file).unwrap();
    let secret = parsed.secret(&file).unwrap();
    assert!(secret.len() >= 64, "a generated secret");

    let (ok, out) = sticky(&["check", path]);
    assert!(ok, "{out}");
    assert!(
        out.contains("ok (3 web servers, 3 stores, 1 director, replicas 2)"),
        "{out}"
    );

    // Never overwritten unasked; with --force a new secret.
    let (ok, out) = sticky(&["init", path]);
    assert!(!ok && out.contains("--force"), "{out}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, out) = sticky(&["init", "--force", path]);
    assert!(ok, "{out}");
    assert_ne!(std::fs::read_to_string(&file).unwrap(), text);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "--force restores the mode");
}

#[test]
fn check_lists_every_problem_with_its_field_and_fix() {
    let dir = temp_dir("check-broken");
    let file = dir.join("broken.toml");
    std::fs::write(
        &file,
        r#"
secret = "too short"
replicas = 3
colour = "blue"

[session]
lease_ms = "soon"
async_queue = "many"

[director]
fall = 0
max_connections = 0
tls_cert = "/nonexistent/chain.pem"

[[web]]
name = "ws1"

[[store]]
name = "s1"
listen = "127.0.0.1:7001"
url = "rediss://127.0.0.1:7001/#insecure"
"#,
    )
    .unwrap();
    let (ok, out) = sticky(&["check", file.to_str().unwrap()]);
    assert!(!ok, "{out}");
    for field in [
        "secret:",
        "replicas:",
        "colour:",
        "[session] lease_ms:",
        "[[web]] \"ws1\":",
        "[[store]] \"s1\" url:",
    ] {
        assert!(out.contains(field), "{field} missing:\n{out}");
    }
    assert!(out.contains("    fix: "), "{out}");
    assert!(
        out.contains("expected a whole number"),
        "types in plain words: {out}"
    );
    assert!(
        out.contains("\"soon\" is not a duration") && out.contains("500ms"),
        "a duration field says what a duration is: {out}"
    );
    let count = out.matches("    fix: ").count();
    assert!(out.contains(&format!("{count} problems")), "{out}");

    // A file right in itself but with a key that is not its certificate's:
    // found by building the director as `sticky director` would.
    let ca = TestCa::new("check-tls");
    let cert = ca.issue("shop");
    let stray = ca.issue("stray");
    let init = dir.join("cluster.toml");
    let (ok, out) = sticky(&["init", init.to_str().unwrap()]);
    assert!(ok, "{out}");
    let text = std::fs::read_to_string(&init).unwrap().replace(
        "# tls_cert = \"/etc/sticky/shop.chain.pem\"\n# tls_key = \"/etc/sticky/shop.key.pem\"",
        &format!(
            "tls_cert = {:?}\ntls_key = {:?}",
            cert.cert.display().to_string(),
            stray.key.display().to_string()
        ),
    );
    std::fs::write(&init, &text).unwrap();
    let (ok, out) = sticky(&["check", init.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("director \"director\":") && out.contains("is not the key"),
        "{out}"
    );
    let text = text.replace(
        &stray.key.display().to_string(),
        &cert.key.display().to_string(),
    );
    std::fs::write(&init, text).unwrap();
    let (ok, out) = sticky(&["check", init.to_str().unwrap()]);
    assert!(ok, "{out}");
}
