//! The status types: what `GET /api/cluster` answers ([`ClusterStatus`])
//! and what an operator can decide for a server ([`AdminState`]).

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::latency::ResponseTimes;

/// What an operator decided for a server, independent of its health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminState {
    /// Normal: new clients, clients with its cookie, failover target.
    Enabled,
    /// No new clients; clients with its cookie still go there.
    Draining,
    /// Treated as down for routing: every client moves to another server.
    Evacuating,
}

impl AdminState {
    pub(crate) fn to_u8(self) -> u8 {
        match self {
            AdminState::Enabled => 0,
            AdminState::Draining => 1,
            AdminState::Evacuating => 2,
        }
    }

    pub(crate) fn from_u8(v: u8) -> Self {
        match v {
            1 => AdminState::Draining,
            2 => AdminState::Evacuating,
            _ => AdminState::Enabled,
        }
    }

    /// `enabled`, `draining` or `evacuating`.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminState::Enabled => "enabled",
            AdminState::Draining => "draining",
            AdminState::Evacuating => "evacuating",
        }
    }
}

/// A web server's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Takes new clients.
    Web,
    /// Takes only the clients of failed servers.
    Standby,
}

/// A web server's state for routing, as shown to operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerState {
    /// Healthy and routed to.
    Up,
    /// Failing its checks (or not checked yet): not routed to.
    Down,
    /// Healthy again but still reporting the epoch it had before it was
    /// marked down: not routed to until it has fenced itself.
    Fencing,
    /// Healthy; no new clients, its own clients still go there.
    Draining,
    /// Not routed to at all: its clients move to other servers.
    Evacuating,
}

/// One web server in [`ClusterStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStatus {
    /// Configured name.
    pub name: String,
    /// Configured address.
    pub addr: SocketAddr,
    /// `web` or `standby`.
    pub role: Role,
    /// Routing state.
    pub state: ServerState,
    /// Operator's decision.
    pub admin: AdminState,
    /// Passing its health checks.
    pub healthy: bool,
    /// Reports it can write to enough stores.
    pub ready: bool,
    /// A request could not connect to it, or a health check failed, since
    /// its last good check: moved and new clients go to others.
    #[serde(default)]
    pub unreachable: bool,
    /// Relative share of new clients.
    pub weight: u32,
    /// Last epoch it reported.
    pub epoch: Option<u64>,
    /// Sessions in its local cache, as last reported.
    pub sessions: u64,
    /// Requests in flight (and open tunnels).
    pub active: u64,
    /// Requests sent to it since the director started.
    pub requests: u64,
    /// Requests of clients whose cookie named it that went elsewhere.
    pub failovers: u64,
    /// Requests that failed on it.
    pub errors: u64,
    /// Milliseconds since its health last flipped.
    pub since_change_ms: u64,
    /// Why the last check failed, if it did.
    pub last_error: Option<String>,
}

/// Director-wide figures in [`ClusterStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectorTotals {
    /// Public listener.
    pub listen: Option<SocketAddr>,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// Client connections open now.
    pub connections: u64,
    /// Client connections refused at the connection limit.
    pub rejected_connections: u64,
    /// Requests received.
    pub requests: u64,
    /// Requests answered by the director itself with 502, 503 or 504.
    pub gateway_errors: u64,
    /// Requests routed away from the server their cookie named.
    pub failovers: u64,
    /// Requests re-sent after a refused connection or a failed attempt.
    pub retries: u64,
    /// Servers up (routable).
    pub servers_up: usize,
    /// How long the director took to answer (request head to response
    /// head), since it started.
    #[serde(default)]
    pub response_times: ResponseTimes,
}

/// What `GET /api/cluster` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// Director-wide figures.
    pub director: DirectorTotals,
    /// Every configured web server, in configuration order.
    pub servers: Vec<ServerStatus>,
    /// Every configured session store, in configuration order.
    #[serde(default)]
    pub stores: Vec<StoreStatus>,
    /// Every director of the cluster, this one first (`[director]` and
    /// `[[director.peers]]`).
    #[serde(default)]
    pub directors: Vec<DirectorInstance>,
}

/// One director of the cluster, as the cluster file lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectorInstance {
    /// Its name (`director`, `director2`...).
    pub name: String,
    /// Its public listener (for this one: where it listens).
    pub listen: Option<SocketAddr>,
    /// Its admin listener (dashboard, API).
    pub admin: SocketAddr,
    /// True for the director that answered.
    pub this: bool,
    /// Whether its admin listener answered `/healthz` at the last look
    /// (each second); `None` for this one, or before the first look.
    #[serde(default)]
    pub up: Option<bool>,
}

/// A duration in whole milliseconds, saturating.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A store's state, as last seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreState {
    /// Not asked yet.
    Unknown,
    /// Answered `PING` and `INFO`.
    Up,
    /// Did not (refused, timed out, refused the password).
    Down,
}

/// One store in [`ClusterStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStatus {
    /// Configured name.
    pub name: String,
    /// Configured address.
    pub addr: SocketAddr,
    /// Up or down.
    pub state: StoreState,
    /// Keys it holds (session copies and tombstones), as last reported.
    pub keys: u64,
    /// Accounted memory in bytes, as last reported.
    pub used_memory: u64,
    /// Its memory limit in bytes (0: none).
    pub max_memory: u64,
    /// Client connections open on it.
    pub connected_clients: u64,
    /// Milliseconds since its state last changed.
    pub since_change_ms: u64,
    /// Why the last look failed, if it did.
    pub error: Option<String>,
}
