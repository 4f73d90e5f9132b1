//! `sticky up`: a complete local cluster from an embedded default — stores,
//! web servers, a standby and a director, each a separate OS process of
//! this binary — with a table of what runs where, and a clean stop on
//! Ctrl-C.
//!
//! - `plan`: the cluster file `up` generates (ports, names, secret).
//! - `supervisor`: spawning, health waits, watching, stopping children;
//!   carrying out the control API's actions.
//! - `control`: the control API (list, kill, pause, resume, restart) the
//!   dashboard reaches through the director.
//! - `state`: the state file `<dir>/up.json` and the pointer to the latest
//!   run dir, which `sticky status` reads.

mod control;
mod plan;
pub(crate) mod state;
mod supervisor;

use std::path::PathBuf;

use anyhow::Context;
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::Args;
use sticky_config::Mode;

pub(crate) use plan::Plan;

/// The parser of `--mode` (of `up` and `chaos`): the names, help lines and
/// error texts come from [`Mode`] itself, so a new mode needs no change
/// here.
pub(crate) fn mode_parser() -> impl TypedValueParser<Value = Mode> {
    PossibleValuesParser::new(Mode::ALL.map(|m| PossibleValue::new(m.as_str()).help(m.help())))
        .try_map(|name| name.parse::<Mode>())
}

/// `sticky up` options.
#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// Start the processes of this cluster file instead of the embedded
    /// default: its director, every `[[web]]` and every `[[store]]`
    /// without `url`, all on this machine (docs/configuration.md).
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = ["web", "standby", "stores", "store_url", "replicas", "mode", "port"]
    )]
    config: Option<PathBuf>,
    /// Web servers running the demo shop.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=32))]
    web: u16,
    /// Standby web servers (take over failed servers' sessions).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(0..=8))]
    standby: u16,
    /// Session stores.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=16))]
    stores: u16,
    /// Run on this existing store instead of starting `sticky store`s
    /// (repeatable; one `[[store]]` each, named s1, s2...): any address
    /// the session library takes, e.g. `redis://[user:pass@]HOST:PORT` for
    /// Redis (docs/redis.md) or `HOST:PORT` for a running `sticky store`.
    #[arg(long = "store-url", value_name = "URL", conflicts_with = "stores")]
    store_url: Vec<String>,
    /// Stores per session (1 = disjoint subsets, 2 = overlapping).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=2))]
    replicas: u16,
    /// Replication mode.
    #[arg(long, default_value_t = Mode::Sync, value_parser = mode_parser())]
    mode: Mode,
    /// The shop's port (the director); the admin listener (dashboard) is
    /// PORT+1, the supervisor's control API PORT+2, web servers PORT+11..,
    /// stores PORT+41...
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Also write the cluster file used here, to start the same cluster
    /// process by process (on several machines, after editing addresses).
    #[arg(long)]
    write_config: Option<PathBuf>,
    /// Directory for the cluster file, the state file (`up.json`, read by
    /// `sticky status`) and the processes' logs [default: a new directory
    /// under the system's temp dir].
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Runs the cluster until Ctrl-C or SIGTERM.
pub(crate) fn run(args: UpArgs) -> anyhow::Result<()> {
    let plan = match &args.config {
        Some(file) => Plan::from_file(file)?,
        None => Plan::new(&args)?,
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
    rt.block_on(supervisor::supervise(plan, config, dir))
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
