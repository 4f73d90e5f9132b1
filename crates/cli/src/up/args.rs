//! `sticky up`'s command line: [`UpArgs`] and the `--mode` parser it
//! shares with `sticky chaos`.

use std::path::PathBuf;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::Args;
use sticky_config::Mode;

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
        conflicts_with_all = ["web", "standby", "stores", "store_url", "store_tls_ca", "replicas", "mode", "port", "directors", "tls_cert"]
    )]
    pub(super) config: Option<PathBuf>,
    /// Web servers running the demo shop (1 to 32).
    #[arg(long, allow_negative_numbers = true, default_value_t = 3, value_parser = crate::values::whole::<u16>(1, 32))]
    pub(super) web: u16,
    /// Standby web servers (take over failed servers' sessions; 0 to 8).
    #[arg(long, allow_negative_numbers = true, default_value_t = 1, value_parser = crate::values::whole::<u16>(0, 8))]
    pub(super) standby: u16,
    /// Session stores (1 to 16).
    #[arg(long, allow_negative_numbers = true, default_value_t = 3, value_parser = crate::values::whole::<u16>(1, 16))]
    pub(super) stores: u16,
    /// Run on this existing store instead of starting `sticky store`s
    /// (repeatable; one `[[store]]` each, named s1, s2...). A running
    /// `sticky store`: `HOST:PORT`, `sticky://[:PASSWORD@]HOST:PORT`, or
    /// `sticky+tls://[:PASSWORD@]HOST:PORT` when it serves TLS. A Redis
    /// server (docs/redis.md): `redis://[[USER]:PASSWORD@]HOST[:PORT]`, or
    /// `rediss://...` over TLS. TLS stores are verified against
    /// --store-tls-ca, else the system's trust store.
    #[arg(long = "store-url", value_name = "URL", conflicts_with = "stores")]
    pub(super) store_url: Vec<String>,
    /// The PEM file of the CA certificates that the TLS stores of
    /// --store-url (`sticky+tls://`, `rediss://`) are verified against,
    /// instead of the system's trust store.
    #[arg(long, value_name = "FILE", requires = "store_url")]
    pub(super) store_tls_ca: Option<PathBuf>,
    /// Stores per session (1 = disjoint subsets, 2 = overlapping).
    #[arg(long, allow_negative_numbers = true, default_value_t = 2, value_parser = crate::values::whole::<u16>(1, 2))]
    pub(super) replicas: u16,
    /// Replication mode.
    #[arg(long, default_value_t = Mode::Sync, value_parser = mode_parser())]
    pub(super) mode: Mode,
    /// Directors, each its own process serving the same shop (any one
    /// will do; drain and evacuate asked on one reach all; 1 to 4).
    #[arg(long, allow_negative_numbers = true, default_value_t = 1, value_parser = crate::values::whole::<u16>(1, 4))]
    pub(super) directors: u16,
    /// The shop's port (the director); the admin listener (dashboard) is
    /// PORT+1, the supervisor's control API PORT+2; directors 2, 3 and 4
    /// serve the shop on PORT+3, PORT+5, PORT+7 and their dashboards on
    /// PORT+4, PORT+6, PORT+8; web servers PORT+11.., stores PORT+41...
    #[arg(long, allow_negative_numbers = true, default_value_t = 8080, value_parser = crate::values::whole::<u16>(1, 65_535))]
    pub(super) port: u16,
    /// Serve the shop over HTTPS (HTTP/2 and HTTP/1.1) with this PEM
    /// certificate chain; needs --tls-key. The dashboard stays plain HTTP
    /// on loopback. See docs/tls.md.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub(super) tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(super) tls_key: Option<PathBuf>,
    /// Also write the cluster file used here, to start the same cluster
    /// process by process (on several machines, after editing addresses).
    #[arg(long)]
    pub(super) write_config: Option<PathBuf>,
    /// Directory for the cluster file, the state file (`up.json`, read by
    /// `sticky status`) and the processes' logs [default: a new directory
    /// under the system's temp dir].
    #[arg(long)]
    pub(super) dir: Option<PathBuf>,
    /// Run every process in its own network namespace, on one bridge
    /// (root only; for `sticky chaos --net`, which cuts links between
    /// them through the control API). Everything is removed at exit.
    #[arg(long, hide = true, conflicts_with_all = ["config", "store_url"])]
    pub(super) netns: bool,
    /// Run an app behind each web server, which then runs as a sidecar in
    /// front of it (docs/sidecar.md): `python` (the Flask shop of
    /// examples/python), `node` (the Express shop of examples/node), or a
    /// shell command serving HTTP on 127.0.0.1:$PORT.
    #[arg(long, value_name = "python|node|CMD", conflicts_with = "netns")]
    pub(super) app: Option<String>,
}
