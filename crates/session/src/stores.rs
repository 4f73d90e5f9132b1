//! The configured stores: one client each, which of them are live, and the
//! background pinger that finds out (with the client's own backoff for
//! stores that are down).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sticky_client::{ClientError, ClientOptions, StoreClient};
use tokio::sync::{watch, OnceCell};

use crate::config::StoreSpec;
use crate::id::SessionId;
use crate::placement;

/// How often every store is pinged.
pub(crate) const PING_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug)]
pub(crate) struct Stores {
    pub(crate) clients: Vec<StoreClient>,
    pub(crate) names: Vec<String>,
    hashes: Vec<u64>,
    live: AtomicU64,
    /// Stores passed over as slow ([`Stores::mark_slow`]): up, but not
    /// answering; placement skips them until they answer again.
    slow: AtomicU64,
    /// Stores whose last ping went unanswered for [`GRACE`]
    /// ([`Stores::ping_all`]): up, but a claim or a write should not count
    /// on them, so the server does not call itself ready while too few
    /// others answer ([`Stores::prompt`]). Placement ignores this mark.
    late: AtomicU64,
    /// Stores marked down since the re-copy loop last took this set: they
    /// may have lost their copies (a restarted store comes back empty).
    went_down: AtomicU64,
    changed: watch::Sender<u64>,
    /// What each store last said about who holds its data
    /// ([`StoreClient::data_identity`]); `None` until it said.
    identities: std::sync::Mutex<Vec<Option<String>>>,
    /// Ping rounds so far (identities are asked every
    /// [`IDENTITY_EVERY`] rounds).
    rounds: AtomicU64,
    /// Leases (`NAME@EPOCH`) this server proved gone (a probe of the
    /// process) and released at a quorum of these stores, newest last, at
    /// most [`GONE_REMEMBERED`].
    gone: std::sync::Mutex<std::collections::VecDeque<String>>,
    /// Probes and releases under way, by what they do (`probe X@e`,
    /// `release X@e`): concurrent claims of one dead server's sessions
    /// share one ([`Stores::releasing`]).
    releasing: std::sync::Mutex<std::collections::HashMap<String, Arc<OnceCell<Released>>>>,
    /// A claim's look at every store ([`crate::takeover::targets`]) is
    /// under way: concurrent claims wait for it rather than start their
    /// own.
    looking: std::sync::atomic::AtomicBool,
}

/// How a probe or a release of a lease ended ([`Stores::releasing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Released {
    /// Proven gone (a probe), or recorded dead at a quorum (a release).
    Yes,
    /// The probe could not prove the owner gone.
    MaybeAlive,
    /// Proven gone, but only this many stores recorded it.
    Short(usize),
}

/// How many released leases [`Stores::gone`] remembers: a dead server's
/// sessions are adopted in one burst, so a handful is plenty.
const GONE_REMEMBERED: usize = 64;

/// What [`Stores::fan_out_until`] does after an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Wait for more answers.
    More,
    /// Enough answers; wait at most this long (from the first time this
    /// is said) for the others.
    Briefly(Duration),
    /// Stop now.
    Stop,
}

/// How long a quorum step waits for the answers it would rather have
/// ([`Wait::Briefly`]) when slow stores are not passed over
/// (`Config::slow_store` is `None`): far above a store's answer time on a
/// loopback or a LAN (and above the scheduling delays of a loaded 2-core
/// machine, where 20 ms was not), far below the request timeout after
/// which a silent store is marked down.
pub(crate) const GRACE: std::time::Duration = std::time::Duration::from_millis(100);

/// Every this many ping rounds, each live store is asked who holds its
/// data: a store that restarted empty or was flushed between two pings
/// looks up to the pinger, but has lost its copies.
const IDENTITY_EVERY: u64 = 4;

/// Clears bit `i` of `mask`; whether it was set. The plain load first
/// keeps an answer from a store that was never marked off the shared
/// cache line's write path.
fn clear_bit(mask: &AtomicU64, i: usize) -> bool {
    mask.load(Ordering::Relaxed) & (1 << i) != 0
        && mask.fetch_and(!(1 << i), Ordering::AcqRel) & (1 << i) != 0
}

impl Stores {
    pub(crate) fn new(specs: &[StoreSpec], options: &ClientOptions) -> Result<Self, ClientError> {
        let clients = specs
            .iter()
            .map(|s| StoreClient::new(&s.addr, options.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let all = if specs.len() >= 64 {
            u64::MAX
        } else {
            (1u64 << specs.len()) - 1
        };
        Ok(Self {
            clients,
            names: specs.iter().map(|s| s.name.clone()).collect(),
            hashes: specs
                .iter()
                .map(|s| placement::name_hash(&s.name))
                .collect(),
            live: AtomicU64::new(all),
            slow: AtomicU64::new(0),
            late: AtomicU64::new(0),
            went_down: AtomicU64::new(0),
            changed: watch::Sender::new(all),
            identities: std::sync::Mutex::new(vec![None; specs.len()]),
            rounds: AtomicU64::new(0),
            gone: std::sync::Mutex::new(std::collections::VecDeque::new()),
            releasing: std::sync::Mutex::new(std::collections::HashMap::new()),
            looking: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.clients.len()
    }

    /// Whether every store answers a takeover's read and promise in one
    /// command (`SESS.PREPARE NEXT`: `sticky store`, not Redis).
    pub(crate) fn prepare_next(&self) -> bool {
        self.clients.iter().all(StoreClient::prepares_next)
    }

    /// Bit set of every configured store.
    pub(crate) fn all(&self) -> u64 {
        if self.clients.len() >= 64 {
            u64::MAX
        } else {
            (1u64 << self.clients.len()) - 1
        }
    }

    /// Bit set of the stores believed up.
    pub(crate) fn live(&self) -> u64 {
        self.live.load(Ordering::Acquire)
    }

    /// The stores believed up that answered their last ping within
    /// [`GRACE`] (or anything since). What a server counts to call itself
    /// ready: a store cut off or paused stays "up" until a request to it
    /// times out (`store_timeout_ms`, 1 s, after up to a ping interval),
    /// but is late after [`GRACE`]. (A write's slow mark does not count
    /// here: it comes and goes with single slow answers under load, and a
    /// store that stays silent is late at the next ping.)
    pub(crate) fn prompt(&self) -> u64 {
        self.live() & !self.late.load(Ordering::Acquire)
    }

    /// The stores marked down since the last call (and clears that set).
    pub(crate) fn take_went_down(&self) -> u64 {
        self.went_down.swap(0, Ordering::AcqRel)
    }

    /// Notified with the new live set whenever it changes.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub(crate) fn mark_down(&self, i: usize, why: &ClientError) {
        let before = self.live.fetch_and(!(1 << i), Ordering::AcqRel);
        if before & (1 << i) != 0 {
            self.went_down.fetch_or(1 << i, Ordering::AcqRel);
            tracing::warn!(store = %self.names[i], error = %why, "store marked down");
            metrics::counter!("sticky_store_failures_total", "store" => self.names[i].clone())
                .increment(1);
            self.changed.send_replace(before & !(1 << i));
        }
    }

    pub(crate) fn mark_up(&self, i: usize) {
        let before = self.live.fetch_or(1 << i, Ordering::AcqRel);
        if before & (1 << i) == 0 {
            tracing::info!(store = %self.names[i], "store is back up");
            self.changed.send_replace(before | (1 << i));
        }
    }

    /// The replica set of `id`: its first `r` stores in placement order
    /// among the live ones, passing over those found
    /// [slow](Self::mark_slow) while enough others are live.
    pub(crate) fn replicas(&self, id: &SessionId, r: usize) -> u64 {
        self.next_stores(id, 0, r)
    }

    /// The replica set of `id` over the live stores, slow or not: where
    /// its copies go once every store answers promptly.
    pub(crate) fn placed(&self, id: &SessionId, r: usize) -> u64 {
        placement::replicas(id, &self.hashes, self.live(), r)
    }

    /// The first `k` stores of `id`'s placement order outside `exclude`:
    /// among the live stores not passed over as slow, or, when fewer than
    /// `k` of those are left, among the live ones.
    pub(crate) fn next_stores(&self, id: &SessionId, exclude: u64, k: usize) -> u64 {
        let live = self.live() & !exclude;
        let prompt = live & !self.slow.load(Ordering::Acquire);
        let set = if prompt.count_ones() as usize >= k {
            prompt
        } else {
            live
        };
        placement::replicas(id, &self.hashes, set, k)
    }

    /// Store `i` has not answered a request this long after it was sent
    /// while others answered theirs: placement passes it over until it
    /// answers anything again. Unlike [`mark_down`](Self::mark_down) this
    /// re-copies nothing: a store that is only slow (or paused for a
    /// moment) keeps its copies, and the pinger or the request timeout
    /// still marks it down if it stays silent.
    ///
    /// Returns whether it was not marked slow before.
    pub(crate) fn mark_slow(&self, i: usize, after: Duration) -> bool {
        let before = self.slow.fetch_or(1 << i, Ordering::AcqRel);
        let newly = before & (1 << i) == 0;
        if newly {
            tracing::warn!(store = %self.names[i], after_ms = after.as_millis() as u64, "store slow to answer: writes go to the next store until it answers");
            metrics::counter!("sticky_store_slow_total", "store" => self.names[i].clone())
                .increment(1);
        }
        newly
    }

    /// Pings store `i` once and records the outcome: an answer ends its
    /// slow mark, a timeout or a broken connection marks it down.
    pub(crate) async fn ping_one(&self, i: usize) {
        let r = self.clients[i].ping().await;
        self.observe(i, &r);
    }

    /// Store `i` answered: it is no longer passed over as slow, nor late.
    fn answered(&self, i: usize) {
        if clear_bit(&self.slow, i) {
            tracing::info!(store = %self.names[i], "slow store answers again");
        }
        if clear_bit(&self.late, i) {
            tracing::info!(store = %self.names[i], "late store answers pings again");
        }
    }

    /// Claims the right to start a look at every store; `false` while
    /// another is under way. [`done_looking`](Self::done_looking) ends it.
    pub(crate) fn start_looking(&self) -> bool {
        !self.looking.swap(true, Ordering::AcqRel)
    }

    /// The look [`start_looking`](Self::start_looking) began has ended.
    pub(crate) fn done_looking(&self) {
        self.looking.store(false, Ordering::Release);
    }

    /// Store `i` has not answered a ping within [`GRACE`].
    fn mark_late(&self, i: usize) {
        if self.late.fetch_or(1 << i, Ordering::AcqRel) & (1 << i) == 0 {
            tracing::info!(store = %self.names[i], after_ms = GRACE.as_millis() as u64, "store late to answer a ping: not counted for readiness until it answers");
        }
    }

    /// Remembers that lease `owner` was proven gone and released at a
    /// quorum of stores: its process is dead, or it fenced or restarted
    /// and dropped that epoch's cache, and epochs are never reused, so no
    /// process will serve from that lease again.
    pub(crate) fn record_gone(&self, owner: &str) {
        if let Ok(mut gone) = self.gone.lock() {
            if !gone.iter().any(|o| o == owner) {
                if gone.len() >= GONE_REMEMBERED {
                    gone.pop_front();
                }
                gone.push_back(owner.to_owned());
            }
        }
    }

    /// Whether [`record_gone`](Self::record_gone) remembers `owner`: a
    /// claim of one of its sessions need not probe it or end its lease
    /// again (`docs/safety.md` §2).
    pub(crate) fn known_gone(&self, owner: &str) -> bool {
        self.gone
            .lock()
            .map(|gone| gone.iter().any(|o| o == owner))
            .unwrap_or(false)
    }

    /// Runs `release` (a probe of a lease's owner, or the release of the
    /// lease, named by `what`) once for all the claims that ask while it
    /// runs: a dead server's sessions are claimed in a burst, and each
    /// claim would otherwise probe it, or send every store a release. A
    /// claim that asks after it ended runs its own (unless the owner is
    /// [known gone](Self::known_gone)).
    pub(crate) async fn releasing<F>(&self, what: &str, release: impl FnOnce() -> F) -> Released
    where
        F: Future<Output = Released>,
    {
        let cell = {
            let Ok(mut running) = self.releasing.lock() else {
                return release().await;
            };
            running
                .entry(what.to_owned())
                .or_insert_with(|| Arc::new(OnceCell::new()))
                .clone()
        };
        let outcome = *cell.get_or_init(release).await;
        if let Ok(mut running) = self.releasing.lock() {
            if running.get(what).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                running.remove(what);
            }
        }
        outcome
    }

    /// Store indexes in a bit set.
    pub(crate) fn members(set: u64) -> impl Iterator<Item = usize> {
        (0..64).filter(move |i| set & (1 << i) != 0)
    }

    /// Records the outcome of a request to store `i`: errors that say the
    /// store is unreachable mark it down.
    pub(crate) fn observe<T>(&self, i: usize, r: &Result<T, ClientError>) {
        match r {
            Err(e) if e.is_retryable() => self.mark_down(i, e),
            _ => self.answered(i),
        }
    }

    /// Sends one request to each store of `set` at once and waits for all
    /// of them: `(store index, outcome)` in index order. Each outcome is
    /// [observed](Stores::observe) as the caller takes it from the
    /// iterator, so a caller that stops early (e.g. at a refusal) leaves
    /// the outcomes after it unobserved.
    pub(crate) async fn fan_out<'a, T, Fut>(
        &'a self,
        set: u64,
        call: impl Fn(&'a StoreClient) -> Fut,
    ) -> impl Iterator<Item = (usize, Result<T, ClientError>)> + 'a
    where
        Fut: Future<Output = Result<T, ClientError>>,
        T: 'a,
    {
        let calls = Self::members(set).map(|i| {
            let request = call(&self.clients[i]);
            async move { (i, request.await) }
        });
        futures_util::future::join_all(calls)
            .await
            .into_iter()
            .inspect(move |(i, r)| self.observe(*i, r))
    }

    /// Sends one request to each store of `set` at once and hands each
    /// outcome to `take` as it arrives, in the order the stores answer,
    /// until `take` says [`Wait::Stop`] or every store answered. A quorum
    /// step stops waiting once enough stores answered, so one store that
    /// is paused or slow (not yet marked down) does not hold a claim for
    /// the whole request timeout; [`Wait::Briefly`] waits a moment more for answers the caller would rather have (the
    /// session's own replicas). The requests still in flight are dropped:
    /// the connection discards their replies, and the pinger, not this
    /// call, finds out whether that store is down. Each outcome taken is
    /// [observed](Stores::observe).
    pub(crate) async fn fan_out_until<'a, T, Fut>(
        &'a self,
        set: u64,
        call: impl Fn(&'a StoreClient) -> Fut,
        mut take: impl FnMut(usize, Result<T, ClientError>) -> Wait,
    ) where
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let mut pending: futures_util::stream::FuturesUnordered<_> = Self::members(set)
            .map(|i| {
                let request = call(&self.clients[i]);
                async move { (i, request.await) }
            })
            .collect();
        let mut deadline = None;
        loop {
            let next = futures_util::StreamExt::next(&mut pending);
            let next = match deadline {
                None => next.await,
                Some(at) => match tokio::time::timeout_at(at, next).await {
                    Ok(next) => next,
                    Err(_) => return,
                },
            };
            let Some((i, r)) = next else { return };
            self.observe(i, &r);
            match take(i, r) {
                Wait::More => {}
                Wait::Briefly(grace) => {
                    deadline.get_or_insert_with(|| tokio::time::Instant::now() + grace);
                }
                Wait::Stop => return,
            }
        }
    }

    /// Pings every store once, concurrently, updating the live set.
    pub(crate) async fn ping_all(&self) {
        // A ping still unanswered after GRACE marks its store late (for
        // readiness only) and goes on waiting for its outcome.
        let pings = self.clients.iter().enumerate().map(|(i, c)| async move {
            let ping = c.ping();
            tokio::pin!(ping);
            tokio::select! {
                r = &mut ping => r,
                () = tokio::time::sleep(GRACE) => {
                    self.mark_late(i);
                    ping.await
                }
            }
        });
        let results = futures_util::future::join_all(pings).await;
        for (i, r) in results.into_iter().enumerate() {
            match r {
                Ok(rtt) => {
                    self.mark_up(i);
                    self.answered(i);
                    metrics::histogram!("sticky_store_ping_seconds", "store" => self.names[i].clone())
                        .record(rtt.as_secs_f64());
                }
                Err(e) => self.mark_down(i, &e),
            }
        }
        metrics::gauge!("sticky_stores_live").set(f64::from(self.live().count_ones()));
        if self.rounds.fetch_add(1, Ordering::Relaxed) % IDENTITY_EVERY == 0 {
            self.check_identities().await;
        }
    }

    /// Asks every live store who holds its data; a store whose answer
    /// changed lost the copies written to it (it restarted, or was
    /// flushed, faster than the pinger could notice it down): it counts as
    /// having gone down, and the re-copy loop copies the sessions it held
    /// to it again (issue 15, item 2).
    pub(crate) async fn check_identities(&self) {
        let live = self.live();
        let asks =
            Self::members(live).map(|i| async move { (i, self.clients[i].data_identity().await) });
        let answers = futures_util::future::join_all(asks).await;
        let mut lost = 0u64;
        {
            let mut known = self.identities.lock().unwrap_or_else(|p| p.into_inner());
            for (i, r) in answers {
                let Ok(now) = r else { continue };
                if let Some(before) = known[i].replace(now.clone()) {
                    if before != now {
                        lost |= 1 << i;
                    }
                }
            }
        }
        if lost != 0 {
            for i in Self::members(lost) {
                tracing::warn!(store = %self.names[i], "store restarted or was flushed since the last look: copying its sessions there again");
                metrics::counter!("sticky_store_data_lost_total", "store" => self.names[i].clone())
                    .increment(1);
            }
            self.went_down.fetch_or(lost, Ordering::AcqRel);
            self.changed.send_replace(self.live());
        }
    }
}
