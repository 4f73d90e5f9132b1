//! A virtual user: its own cookie jar (so its own session) and keep-alive
//! connection to each director; it increments and reads its session's
//! counter, one operation at a time, and feeds every outcome to its
//! checker.
//!
//! Client faults (docs/reliability.md, the fault model): with several
//! directors a user switches between them (each operation goes to another
//! one with probability 1/2); with `--drop-route` some requests carry only
//! the session cookie (`sticky.sid`, no `sticky.route`); with
//! `--replay-route` some carry a route cookie the user was given earlier,
//! naming another host than its current one. The jar still takes every
//! cookie the answer sets, as a browser would. The checker is the same.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::header::{COOKIE, HOST, SET_COOKIE};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use rand::Rng;
use serde::Deserialize;

use super::checker::{AnomalyKind, Counter, Finding, Outcome};
use super::history::HistoryEvent;
use super::shared::Shared;
use crate::bench_cmd::jar::CookieJar;

/// Largest answer body read.
const MAX_BODY: usize = 64 * 1024;
/// Acknowledgments remembered per user, to date a lost write.
const ACKS_KEPT: usize = 512;
/// Pause after a failed connection attempt.
const CONNECT_BACKOFF: Duration = Duration::from_millis(20);
/// The route cookie's name (`sticky-director`'s default).
const ROUTE_COOKIE: &str = "sticky.route";
/// Old route cookies remembered per user, for replays.
const OLD_ROUTES_KEPT: usize = 8;

/// The client faults of a run.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ClientFaults {
    /// Probability that a request leaves out the route cookie.
    pub(crate) drop_route: f64,
    /// Probability that a request replays an old route cookie.
    pub(crate) replay_route: f64,
}

/// What the users' client faults did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub(crate) struct ClientTally {
    /// Requests sent without the route cookie (the user had one).
    pub(crate) dropped_route: u64,
    /// Requests sent with an old route cookie naming another host.
    pub(crate) replayed_route: u64,
    /// Operations sent to another director than the one before.
    pub(crate) director_switches: u64,
    /// Operations per director, in the order of the cluster's list.
    pub(crate) by_director: Vec<u64>,
}

impl ClientTally {
    fn merge(&mut self, o: &ClientTally) {
        self.dropped_route += o.dropped_route;
        self.replayed_route += o.replayed_route;
        self.director_switches += o.director_switches;
        if self.by_director.len() < o.by_director.len() {
            self.by_director.resize(o.by_director.len(), 0);
        }
        for (a, b) in self.by_director.iter_mut().zip(&o.by_director) {
            *a += b;
        }
    }
}

/// The `Cookie` header `jar` sends, with the route cookie left out
/// (`route` None) or given the value `route`; None if nothing is left.
fn cookie_header(jar: &str, route: Option<&str>) -> Option<HeaderValue> {
    let mut parts: Vec<String> = jar
        .split(';')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .filter(|c| {
            c.split_once('=')
                .is_none_or(|(n, _)| n.trim() != ROUTE_COOKIE)
        })
        .map(str::to_owned)
        .collect();
    if let Some(r) = route {
        parts.push(format!("{ROUTE_COOKIE}={r}"));
    }
    if parts.is_empty() {
        return None;
    }
    HeaderValue::from_str(&parts.join("; ")).ok()
}

/// The route cookie's value in a `Cookie` header's text.
fn route_of(jar: &str) -> Option<&str> {
    jar.split(';').find_map(|c| {
        let (n, v) = c.trim().split_once('=')?;
        (n.trim() == ROUTE_COOKIE).then_some(v.trim())
    })
}

/// The host a route cookie names (`ws1.<mac>`: `ws1`).
fn route_host(value: &str) -> &str {
    value.rsplit_once('.').map_or(value, |(host, _)| host)
}

/// The demo app's counter answer (`GET`/`POST /api/counter`).
#[derive(Debug, Deserialize)]
struct Answer {
    value: u64,
    server: String,
    source: String,
}

/// Why an operation did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// No connection to the director: the request was never sent.
    Connect,
    /// No complete answer in time.
    Timeout,
    /// The connection broke before a complete answer.
    Closed,
    /// An answer with this status.
    Status(u16),
    /// A `2xx` answer that is not the counter's JSON.
    BadAnswer,
}

impl Failure {
    fn name(self) -> &'static str {
        match self {
            Failure::Connect => "connect",
            Failure::Timeout => "timeout",
            Failure::Closed => "closed",
            Failure::Status(_) => "status",
            Failure::BadAnswer => "bad_answer",
        }
    }

    /// Whether an increment that failed so may still have been applied.
    fn maybe_applied(self) -> bool {
        match self {
            Failure::Connect => false,
            Failure::Status(s) => s == 409 || s >= 500,
            Failure::Timeout | Failure::Closed | Failure::BadAnswer => true,
        }
    }
}

/// Counts of one kind of operation.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub(crate) struct OpCounts {
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    pub(crate) unknown: u64,
}

impl OpCounts {
    fn merge(&mut self, o: &OpCounts) {
        self.ok += o.ok;
        self.failed += o.failed;
        self.unknown += o.unknown;
    }
}

fn histogram() -> Histogram<u64> {
    // Three significant digits up to an hour in microseconds: cannot fail.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap_or_else(|_| unreachable!())
}

/// What users measured; merged over all users at the end.
#[derive(Debug, Clone)]
pub(crate) struct Tally {
    pub(crate) increments: OpCounts,
    pub(crate) reads: OpCounts,
    /// Successful operations whose session was in the serving server's
    /// cache, and those it loaded from the stores (a takeover), in µs.
    pub(crate) cached: Histogram<u64>,
    pub(crate) loaded: Histogram<u64>,
    /// From a kill -9 of a session's web server to the session's first
    /// successful operation after it, in µs, when the session was being
    /// served until the kill ([`served_until`]).
    pub(crate) failover: Histogram<u64>,
    /// The same, for sessions that were not: failing already when the kill
    /// came (e.g. their server cut from a quorum of stores), or with their
    /// user's operation hung on another fault: the wait for them is the
    /// earlier fault's, not the takeover's.
    pub(crate) failover_failing: Histogram<u64>,
    /// The latency of that first successful request, when it loaded the
    /// session from the stores (the takeover itself), in µs.
    pub(crate) takeover: Histogram<u64>,
    /// For lost writes whose acknowledging server was killed: from the
    /// acknowledgment to the kill, in µs (how old an acknowledged write
    /// can be and still be lost: the replication lag at the kill).
    pub(crate) loss_window: Histogram<u64>,
    /// Lost acknowledged increments, summed over lost-write anomalies.
    pub(crate) lost_increments: u64,
    /// Failures by kind name.
    pub(crate) failures: std::collections::BTreeMap<&'static str, u64>,
    /// Anomalies by kind.
    pub(crate) anomalies: std::collections::BTreeMap<&'static str, u64>,
    /// Users whose closing read never succeeded.
    pub(crate) unverified: u64,
    /// What the client faults did.
    pub(crate) client: ClientTally,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            increments: OpCounts::default(),
            reads: OpCounts::default(),
            cached: histogram(),
            loaded: histogram(),
            failover: histogram(),
            failover_failing: histogram(),
            takeover: histogram(),
            loss_window: histogram(),
            lost_increments: 0,
            failures: Default::default(),
            anomalies: AnomalyKind::ALL.iter().map(|k| (k.as_str(), 0)).collect(),
            unverified: 0,
            client: ClientTally::default(),
        }
    }
}

impl Tally {
    pub(crate) fn merge(&mut self, o: &Tally) {
        self.increments.merge(&o.increments);
        self.reads.merge(&o.reads);
        for (a, b) in [
            (&mut self.cached, &o.cached),
            (&mut self.loaded, &o.loaded),
            (&mut self.failover, &o.failover),
            (&mut self.failover_failing, &o.failover_failing),
            (&mut self.takeover, &o.takeover),
            (&mut self.loss_window, &o.loss_window),
        ] {
            // Same bounds on both sides: cannot fail.
            let _ = a.add(b);
        }
        self.lost_increments += o.lost_increments;
        for (k, v) in &o.failures {
            *self.failures.entry(k).or_default() += v;
        }
        for (k, v) in &o.anomalies {
            *self.anomalies.entry(k).or_default() += v;
        }
        self.unverified += o.unverified;
        self.client.merge(&o.client);
    }

    pub(crate) fn anomaly_count(&self) -> u64 {
        self.anomalies.values().sum()
    }
}

/// One operation kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Increment,
    Read,
    /// The closing read after the faults.
    Final,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Increment => "inc",
            Op::Read => "read",
            Op::Final => "final",
        }
    }
}

pub(crate) struct User {
    index: usize,
    /// The directors, and the one the next operation goes to.
    directors: Vec<(SocketAddr, HeaderValue)>,
    current: usize,
    jar: CookieJar,
    /// A keep-alive connection per director.
    conns: Vec<Option<SendRequest<Full<Bytes>>>>,
    faults: ClientFaults,
    /// Route cookies the user was given before its current one.
    old_routes: VecDeque<String>,
    counter: Counter,
    /// The server of the last successful operation, and when it ended.
    last_ok: Option<(String, Instant)>,
    /// When the first failed operation since the last success ended.
    failing_since: Option<Instant>,
    /// Recent acknowledgments: value, server, when.
    acks: VecDeque<(u64, String, Instant)>,
    pub(crate) tally: Tally,
}

impl User {
    pub(crate) fn new(index: usize, directors: &[SocketAddr], faults: ClientFaults) -> Self {
        let directors: Vec<(SocketAddr, HeaderValue)> = directors
            .iter()
            .map(|a| {
                let host = HeaderValue::from_str(&a.to_string())
                    .unwrap_or_else(|_| HeaderValue::from_static("localhost"));
                (*a, host)
            })
            .collect();
        let n = directors.len();
        let mut tally = Tally::default();
        tally.client.by_director = vec![0; n];
        Self {
            index,
            current: index % n.max(1),
            directors,
            jar: CookieJar::default(),
            conns: (0..n).map(|_| None).collect(),
            faults,
            old_routes: VecDeque::new(),
            counter: Counter::default(),
            last_ok: None,
            failing_since: None,
            acks: VecDeque::new(),
            tally,
        }
    }

    async fn connect(&mut self) -> Result<(), Failure> {
        let d = self.current;
        let sender = crate::bench_cmd::connect(self.directors[d].0)
            .await
            .map_err(|_| Failure::Connect)?;
        self.conns[d] = Some(sender);
        Ok(())
    }

    /// The `Cookie` header of the next request: the jar's, or, as a client
    /// fault, without the route cookie or with an old one.
    /// Also returns the client fault's name, if any.
    fn cookies(
        &mut self,
        faulty: bool,
        rng: &mut impl Rng,
    ) -> (Option<HeaderValue>, Option<&'static str>) {
        let Some(header) = self.jar.header() else {
            return (None, None);
        };
        let Ok(text) = header.to_str() else {
            return (Some(header.clone()), None);
        };
        let route = route_of(text);
        if faulty && route.is_some() {
            if rng.random::<f64>() < self.faults.drop_route {
                self.tally.client.dropped_route += 1;
                return (cookie_header(text, None), Some("dropped_route"));
            }
            let current_host = route.map(route_host);
            let old: Vec<&String> = self
                .old_routes
                .iter()
                .filter(|r| Some(route_host(r)) != current_host)
                .collect();
            if !old.is_empty() && rng.random::<f64>() < self.faults.replay_route {
                let pick = old[rng.random_range(0..old.len())].clone();
                self.tally.client.replayed_route += 1;
                return (cookie_header(text, Some(&pick)), Some("replayed_route"));
            }
        }
        (Some(header.clone()), None)
    }

    /// Remembers the route cookie the jar held before an answer, if the
    /// answer replaced it.
    fn note_route(&mut self, before: Option<String>) {
        let now = self
            .jar
            .header()
            .and_then(|h| h.to_str().ok())
            .and_then(route_of)
            .map(str::to_owned);
        if let Some(old) = before.filter(|b| now.as_ref() != Some(b)) {
            if !self.old_routes.contains(&old) {
                if self.old_routes.len() == OLD_ROUTES_KEPT {
                    self.old_routes.pop_front();
                }
                self.old_routes.push_back(old);
            }
        }
    }

    /// One request and its whole answer.
    async fn exchange(
        &mut self,
        method: &Method,
        cookie: Option<HeaderValue>,
    ) -> Result<(StatusCode, Bytes), Failure> {
        let d = self.current;
        let host = self.directors[d].1.clone();
        let Some(sender) = self.conns[d].as_mut() else {
            return Err(Failure::Connect);
        };
        sender.ready().await.map_err(|_| Failure::Connect)?;
        let mut req = Request::new(Full::new(Bytes::new()));
        method.clone_into(req.method_mut());
        *req.uri_mut() = http::Uri::from_static("/api/counter");
        req.headers_mut().insert(HOST, host);
        if let Some(cookie) = cookie {
            req.headers_mut().insert(COOKIE, cookie);
        }
        let resp = sender
            .send_request(req)
            .await
            .map_err(|_| Failure::Closed)?;
        let before = self
            .jar
            .header()
            .and_then(|h| h.to_str().ok())
            .and_then(route_of)
            .map(str::to_owned);
        for v in resp.headers().get_all(SET_COOKIE) {
            self.jar.set(v.as_bytes());
        }
        self.note_route(before);
        let status = resp.status();
        let body = http_body_util::Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|_| Failure::Closed)?
            .to_bytes();
        Ok((status, body))
    }

    /// Sends `op` (connecting first if needed) within `timeout`, to the
    /// current director.
    async fn send(
        &mut self,
        op: Op,
        timeout: Duration,
        cookie: Option<HeaderValue>,
    ) -> Result<Answer, Failure> {
        let d = self.current;
        if self.conns[d].as_ref().is_none_or(SendRequest::is_closed) {
            self.conns[d] = None;
            if !matches!(
                tokio::time::timeout(timeout, self.connect()).await,
                Ok(Ok(()))
            ) {
                tokio::time::sleep(CONNECT_BACKOFF).await;
                return Err(Failure::Connect);
            }
        }
        let method = if op == Op::Increment {
            Method::POST
        } else {
            Method::GET
        };
        let result = match tokio::time::timeout(timeout, self.exchange(&method, cookie)).await {
            Ok(r) => r,
            Err(_) => Err(Failure::Timeout),
        };
        match result {
            Ok((status, body)) if status.is_success() => {
                serde_json::from_slice::<Answer>(&body).map_err(|_| Failure::BadAnswer)
            }
            Ok((status, _)) => Err(Failure::Status(status.as_u16())),
            Err(f) => {
                self.conns[d] = None;
                Err(f)
            }
        }
    }

    /// Does one operation, checks it, records it. Returns whether it
    /// succeeded.
    async fn step(&mut self, shared: &Shared, op: Op, rng: &mut impl Rng) -> bool {
        // Client faults, but not in the closing read.
        let faulty = op != Op::Final;
        let n = self.directors.len();
        if faulty && n > 1 && rng.random::<bool>() {
            self.current = (self.current + 1 + rng.random_range(0..n - 1)) % n;
            self.tally.client.director_switches += 1;
        }
        if let Some(c) = self.tally.client.by_director.get_mut(self.current) {
            *c += 1;
        }
        let (cookie, client_fault) = self.cookies(faulty, rng);
        let started = Instant::now();
        let result = self.send(op, shared.timeout, cookie).await;
        let ended = Instant::now();
        let latency = u64::try_from(ended.duration_since(started).as_micros()).unwrap_or(u64::MAX);
        let at = shared.since_start(started);
        let counts = if op == Op::Increment {
            &mut self.tally.increments
        } else {
            &mut self.tally.reads
        };
        let (outcome, label) = match &result {
            Ok(a) => {
                counts.ok += 1;
                (
                    Outcome::Ok {
                        value: a.value,
                        new_session: a.source == "new",
                    },
                    "ok",
                )
            }
            Err(f) if op == Op::Increment && f.maybe_applied() => {
                counts.unknown += 1;
                (Outcome::Unknown, "unknown")
            }
            Err(_) => {
                counts.failed += 1;
                (Outcome::Failed, "failed")
            }
        };
        if let Err(f) = &result {
            *self.tally.failures.entry(f.name()).or_default() += 1;
        }
        shared.history.event(HistoryEvent::Op {
            at,
            user: self.index,
            op: op.name(),
            outcome: label,
            value: result.as_ref().ok().map(|a| a.value),
            status: match &result {
                Ok(_) => Some(200),
                Err(Failure::Status(s)) => Some(*s),
                Err(_) => None,
            },
            error: result.as_ref().err().map(|f| f.name()),
            server: result.as_ref().ok().map(|a| a.server.as_str()),
            source: result.as_ref().ok().map(|a| a.source.as_str()),
            latency_us: latency,
            client_fault,
            director: (n > 1).then_some(self.current),
        });
        shared.ops.fetch_add(1, Ordering::Relaxed);
        if !matches!(outcome, Outcome::Ok { .. }) {
            shared.not_ok.fetch_add(1, Ordering::Relaxed);
        }
        let finding = match op {
            Op::Increment => self.counter.increment(outcome),
            Op::Read | Op::Final => self.counter.read(outcome),
        };
        if let Some(f) = finding {
            self.anomaly(shared, op, at, &f);
        }
        let Ok(answer) = result else {
            self.failing_since.get_or_insert(ended);
            return false;
        };
        let failing_since = self.failing_since.take();
        match answer.source.as_str() {
            "cache" => self.tally.cached.saturating_record(latency.max(1)),
            "store" => self.tally.loaded.saturating_record(latency.max(1)),
            _ => {}
        }
        if let Some((server, last)) = &self.last_ok {
            if let Some(killed) = shared.failover.killed_since(server, *last) {
                let us =
                    u64::try_from(ended.duration_since(killed).as_micros()).unwrap_or(u64::MAX);
                if !served_until(killed, *last, failing_since, shared.think) {
                    self.tally.failover_failing.saturating_record(us.max(1));
                } else {
                    self.tally.failover.saturating_record(us.max(1));
                }
                if answer.source == "store" {
                    self.tally.takeover.saturating_record(latency.max(1));
                }
            }
        }
        if op == Op::Increment {
            if self.acks.len() == ACKS_KEPT {
                self.acks.pop_front();
            }
            self.acks
                .push_back((answer.value, answer.server.clone(), ended));
        }
        self.last_ok = Some((answer.server, ended));
        true
    }

    fn anomaly(&mut self, shared: &Shared, op: Op, at: f64, f: &Finding) {
        *self.tally.anomalies.entry(f.kind.as_str()).or_default() += 1;
        shared.anomalies.fetch_add(1, Ordering::Relaxed);
        if f.kind == AnomalyKind::LostWrite {
            self.tally.lost_increments += f.lost;
            // Date the oldest lost acknowledgment against the kill of the
            // server that gave it.
            let acked = f
                .oldest_lost
                .and_then(|v| self.acks.iter().find(|(value, _, _)| *value == v));
            if let Some((_, server, when)) = acked {
                if let Some(killed) = shared.failover.killed_since(server, *when) {
                    let us =
                        u64::try_from(killed.duration_since(*when).as_micros()).unwrap_or(u64::MAX);
                    self.tally.loss_window.saturating_record(us.max(1));
                }
            }
        }
        tracing::error!(
            user = self.index,
            op = op.name(),
            kind = f.kind.as_str(),
            seen = f.seen,
            acked = f.acked,
            observed = f.observed,
            "anomaly"
        );
        shared.history.event(HistoryEvent::Anomaly {
            at,
            user: self.index,
            op: op.name(),
            finding: f,
        });
    }

    /// Increments (with probability `write_ratio`) or reads, then thinks,
    /// until the users are stopped.
    pub(crate) async fn run(mut self, shared: Arc<Shared>) -> Self {
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_rng(&mut rand::rng());
        // Spread the users' first requests over one think time.
        let first = shared.think.mul_f64(rng.random::<f64>());
        tokio::time::sleep(first).await;
        while !shared.stop_users.load(Ordering::Relaxed) {
            let op = if rng.random::<f64>() < shared.write_ratio {
                Op::Increment
            } else {
                Op::Read
            };
            self.step(&shared, op, &mut rng).await;
            if !shared.think.is_zero() {
                tokio::time::sleep(shared.think.mul_f64(0.5 + rng.random::<f64>())).await;
            }
        }
        self
    }

    /// The closing read, retried until it succeeds or `limit` passes.
    pub(crate) async fn verify(mut self, shared: Arc<Shared>, limit: Duration) -> Self {
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_rng(&mut rand::rng());
        let deadline = Instant::now() + limit;
        loop {
            if self.step(&shared, Op::Final, &mut rng).await {
                return self;
            }
            if Instant::now() >= deadline {
                self.tally.unverified += 1;
                tracing::error!(user = self.index, "the closing read never succeeded");
                return self;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// How long before a kill a user's last success may have ended for its
/// session to count as served until the kill, besides its think time: a
/// served user's operations take a few milliseconds (the cached p99 is
/// 1–6 ms under every fault), so one in flight for longer was hanging on
/// something else. (It was 1 s until session 20, when an every-fault run
/// had its three slowest "first oks after a kill" from operations that had
/// hung 600–770 ms on a standby cut from two stores before the kill.)
const SERVED_WITHIN: Duration = Duration::from_millis(250);

/// Whether a session was being served until its server's kill at
/// `killed`: its last success ended at `last_ok`, within [`SERVED_WITHIN`]
/// and two think times before the kill, and no failed operation had ended
/// between that success and the kill (`failing_since`: when the first one
/// did). Otherwise it was failing already, or its user's operation hung on
/// another fault, and the wait for its next success is not the failover's.
/// A failure that ended after the kill may have been the kill's.
fn served_until(
    killed: Instant,
    last_ok: Instant,
    failing_since: Option<Instant>,
    think: Duration,
) -> bool {
    let recent = killed.saturating_duration_since(last_ok) <= SERVED_WITHIN + think * 2;
    recent && failing_since.is_none_or(|f| f >= killed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_session_failing_or_idle_before_the_kill_is_not_served_until_it() {
        let think = Duration::from_millis(20);
        let kill = Instant::now() + Duration::from_secs(10);
        let ms = Duration::from_millis;
        let last_ok = kill - ms(30);
        assert!(
            served_until(kill, last_ok, None, think),
            "served until the kill"
        );
        assert!(
            !served_until(kill, last_ok, Some(kill - ms(5)), think),
            "failing already"
        );
        assert!(
            served_until(kill, last_ok, Some(kill + ms(5)), think),
            "failed because of the kill"
        );
        assert!(
            !served_until(kill, kill - ms(1_100), None, think),
            "its last success long before: an operation hung on another fault"
        );
        assert!(
            !served_until(kill, kill - ms(600), None, think),
            "hung for 600 ms before the kill"
        );
        assert!(
            served_until(kill, kill - ms(250), None, think),
            "a slow operation, but not hung"
        );
    }

    #[test]
    fn only_failures_that_may_have_reached_a_server_are_unknown() {
        assert!(!Failure::Connect.maybe_applied());
        assert!(!Failure::Status(400).maybe_applied());
        assert!(!Failure::Status(404).maybe_applied());
        for f in [
            Failure::Timeout,
            Failure::Closed,
            Failure::BadAnswer,
            Failure::Status(409),
            Failure::Status(502),
            Failure::Status(503),
        ] {
            assert!(f.maybe_applied(), "{f:?}");
        }
    }

    #[test]
    fn a_route_cookie_is_left_out_or_replaced_and_nothing_else() {
        let jar = "sticky.sid=abc.def; sticky.route=ws1.mac1; other=1";
        assert_eq!(route_of(jar), Some("ws1.mac1"));
        assert_eq!(route_host("ws1.mac1"), "ws1");
        let dropped = cookie_header(jar, None).unwrap();
        assert_eq!(dropped.to_str().unwrap(), "sticky.sid=abc.def; other=1");
        let replayed = cookie_header(jar, Some("ws3.mac3")).unwrap();
        assert_eq!(
            replayed.to_str().unwrap(),
            "sticky.sid=abc.def; other=1; sticky.route=ws3.mac3"
        );
        assert_eq!(cookie_header("sticky.route=ws1.m", None), None);
        assert_eq!(route_of("sticky.sid=x"), None);
    }

    #[test]
    fn a_user_remembers_the_route_cookies_it_was_given_before() {
        let mut u = User::new(
            0,
            &["127.0.0.1:1".parse().unwrap()],
            ClientFaults::default(),
        );
        u.jar.set(b"sticky.sid=s; Path=/");
        u.jar.set(b"sticky.route=ws1.a; Path=/");
        u.note_route(Some("ws1.a".into()));
        assert!(u.old_routes.is_empty(), "unchanged");
        u.jar.set(b"sticky.route=ws2.b; Path=/");
        u.note_route(Some("ws1.a".into()));
        assert_eq!(u.old_routes, ["ws1.a"]);
        // Replays name another host than the current one only.
        u.faults.replay_route = 1.0;
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
        let (sent, fault) = u.cookies(true, &mut rng);
        assert_eq!(
            sent.unwrap().to_str().unwrap(),
            "sticky.sid=s; sticky.route=ws1.a"
        );
        assert_eq!(fault, Some("replayed_route"));
        assert_eq!(u.tally.client.replayed_route, 1);
        let (sent, fault) = u.cookies(false, &mut rng);
        assert_eq!(
            sent.unwrap().to_str().unwrap(),
            "sticky.sid=s; sticky.route=ws2.b"
        );
        assert_eq!(fault, None);
        u.faults.drop_route = 1.0;
        let (sent, _) = u.cookies(true, &mut rng);
        assert_eq!(sent.unwrap().to_str().unwrap(), "sticky.sid=s");
        assert_eq!(u.tally.client.dropped_route, 1);
    }

    #[test]
    fn tallies_merge() {
        let mut a = Tally::default();
        let mut b = Tally::default();
        b.increments.ok = 2;
        b.cached.saturating_record(5);
        *b.anomalies.entry("lost write").or_default() += 1;
        a.merge(&b);
        a.merge(&b);
        assert_eq!(a.increments.ok, 4);
        assert_eq!(a.cached.len(), 2);
        assert_eq!(a.anomaly_count(), 2);
    }
}
