//! `sticky up --netns` (hidden; root only): every process of the cluster
//! in its own network namespace, one host of a [`Net`] each, with its own
//! address on one bridge; the supervisor (and `sticky chaos`, in the root
//! namespace) reach them over the bridge, as the endpoint [`Net::ROOT`].
//!
//! The supervisor's control API then also serves the network faults
//! (`GET`/`POST /api/net`, [`NetFault`]), which `sticky chaos --net`
//! injects. Everything is removed when `sticky up` ends (dropping the
//! [`Net`]); what a killed `sticky up` left behind is removed by the next
//! `sticky up --netns` (by the name prefix [`PREFIX`]).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use sticky_netfault::{Net, NetError};

use super::plan::Plan;

/// The prefix of every namespace and link `sticky up --netns` creates.
pub(crate) const PREFIX: &str = "stkup";

/// Whether this process runs as root (its effective user id is 0).
pub(crate) fn is_root() -> bool {
    // `Uid:` real, effective, saved, filesystem.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Creates one host per process of `plan` and moves the plan there: each
/// process listens on its host's address (same port), the director's
/// admin listener on the director's, the supervisor's control API on the
/// root namespace's address on the bridge.
pub(crate) fn create(plan: &mut Plan) -> anyhow::Result<Net> {
    if !is_root() {
        bail!(
            "--netns needs root (network namespaces, veth links and tc); run as root or without --netns"
        );
    }
    for program in ["ip", "tc"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()));
        if !found {
            bail!("--netns needs `{program}` (iproute2) on PATH");
        }
    }
    if !plan.external.is_empty() {
        bail!("--netns starts every store itself: it cannot use --store-url");
    }
    let names: Vec<&str> = plan.members.iter().map(|m| m.name.as_str()).collect();
    let net = Net::with_prefix(PREFIX, &names).context("cannot create the network namespaces")?;
    relocate(plan, &net)?;
    eprintln!(
        "network: {} hosts on {}/24 (run {}); this namespace is {}",
        net.hosts().len(),
        net.subnet(),
        net.tag(),
        net.root_addr()
    );
    Ok(net)
}

/// Moves every address of `plan` into `net` (ports kept).
fn relocate(plan: &mut Plan, net: &Net) -> anyhow::Result<()> {
    let director_ip = plan
        .members
        .iter()
        .find(|m| m.role == super::plan::Role::Director)
        .map(|d| net.addr(&d.name))
        .transpose()?
        .context("the cluster has no director")?;
    for m in &mut plan.members {
        let ip = net.addr(&m.name)?;
        m.addr = SocketAddr::new(ip.into(), m.addr.port());
        // Each director's admin listener lives in its own namespace.
        if let Some(admin) = m.admin.as_mut() {
            *admin = SocketAddr::new(ip.into(), admin.port());
        }
    }
    plan.admin = SocketAddr::new(director_ip.into(), plan.admin.port());
    plan.supervisor = SocketAddr::new(net.root_addr().into(), plan.supervisor.port());
    Ok(())
}

/// The network namespace a process runs in, if the cluster has a network.
pub(crate) fn netns_of(net: Option<&Net>, name: &str) -> Option<String> {
    net?.host(name).ok().map(|h| h.netns().to_owned())
}

/// One network fault or its healing, as `POST /api/net` takes it (JSON,
/// tagged by `op`). Host names are the processes' names, or `root` for
/// the root namespace (the supervisor, `sticky chaos`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum NetFault {
    /// Both directions between `a` and `b`.
    Cut { a: String, b: String },
    /// Packets from `from` to `to` only.
    CutOneWay { from: String, to: String },
    /// `host` from every other host and the root namespace.
    Isolate { host: String },
    /// Both directions: `rate_bits` per second, a queue of `queue` packets.
    Slow {
        a: String,
        b: String,
        rate_bits: u64,
        queue: u32,
    },
    /// Both directions: one packet in `one_in` (a power of two) lost.
    Lossy { a: String, b: String, one_in: u32 },
    /// Ends the cuts, slow and lossy links between `a` and `b`.
    Heal { a: String, b: String },
    /// Ends the cut from `from` to `to`.
    HealOneWay { from: String, to: String },
    /// Ends the isolation of `host`.
    HealIsolation { host: String },
    /// Ends every fault.
    HealAll,
}

impl NetFault {
    /// Carries it out (runs `tc`: blocking, a few milliseconds a command).
    pub(crate) fn apply(&self, net: &Net) -> Result<(), NetError> {
        match self {
            NetFault::Cut { a, b } => net.cut(a, b),
            NetFault::CutOneWay { from, to } => net.cut_one_way(from, to),
            NetFault::Isolate { host } => net.isolate(host),
            NetFault::Slow {
                a,
                b,
                rate_bits,
                queue,
            } => net.slow(a, b, *rate_bits, *queue),
            NetFault::Lossy { a, b, one_in } => net.lossy(a, b, *one_in),
            NetFault::Heal { a, b } => net.heal(a, b),
            NetFault::HealOneWay { from, to } => net.heal_one_way(from, to),
            NetFault::HealIsolation { host } => net.heal_isolation(host),
            NetFault::HealAll => net.heal_all(),
        }
    }
}

/// One host, as `GET /api/net` lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct HostInfo {
    pub(crate) name: String,
    pub(crate) addr: std::net::Ipv4Addr,
    pub(crate) netns: String,
    /// Packets on their way to it dropped so far (by every fault).
    pub(crate) dropped: u64,
}

/// The network, as `GET /api/net` answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct NetInfo {
    /// The run's tag: the prefix of its namespaces' names.
    pub(crate) tag: String,
    pub(crate) subnet: std::net::Ipv4Addr,
    /// The root namespace's address on the bridge.
    pub(crate) root: std::net::Ipv4Addr,
    pub(crate) hosts: Vec<HostInfo>,
}

/// What `GET /api/net` answers (blocking: one `tc` per host).
pub(crate) fn describe(net: &Net) -> Result<NetInfo, NetError> {
    let mut hosts = Vec::new();
    for h in net.hosts() {
        hosts.push(HostInfo {
            name: h.name().to_owned(),
            addr: h.addr(),
            netns: h.netns().to_owned(),
            dropped: net.dropped_to(h.name())?,
        });
    }
    Ok(NetInfo {
        tag: net.tag().to_owned(),
        subnet: net.subnet(),
        root: net.root_addr(),
        hosts,
    })
}

/// The network the control API serves, if the cluster has one.
pub(crate) type SharedNet = Option<Arc<Net>>;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn faults_travel_as_tagged_json() {
        let f = NetFault::CutOneWay {
            from: "s1".into(),
            to: "ws2".into(),
        };
        let text = serde_json::to_string(&f).unwrap();
        assert_eq!(text, r#"{"op":"cut_one_way","from":"s1","to":"ws2"}"#);
        assert_eq!(serde_json::from_str::<NetFault>(&text).unwrap(), f);
        assert_eq!(
            serde_json::from_str::<NetFault>(r#"{"op":"heal_all"}"#).unwrap(),
            NetFault::HealAll
        );
        assert!(serde_json::from_str::<NetFault>(r#"{"op":"explode"}"#).is_err());
    }
}
