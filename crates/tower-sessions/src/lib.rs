//! [`StickyStore`]: a [tower-sessions] `SessionStore` on Sticky's session
//! library. An axum app built on tower-sessions keeps its handlers, its
//! `Session` extractor and its `SessionManagerLayer`; only the store
//! changes, and with it sessions get Sticky's local cache (a request whose
//! session this server hosts reads no store), synchronous replication to
//! R=1 or 2 stores (`sticky store`s or Redis servers), takeover when the
//! hosting server dies, and fencing (a server that lost a session can
//! never overwrite the newer copy).
//!
//! # Switching an app
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use sticky_session::{Config, SessionManager, StoreSpec};
//! use sticky_tower_sessions::StickyStore;
//! use tower_sessions::{Expiry, SessionManagerLayer};
//!
//! // Before: let store = RedisStore::new(pool);
//! let stores = vec![
//!     StoreSpec { name: "s1".into(), addr: "redis://10.0.0.31:6379".into() },
//!     StoreSpec { name: "s2".into(), addr: "redis://10.0.0.32:6379".into() },
//! ];
//! let mut config = Config::new("ws1", "the cluster secret, 32 bytes or more", stores);
//! config.idle_timeout = std::time::Duration::from_secs(1800); // as the Expiry below
//! let store = StickyStore::new(SessionManager::start(config).await?);
//!
//! // Unchanged:
//! let layer = SessionManagerLayer::new(store)
//!     .with_expiry(Expiry::OnInactivity(time::Duration::seconds(1800)));
//! # let _ = layer; Ok(()) }
//! ```
//!
//! `docs/tower-sessions.md` has the whole story.
//!
//! # How the calls map
//!
//! tower-sessions loads a session at its first use in a request and saves
//! it at the end if it changed. Here:
//!
//! - `load(id)` opens the session in Sticky's cache, or takes it over from
//!   the stores (claiming it with a new generation), and hands a copy of
//!   its data to tower-sessions. It releases Sticky's per-session lock at
//!   once (tower-sessions has no call at the end of a read-only request),
//!   extending the stores' TTL lazily as Sticky's own layer does.
//! - `save(record)` opens the session again (a cache hit), and if the data
//!   differ, writes the next stamp to every replica before returning (sync
//!   mode). A write refused because another server took the session over
//!   is an error (`Backend("... moved ...")`): tower-sessions logs it and
//!   the change is not acknowledged; this server drops its copy, so its next
//!   request re-loads the newer one.
//! - `create(record)` stores a new session under tower-sessions' random
//!   128-bit id without a lookup first (a collision of CSPRNG ids is not a
//!   practical event; if one happened, the older stamp on the stores would
//!   refuse the write).
//! - `delete(id)` destroys the session: tombstones on its replicas.
//!
//! Record expiry dates are not stored: a session's lifetime is Sticky's
//! `Config::idle_timeout` (and `absolute_timeout`), so set it to the app's
//! inactivity expiry. `load` reports `now + idle_timeout`.
//!
//! tower-sessions' cookie carries the bare id: an invented id costs one
//! lookup on every store. Sticky's own layer signs its cookies so that
//! forged ids never reach a store; with tower-sessions, sign them with
//! `SessionManagerLayer::with_signed` (its `signed` feature).
//!
//! [tower-sessions]: https://docs.rs/tower-sessions

use std::collections::HashMap;

use async_trait::async_trait;
use sticky_session::{SessionError, SessionId, SessionManager};
use time::OffsetDateTime;
use tower_sessions_core::session::{Id, Record};
use tower_sessions_core::session_store::{self, SessionStore};

/// A tower-sessions store backed by a [`SessionManager`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct StickyStore {
    manager: SessionManager,
}

impl StickyStore {
    /// The store on `manager` (started with [`SessionManager::start`]).
    pub fn new(manager: SessionManager) -> Self {
        Self { manager }
    }

    /// The session manager, e.g. for its control routes
    /// ([`SessionManager::control_routes`]), which a director needs.
    pub fn manager(&self) -> &SessionManager {
        &self.manager
    }

    fn expiry(&self) -> OffsetDateTime {
        let idle = self.manager.config().idle_timeout;
        OffsetDateTime::now_utc()
            .saturating_add(time::Duration::try_from(idle).unwrap_or(time::Duration::MAX))
    }

    /// Writes `record`'s data as the session's content, if it differs.
    async fn write(
        &self,
        session: &sticky_session::Session,
        record: &Record,
    ) -> Result<(), session_store::Error> {
        let current = session.data();
        let same = current.len() == record.data.len()
            && record.data.iter().all(|(k, v)| current.get(k) == Some(v));
        if !same {
            session.clear();
            for (k, v) in &record.data {
                session.insert_value(k, v.clone());
            }
        }
        self.manager.save(session).await.map_err(backend)?;
        Ok(())
    }
}

/// Sticky's session id for tower-sessions' id: the same 128 bits.
pub fn session_id(id: &Id) -> SessionId {
    SessionId::from_bytes(id.0.to_le_bytes())
}

fn backend(e: SessionError) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

#[async_trait]
impl SessionStore for StickyStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let session = self.manager.create_id(session_id(&record.id));
        self.write(&session, record).await
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let id = session_id(&record.id);
        let session = match self.manager.load_id(id).await.map_err(backend)? {
            Some(s) => s,
            // Gone since it was loaded (expired, or destroyed elsewhere):
            // store it anew; a tombstone on the stores refuses that.
            None => self.manager.create_id(id),
        };
        self.write(&session, record).await
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let Some(session) = self
            .manager
            .load_id(session_id(id))
            .await
            .map_err(backend)?
        else {
            return Ok(None);
        };
        let data: HashMap<String, serde_json::Value> = session.data().into_iter().collect();
        // Unchanged: releases the session (and extends the stores' TTL
        // lazily); never writes.
        self.manager.save(&session).await.map_err(backend)?;
        Ok(Some(Record {
            id: *id,
            data,
            expiry_date: self.expiry(),
        }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        if let Some(session) = self
            .manager
            .load_id(session_id(id))
            .await
            .map_err(backend)?
        {
            session.destroy();
            self.manager.save(&session).await.map_err(backend)?;
        }
        Ok(())
    }
}
