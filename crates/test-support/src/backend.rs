//! The two session store backends, `sticky store` and Redis, as one value
//! ([`StoreBackend`]) that starts a store ([`StoreNode`]) and reads what
//! it holds: the same session suite runs against either.

use std::net::SocketAddr;
use std::process::ExitStatus;

use crate::copies::{copies_by_store, redis_copies_by_store, CopiesById};
use crate::process::Sticky;
use crate::redis_server::RedisProcess;
use crate::skip::have_redis;
use crate::store::StoreProcess;

/// Which server the web servers keep their sessions on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreBackend {
    /// `sticky store` processes.
    Sticky,
    /// `redis-server` processes, named in the cluster file with
    /// `url = "redis://..."` (`docs/redis.md`).
    Redis,
}

impl StoreBackend {
    /// Whether this backend can run here. Redis needs `redis-server`: when
    /// it is missing this prints a loud `SKIPPED` line and returns `false`,
    /// or panics if `CI` is set.
    pub fn available(self) -> bool {
        match self {
            StoreBackend::Sticky => true,
            StoreBackend::Redis => have_redis(false),
        }
    }

    /// A new empty store on a free loopback port, waited for.
    pub fn start_store(self, sticky: Sticky) -> StoreNode {
        match self {
            StoreBackend::Sticky => StoreNode::Sticky(StoreProcess::start(sticky, &[])),
            StoreBackend::Redis => StoreNode::Redis(RedisProcess::start(&[])),
        }
    }

    /// A new empty store on `port` (to restart a killed one where its
    /// clients expect it), waited for.
    pub fn start_store_on_port(self, sticky: Sticky, port: u16) -> StoreNode {
        match self {
            StoreBackend::Sticky => {
                StoreNode::Sticky(StoreProcess::start_on_port(sticky, port, &[]))
            }
            StoreBackend::Redis => StoreNode::Redis(RedisProcess::start_on_port(port, &[])),
        }
    }

    /// Every copy of each of `ids` on the stores at `addrs`: for each id,
    /// the copies by store index (`None` where a store has none).
    pub fn copies(self, addrs: &[SocketAddr], ids: &[String]) -> CopiesById {
        match self {
            StoreBackend::Sticky => copies_by_store(addrs, ids),
            StoreBackend::Redis => redis_copies_by_store(addrs, ids),
        }
    }
}

/// One running store of either backend. Killed when dropped.
pub enum StoreNode {
    /// A `sticky store` process.
    Sticky(StoreProcess),
    /// A `redis-server` process.
    Redis(RedisProcess),
}

impl StoreNode {
    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        match self {
            StoreNode::Sticky(s) => s.addr(),
            StoreNode::Redis(r) => r.addr(),
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr().port()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        match self {
            StoreNode::Sticky(s) => s.pid(),
            StoreNode::Redis(r) => r.pid(),
        }
    }

    /// The `url` a cluster file gives for it, if `listen` is not enough
    /// (`redis://127.0.0.1:PORT` for Redis).
    pub fn url(&self) -> Option<String> {
        match self {
            StoreNode::Sticky(_) => None,
            StoreNode::Redis(r) => Some(r.url()),
        }
    }

    /// `kill -9`, and waits for the exit.
    pub fn kill9(&mut self) -> ExitStatus {
        match self {
            StoreNode::Sticky(s) => s.kill9(),
            StoreNode::Redis(r) => r.kill9(),
        }
    }
}
