//! `sticky up`: a complete local cluster from an embedded default — stores,
//! web servers, a standby and a director, each a separate OS process of
//! this binary — with a table of what runs where, and a clean stop on
//! Ctrl-C.
//!
//! - `app`: `--app`, the app process behind each sidecar web server.
//! - `args`: the command line ([`UpArgs`]) and the `--mode` parser.
//! - `plan`: the cluster file `up` generates (ports, names, secret).
//! - `supervisor`: spawning, health waits, watching, stopping children;
//!   carrying out the control API's actions.
//! - `control`: the control API (list, kill, pause, resume, restart) the
//!   dashboard reaches through the director.
//! - `netns`: `--netns`, every process in its own network namespace, and
//!   the network faults the control API serves (`sticky chaos --net`).
//! - `state`: the state file `<dir>/up.json`, the pointer to the latest
//!   run dir and the records of the running clusters, which `sticky
//!   status`, `sticky bench` and `sticky chaos --attach` read.

/// One line of what the supervisor (or the control API) did or saw, on
/// stderr, with the time in the format of the processes' own logs: a log of
/// `sticky up` (stdout and stderr together, as `sticky chaos` keeps it in
/// `up.log`) can then be read against theirs, event by event.
macro_rules! event {
    ($($arg:tt)*) => {
        eprintln!("{} {}", $crate::up::timestamp(), format_args!($($arg)*))
    };
}

/// Now, as the processes' logs print it (`tracing_subscriber`'s UTC
/// RFC 3339 timer).
pub(crate) fn timestamp() -> String {
    use tracing_subscriber::fmt::format::Writer;
    use tracing_subscriber::fmt::time::{FormatTime as _, SystemTime};
    let mut text = String::new();
    if SystemTime.format_time(&mut Writer::new(&mut text)).is_err() {
        text.clear();
    }
    text
}

mod app;
mod args;
mod control;
pub(crate) mod netns;
mod plan;
pub(crate) mod state;
mod supervisor;

use anyhow::Context;

pub(crate) use args::{mode_parser, UpArgs};
pub(crate) use plan::Plan;

/// Runs the cluster until Ctrl-C or SIGTERM.
pub(crate) fn run(args: UpArgs) -> anyhow::Result<()> {
    let mut plan = match &args.config {
        Some(file) => Plan::from_file(file)?,
        None => Plan::new(&args)?,
    };
    if let Some(app) = &args.app {
        plan.add_apps(app::AppSpec::resolve(app)?)?;
    }
    // Before the cluster file is written: it holds the namespaces'
    // addresses. Dropped (everything removed) on any error below.
    let net = if args.netns {
        Some(netns::create(&mut plan)?)
    } else {
        None
    };
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("sticky-up-{}", std::process::id())),
    };
    std::fs::create_dir_all(dir.join("logs"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    // Recorded in the state file and the pointer: must not depend on our
    // working directory.
    let dir =
        std::path::absolute(&dir).with_context(|| format!("cannot resolve {}", dir.display()))?;
    let config = match &args.config {
        Some(file) => std::path::absolute(file)
            .with_context(|| format!("cannot resolve {}", file.display()))?,
        None => plan.write(&dir)?,
    };
    if let Some(out) = &args.write_config {
        std::fs::copy(&config, out).with_context(|| format!("cannot write {}", out.display()))?;
        eprintln!("cluster file written to {}", out.display());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(plan::check_external_stores(&plan))?;
    rt.block_on(supervisor::supervise(plan, config, dir, net))
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};
    use sticky_config::Mode;

    use super::UpArgs;

    #[derive(Debug, Parser)]
    struct Up {
        #[command(flatten)]
        args: UpArgs,
    }

    #[test]
    fn mode_takes_the_cluster_file_names_and_lists_them() {
        let mode = |argv: &[&str]| Up::try_parse_from(argv).map(|u| u.args.mode);
        assert_eq!(mode(&["up"]).ok(), Some(Mode::Sync), "the default");
        for m in Mode::ALL {
            assert_eq!(mode(&["up", "--mode", m.as_str()]).ok(), Some(m));
        }
        let e = mode(&["up", "--mode", "fast"]).err().map(|e| e.to_string());
        let e = e.unwrap_or_default();
        assert!(e.contains("possible values: sync, async"), "{e}");
        let help = Up::command().render_long_help().to_string();
        for m in Mode::ALL {
            let listed = format!("- {}:", m.as_str());
            assert!(help.contains(&listed) && help.contains(m.help()), "{help}");
        }
    }
}
