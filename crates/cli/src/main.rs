//! The `sticky` binary: parses the command line and hands over to the
//! component libraries.

mod bench_cmd;
mod chaos_cmd;
mod demo;
mod director_cmd;
mod file_cmd;
mod shutdown;
mod sidecar;
mod status_cmd;
mod store_cmd;
mod up;
/// Value parsers of the flags and the error text (plain words, each
/// cause once).
mod values;
mod web_cmd;

use clap::{Parser, Subcommand};

/// Sticky: web sessions served from local memory that survive server failures.
#[derive(Debug, Parser)]
#[command(name = "sticky", version, about, long_about = None)]
struct Cli {
    /// Log filter (tracing's env-filter syntax), e.g. `info` or `sticky_store=debug`.
    #[arg(long, global = true, env = "STICKY_LOG", default_value = "info")]
    log: String,

    /// Stop (as on SIGTERM) when the process with this PID is no longer
    /// our parent: `sticky up` and `sticky chaos` give it to the processes
    /// they start, so that none is left behind if they are killed.
    #[arg(long, global = true, hide = true, value_name = "PID")]
    parent_pid: Option<i32>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a session store (RESP server with fenced session commands).
    Store(store_cmd::StoreArgs),
    /// Run the director: sticky routing, health checks and failover.
    Director(director_cmd::DirectorArgs),
    /// Run a web server: the demo shop on the session library.
    Web(web_cmd::WebArgs),
    /// Load-test a web app with session-keeping virtual users.
    Bench(bench_cmd::BenchArgs),
    /// Prove the invariants under faults: users check their sessions while
    /// processes are killed, paused and restarted.
    Chaos(chaos_cmd::ChaosArgs),
    /// Start a complete local cluster: director, web servers, standby, stores.
    Up(up::UpArgs),
    /// Show a running cluster's processes and their state (table or JSON).
    Status(status_cmd::StatusArgs),
    /// Write a commented cluster file to start from (new secret, mode 0600).
    Init(file_cmd::InitArgs),
    /// Check a whole cluster file before starting anything: every problem
    /// at once, each with its field and what to do.
    Check(file_cmd::CheckArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // `sticky up` uses the store client only to PING the --store-url
    // stores once, and says in its error why one does not answer: the
    // client's own warning about it would say it a second time.
    let log = match &cli.command {
        Command::Up(_) if cli.log == "info" => "info,sticky_client=error",
        _ => cli.log.as_str(),
    };
    let filter = tracing_subscriber::EnvFilter::try_new(log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Some(parent) = cli.parent_pid {
        watch_parent(parent);
    }
    let result = match cli.command {
        Command::Store(args) => store_cmd::run(args),
        Command::Director(args) => director_cmd::run(args),
        Command::Web(args) => web_cmd::run(args),
        Command::Bench(args) => bench_cmd::run(args),
        Command::Chaos(args) => chaos_cmd::run(args),
        Command::Up(args) => up::run(args),
        Command::Init(args) => file_cmd::init(args),
        Command::Check(args) => file_cmd::check(args),
        Command::Status(args) => match status_cmd::run(args) {
            Ok(true) => Ok(()),
            // Printed; some process is not up, or the cluster is stopped.
            Ok(false) => return std::process::ExitCode::from(3),
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // Once, on stderr (where the log goes too), each cause once.
            eprintln!("sticky: {}", values::error_text(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// Sends ourselves SIGTERM once `parent` is no longer our parent (it died
/// and we were re-parented), checking twice a second.
fn watch_parent(parent: i32) {
    let spawned = std::thread::Builder::new()
        .name("parent-watch".into())
        .spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_millis(500));
            if nix::unistd::getppid().as_raw() != parent {
                tracing::warn!(parent, "the process that started me is gone: stopping");
                let _ = nix::sys::signal::kill(
                    nix::unistd::getpid(),
                    nix::sys::signal::Signal::SIGTERM,
                );
                return;
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot watch the parent process");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_subcommand_parses_its_defaults_and_typed_flags() {
        for argv in [
            &["sticky", "chaos"][..],
            &[
                "sticky",
                "chaos",
                "--faults",
                "kill-web,pause-store",
                "--duration",
                "2m",
            ],
            &["sticky", "bench"],
            &["sticky", "up"],
            &["sticky", "up", "--config", "c.toml"],
            &["sticky", "status"],
        ] {
            if let Err(e) = Cli::try_parse_from(argv) {
                panic!("{argv:?}: {e}");
            }
        }
        assert!(Cli::try_parse_from(["sticky", "up", "--config", "c.toml", "--web", "2"]).is_err());
        assert!(Cli::try_parse_from(["sticky", "chaos", "--faults", "kill-director"]).is_err());
    }
}
