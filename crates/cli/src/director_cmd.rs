//! `sticky director`: the director of the cluster file, until SIGINT or
//! SIGTERM; SIGHUP re-reads the file's `[[web]]` list and, with TLS, the
//! certificate and key files (a bad new certificate is refused and logged;
//! the old one stays in force).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use sticky_config::ClusterFile;
use sticky_director::{servers_of, Director, DirectorConfig, DirectorError};

/// `sticky director` options. Everything else comes from the cluster
/// file's `[director]`, `[[web]]`, `[session]` and secret.
#[derive(Debug, Args)]
pub(crate) struct DirectorArgs {
    /// Cluster file.
    #[arg(long, env = "STICKY_CONFIG")]
    config: PathBuf,
    /// Public address, instead of `[director].listen` (port 0: any free port).
    #[arg(long, env = "STICKY_DIRECTOR_LISTEN", value_parser = crate::values::addr)]
    listen: Option<SocketAddr>,
    /// Admin address, instead of `[director].admin`.
    #[arg(long, env = "STICKY_DIRECTOR_ADMIN", value_parser = crate::values::addr)]
    admin: Option<SocketAddr>,
    /// Which of the cluster file's directors this is: `director` (the
    /// `[director]` section's listeners) or the name of a
    /// `[[director.peers]]` entry.
    #[arg(long, env = "STICKY_DIRECTOR_NAME", default_value = sticky_config::FIRST_DIRECTOR)]
    name: String,
    /// Worker threads [default: one per core]; 1 runs a single event loop.
    #[arg(long, allow_negative_numbers = true, env = "STICKY_DIRECTOR_THREADS", value_parser = crate::values::whole::<usize>(1, 1024))]
    threads: Option<usize>,
}

/// Runs a director until SIGINT or SIGTERM.
pub(crate) fn run(args: DirectorArgs) -> anyhow::Result<()> {
    let path = args.config.clone();
    let file = ClusterFile::load(&path)?;
    let secret = file.secret(&path)?;
    let mut config =
        DirectorConfig::from_cluster(&file, &secret)?.for_director(&file, &args.name)?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(admin) = args.admin {
        config.admin = admin;
    }
    if !config.admin.ip().is_loopback() {
        tracing::warn!(
            addr = %config.admin,
            "the admin listener has no authentication and listens beyond loopback: protect it with a firewall"
        );
    }
    config.threads = match args.threads {
        Some(n) => n.max(1),
        None => std::thread::available_parallelism().map_or(1, usize::from),
    };
    let (listen, admin, redirect, relay) = (
        config.listen,
        config.admin,
        config.redirect_listen,
        config.relay_listen,
    );
    let reload_path = path.clone();
    let reloader = move || {
        let file =
            ClusterFile::load(&reload_path).map_err(|e| DirectorError::Reload(e.to_string()))?;
        match file.secret(&reload_path) {
            Ok(new) if new == secret => {}
            _ => tracing::warn!(
                "the cluster secret in {} changed or cannot be read: restart the director to apply it (keeping the old one)",
                reload_path.display()
            ),
        }
        servers_of(&file)
    };
    let director = Director::new(config)?.with_reloader(reloader);
    let public = std::net::TcpListener::bind(listen)
        .with_context(|| format!("cannot listen on {listen} (public)"))?;
    let admin = std::net::TcpListener::bind(admin)
        .with_context(|| format!("cannot listen on {admin} (admin)"))?;
    if let Some(redirect) = redirect {
        let listener = std::net::TcpListener::bind(redirect)
            .with_context(|| format!("cannot listen on {redirect} (redirect to HTTPS)"))?;
        let bound = listener.local_addr().unwrap_or(redirect);
        director.set_redirect_listener(listener)?;
        tracing::info!(redirect = %bound, "redirecting plain HTTP to HTTPS");
    }
    if let Some(relay) = relay {
        let listener = std::net::TcpListener::bind(relay)
            .with_context(|| format!("cannot listen on {relay} (relayed requests)"))?;
        let bound = listener.local_addr().unwrap_or(relay);
        director.set_relay_listener(listener)?;
        if !bound.ip().is_loopback() {
            tracing::warn!(relay = %bound, "the relay listener speaks plain HTTP: only the other directors should reach it");
        }
        tracing::info!(relay = %bound, "serving requests relayed by peer directors");
    }
    let handle = director.clone();
    // Polled on the director's first event loop: the signal handlers
    // live there.
    let shutdown = async move {
        reload_on_sighup(handle, path);
        crate::shutdown::shutdown_signal().await;
    };
    director.run(public, admin, shutdown)?;
    tracing::info!("director stopped");
    Ok(())
}

/// Re-reads the server list (and the TLS certificate) on every SIGHUP.
fn reload_on_sighup(director: Director, path: PathBuf) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(hup) => hup,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP: reload with POST /api/reload");
                return;
            }
        };
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::info!(file = %path.display(), "SIGHUP: reloading the server list and the TLS certificate");
                // A failed certificate reload is logged by the director.
                let _ = director.reload_tls();
                if let Err(e) = director.reload() {
                    tracing::error!(error = %e, "reload failed");
                }
            }
        });
    }
    #[cfg(not(unix))]
    {
        let _ = (director, path);
    }
}
