//! The systemd units in `deploy/systemd/` (docs/deploy.md): `systemd-analyze
//! verify` accepts each (no warning either), each carries the hardening the
//! deployment guide promises, and each `ExecStart=` is a command line the
//! `sticky` binary accepts; `systemd-analyze security` rates each one's
//! exposure at most 2.0 of 10.
//!
//! `systemd-analyze verify` insists that the program of `ExecStart=`
//! exists, and the units name `/usr/local/bin/sticky` (where `cargo install`
//! puts it for root): the test verifies copies of the units in a temporary
//! directory with that path rewritten to the binary under test. It needs
//! `systemd-analyze` (Debian's `systemd` package), not systemd running as
//! PID 1; without it the test is skipped loudly, except in CI.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use sticky_test_support::{find_program, require_program_from, service_values, temp_dir, Sticky};

/// The `sticky` binary under test.
const STICKY: Sticky = Sticky::new(env!("CARGO_BIN_EXE_sticky"));

/// Where the units say the binary is.
const INSTALLED: &str = "/usr/local/bin/sticky";

/// Each unit template and an instance name the cluster file of `sticky
/// init` has.
const UNITS: [(&str, &str); 3] = [
    ("sticky-store@.service", "s1"),
    ("sticky-web@.service", "ws1"),
    ("sticky-director@.service", "director"),
];

fn units_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/systemd")
}

fn unit_text(template: &str) -> String {
    let path = units_dir().join(template);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn systemd_analyze_verifies_every_unit_without_a_warning() {
    if !require_program_from("systemd-analyze", "systemd") {
        return;
    }
    let analyze = find_program("systemd-analyze").unwrap();
    let dir = temp_dir("deploy-systemd");
    let binary = std::fs::canonicalize(env!("CARGO_BIN_EXE_sticky")).unwrap();
    let mut instances = Vec::new();
    for (template, instance) in UNITS {
        let text = unit_text(template);
        assert!(text.contains(INSTALLED), "{template} runs {INSTALLED}");
        let copy = text.replace(INSTALLED, binary.to_str().unwrap());
        std::fs::write(dir.join(template), copy).unwrap();
        instances.push(dir.join(template.replace("@.", &format!("@{instance}."))));
    }
    let out = std::process::Command::new(analyze)
        .arg("verify")
        .args(&instances)
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{said}"
    );
    // It reports unknown keys, unknown system-call groups and the like as
    // warnings with exit status 0: any output is a finding.
    assert!(
        said.trim().is_empty(),
        "systemd-analyze verify warns:\n{said}"
    );

    // systemd's own rating of the hardening: an exposure of at most 2.0
    // out of 10 ("OK"; `--threshold` counts in tenths). The units are at
    // 1.3 (store, web) and 1.5 (the director, for CAP_NET_BIND_SERVICE).
    for unit in &instances {
        let out = std::process::Command::new(find_program("systemd-analyze").unwrap())
            .args(["security", "--offline=true", "--threshold=20"])
            .arg(unit)
            .env("SYSTEMD_LOG_COLOR", "0")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{} is exposed more than 2.0:\n{}{}",
            unit.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // The check has teeth: a misspelt key is reported.
    let bad = unit_text("sticky-web@.service")
        .replace(INSTALLED, binary.to_str().unwrap())
        .replace("UMask=", "UMaks=");
    std::fs::write(dir.join("sticky-bad@.service"), bad).unwrap();
    let out = std::process::Command::new(find_program("systemd-analyze").unwrap())
        .arg("verify")
        .arg(dir.join("sticky-bad@x.service"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("UMaks"),
        "a misspelt key goes unnoticed: {out:?}"
    );
}

#[test]
fn every_unit_is_hardened_and_restarts_on_failure() {
    for (template, _) in UNITS {
        let text = unit_text(template);
        for (key, value) in [
            ("DynamicUser", "yes"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("NoNewPrivileges", "yes"),
            ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
            ("SystemCallFilter", "@system-service"),
            ("ConfigurationDirectory", "sticky"),
            ("Restart", "on-failure"),
            ("SupplementaryGroups", "sticky"),
        ] {
            let values = service_values(&text, key);
            assert!(
                values.iter().any(|v| v == value),
                "{template}: want {key}={value}, have {values:?}"
            );
        }
        let caps = service_values(&text, "CapabilityBoundingSet");
        let ambient = service_values(&text, "AmbientCapabilities");
        if template.starts_with("sticky-director") {
            // Ports 80 and 443, nothing else.
            assert_eq!(caps, ["CAP_NET_BIND_SERVICE"], "{template}");
            assert_eq!(ambient, ["CAP_NET_BIND_SERVICE"], "{template}");
        } else {
            assert_eq!(caps, [""], "{template}: no capabilities at all");
            assert_eq!(ambient, [""], "{template}");
        }
    }
    let store = unit_text("sticky-store@.service");
    assert_eq!(
        service_values(&store, "StateDirectory"),
        ["sticky-store/%i"]
    );
    assert!(service_values(&store, "ExecStart")[0].contains("--state-dir ${STATE_DIRECTORY}"));
    let director = unit_text("sticky-director@.service");
    assert_eq!(
        service_values(&director, "ExecReload"),
        ["/bin/kill -HUP $MAINPID"],
        "systemctl reload re-reads the certificate and the [[web]] list"
    );
}

#[test]
fn every_exec_start_is_a_command_line_sticky_accepts() {
    let dir = temp_dir("deploy-argv");
    for (template, instance) in UNITS {
        let text = unit_text(template);
        let exec = service_values(&text, "ExecStart");
        assert_eq!(exec.len(), 1, "{template}: one ExecStart");
        let words: Vec<String> = exec[0]
            .split_whitespace()
            .map(|w| {
                w.replace("%i", instance)
                    .replace("${STATE_DIRECTORY}", dir.to_str().unwrap())
            })
            .collect();
        assert_eq!(words[0], INSTALLED, "{template}");
        // clap rejects an unknown flag or a missing value before it gets to
        // --help, which then exits 0 without starting anything.
        let out = STICKY
            .command()
            .args(&words[1..])
            .arg("--help")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{template}: sticky {:?} is refused: {}",
            &words[1..],
            String::from_utf8_lossy(&out.stderr)
        );
        // And a flag the binary does not know is refused the same way, so
        // the check above means something.
        let out = STICKY
            .command()
            .args(&words[1..])
            .args(["--no-such-flag", "--help"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{template}: --no-such-flag accepted");
    }
}
