//! Skipping loudly: a test that needs an external program (`redis-cli`,
//! `redis-server`, `chromedriver`) or root (network namespaces) returns
//! early with a `SKIPPED` banner when it is missing, except in CI (`CI`
//! set), where it fails instead.

use std::path::PathBuf;

/// Whether the program `name` can be run (is an executable file on `PATH`).
///
/// If it cannot, prints a loud `SKIPPED` line and returns `false` so the
/// test can return early; but when the `CI` variable is set, panics instead:
/// in CI these tests must run.
pub fn require_program(name: &str) -> bool {
    require_program_from(name, "redis-tools")
}

/// [`require_program`] for a program that Debian's package `package`
/// provides (the `SKIPPED` line says what to install).
pub fn require_program_from(name: &str, package: &str) -> bool {
    if find_program(name).is_some() {
        return true;
    }
    skip(&format!(
        "SKIPPED: {name} is not installed (apt-get install {package})"
    ));
    false
}

/// Whether this process runs as root (`id -u` prints 0), which `what`
/// needs. If not, prints a loud `SKIPPED` line and returns `false`; but
/// when the `CI` variable is set, panics instead (CI runs as root).
pub fn require_root(what: &str) -> bool {
    let uid = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|e| format!("unknown ({e})"));
    if uid == "0" {
        return true;
    }
    skip(&format!("SKIPPED: {what} needs root (uid {uid})"));
    false
}

/// Prints `msg` in a loud banner, or panics with it when `CI` is set.
pub(crate) fn skip(msg: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{msg}; CI is set, so this test must run");
    }
    eprintln!("\n{}\n{msg}\n{}\n", "=".repeat(72), "=".repeat(72));
}

/// Whether the Redis programs are installed: `redis-server` (and, if
/// `with_cli`, `redis-cli`). Prints a loud `SKIPPED` line when they are
/// not, or panics if `CI` is set.
pub fn have_redis(with_cli: bool) -> bool {
    require_program_from("redis-server", "redis-server")
        && (!with_cli || require_program_from("redis-cli", "redis-tools"))
}

/// The path of the executable `name` found on `PATH`.
pub fn find_program(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}
