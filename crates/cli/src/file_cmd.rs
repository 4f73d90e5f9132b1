//! `sticky init FILE`: a commented cluster file to start from, with a new
//! secret and store password, readable by its owner only; and `sticky
//! check FILE`: every problem of a cluster file at once, each with its
//! field and what to do, before anything starts.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use sticky_config::{check_text, ClusterFile, Problem};

/// `sticky init` options.
#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// The cluster file to write (mode 0600: it holds the secret).
    file: PathBuf,
    /// Overwrite FILE if it exists.
    #[arg(long)]
    force: bool,
}

/// `sticky check` options.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// The cluster file to check.
    file: PathBuf,
}

/// Writes the commented cluster file.
pub(crate) fn init(args: InitArgs) -> anyhow::Result<()> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret)
        .map_err(|e| anyhow::anyhow!("no randomness for the cluster secret: {e}"))?;
    let mut password = [0u8; 24];
    getrandom::fill(&mut password)
        .map_err(|e| anyhow::anyhow!("no randomness for the store password: {e}"))?;
    let text = template(&hex::encode(secret), &hex::encode(password));
    write_private(&args.file, &text, args.force)?;
    println!(
        "wrote {} (mode 0600: it holds the cluster secret)\n\
         edit the addresses, then: sticky check {}",
        args.file.display(),
        args.file.display()
    );
    Ok(())
}

/// Writes `text` to `path`, created with mode 0600 (never readable by
/// others, not even for a moment); an existing file only with `force`.
fn write_private(path: &Path, text: &str, force: bool) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = match options.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!(
            "{} exists: not overwriting it (pass --force to replace it)",
            path.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot write {}", path.display())),
    };
    #[cfg(unix)]
    {
        // An existing file (--force) keeps its mode on open: set it.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict {}", path.display()))?;
    }
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Checks a cluster file; the error lists every problem.
pub(crate) fn check(args: CheckArgs) -> anyhow::Result<()> {
    let path = &args.file;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut problems = check_text(&text);
    if problems.is_empty() {
        // What the processes themselves would refuse at start.
        problems.extend(deeper(path));
    }
    if problems.is_empty() {
        let file = ClusterFile::parse(&text, path)?;
        let directors = file.director.as_ref().map_or(0, |d| d.instances().len());
        let count = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        println!(
            "{}: ok ({}, {}, {}, replicas {})",
            path.display(),
            count(file.web.len(), "web server"),
            count(file.store.len(), "store"),
            count(directors, "director"),
            file.replicas
        );
        return Ok(());
    }
    for p in &problems {
        println!(
            "{}: {}: {}\n    fix: {}",
            path.display(),
            p.field,
            p.message,
            p.fix
        );
    }
    bail!(
        "{}: {} problem{}",
        path.display(),
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    )
}

/// The checks that need the components: each web server's settings, each
/// store address as web servers parse it, the directors' settings and
/// TLS certificate (read and matched to its key).
fn deeper(path: &Path) -> Vec<Problem> {
    let mut out = Vec::new();
    let file = match ClusterFile::load(path) {
        Ok(f) => f,
        Err(e) => {
            out.push(problem(
                "(file)",
                e.to_string(),
                "fix what the message names",
            ));
            return out;
        }
    };
    for w in &file.web {
        if let Err(e) = crate::web_cmd::session_config(&file, path, &w.name) {
            out.push(problem(
                &format!("[[web]] {:?}", w.name),
                crate::values::error_text(&e),
                "fix the [session] setting the message names",
            ));
        }
    }
    for s in &file.store {
        let options = sticky_client::ClientOptions {
            tls_ca: file.session.store_tls_ca.clone(),
            ..sticky_client::ClientOptions::default()
        };
        if let Err(e) = sticky_client::StoreClient::new(&s.client_addr(), options) {
            out.push(problem(
                &format!("[[store]] {:?} url", s.name),
                e.to_string(),
                "write it as host:port or a sticky://, sticky+tls://, redis:// or rediss:// URL",
            ));
        }
    }
    if let Some(section) = &file.director {
        let secret = match file.secret(path) {
            Ok(s) => s,
            Err(e) => {
                out.push(problem(
                    "secret",
                    e.to_string(),
                    "give a secret of 32 characters or more",
                ));
                return out;
            }
        };
        for d in section.instances() {
            let built = sticky_director::DirectorConfig::from_cluster(&file, &secret)
                .and_then(|c| c.for_director(&file, &d.name))
                .and_then(sticky_director::Director::new);
            if let Err(e) = built {
                out.push(problem(
                    &format!("director {:?}", d.name),
                    e.to_string(),
                    "fix the [director] setting or file the message names",
                ));
                // The shared settings fail the same way for every peer.
                break;
            }
        }
    }
    out
}

fn problem(field: &str, message: String, fix: &str) -> Problem {
    Problem {
        field: field.to_owned(),
        message,
        fix: fix.to_owned(),
    }
}

/// The commented cluster file `sticky init` writes.
fn template(secret: &str, store_password: &str) -> String {
    format!(
        r#"# A Sticky cluster: one director, three web servers (one a standby),
# three session stores. Every process reads this same file; start each
# with its name:
#
#   sticky store    --config cluster.toml --name s1
#   sticky web      --config cluster.toml --name ws1
#   sticky director --config cluster.toml
#
# Check it after every edit: sticky check cluster.toml
# Every setting and its default: docs/configuration.md.
# Addresses are this machine's loopback: replace them with each machine's
# own when the processes run on several machines.

# Signs session and route cookies and derives the admin token. Keep it
# secret; every process needs the same one. (Or put it in a file of its
# own, mode 0600, and write: secret_file = "/etc/sticky/secret")
secret = "{secret}"

# Stores per session: 2 keeps every session on two stores (one may fail),
# 1 on one.
replicas = 2

# sync: a response that changed the session leaves once every copy is
# written. async: copies are written in the background (faster, may lose
# the last change of a server that dies).
mode = "sync"

[session]
# Sent with AUTH to every store; each [[store]] below requires it.
store_password = "{store_password}"
# Served over HTTPS? Then the session cookie must be Secure.
cookie_secure = false
# Seconds without a request after which a session expires.
idle_timeout_secs = 1800
# TLS stores (sticky+tls://, rediss:// urls) are verified against the
# system's trust store, or against this CA file:
# store_tls_ca = "/etc/sticky/stores-ca.pem"

[director]
# The shop's address (clients connect here) and the operators' (dashboard,
# API, metrics: keep it on loopback or behind a firewall).
listen = "127.0.0.1:8080"
admin = "127.0.0.1:8081"
# HTTPS: the certificate chain and key (PEM), reloaded on SIGHUP
# (docs/tls.md). With them, consider a redirect listener and HSTS.
# tls_cert = "/etc/sticky/shop.chain.pem"
# tls_key = "/etc/sticky/shop.key.pem"
# redirect_listen = "0.0.0.0:80"
# hsts_max_age_secs = 31536000
# With several directors ([[director.peers]]) and TLS: a plain listener,
# reachable by the other directors only, for the requests they relay here
# when they cannot reach a session's server (docs/director.md).
# relay_listen = "10.0.0.1:8082"

[[web]]
name = "ws1"
listen = "127.0.0.1:8001"
# Prometheus metrics on a listener of their own, no credentials needed
# (docs/deploy.md, "Monitoring"); off unless set. Stores take the same.
# metrics = "127.0.0.1:9101"

[[web]]
name = "ws2"
listen = "127.0.0.1:8002"

# A standby gets no new clients: it takes over those of failed servers.
[[web]]
name = "ws3"
listen = "127.0.0.1:8003"
standby = true

[[store]]
name = "s1"
listen = "127.0.0.1:7001"
requirepass = "{store_password}"

[[store]]
name = "s2"
listen = "127.0.0.1:7002"
requirepass = "{store_password}"

[[store]]
name = "s3"
listen = "127.0.0.1:7003"
requirepass = "{store_password}"
# A store serving TLS (sticky store --tls-cert ... --tls-key ...) is
# reached with: url = "sticky+tls://127.0.0.1:7003"
"#
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn the_template_is_a_valid_cluster_file() {
        let text = super::template(&"a".repeat(64), "pw");
        assert_eq!(sticky_config::check_text(&text), Vec::new());
        let file =
            sticky_config::ClusterFile::parse(&text, std::path::Path::new("c.toml")).unwrap();
        assert_eq!(file.web.len(), 3);
        assert_eq!(file.store.len(), 3);
        assert_eq!(file.store[0].requirepass.as_deref(), Some("pw"));
    }
}
