//! Admission of new sessions (issue 15, item 3): a flood of cookie-less
//! requests must not take a web server's (and its stores') memory, and
//! must not cost existing users their service.
//!
//! - Caps: a new session is refused (503, [`SessionError::Full`]) when
//!   this server already hosts [`Config::max_sessions`] sessions or
//!   [`Config::max_bytes`] serialized bytes. Existing sessions are never
//!   refused by the caps.
//! - Per client address: a token bucket of [`Config::new_sessions_burst`]
//!   tokens refilled at [`Config::new_sessions_per_ip`] per second; an
//!   empty bucket refuses (429, [`SessionError::RateLimited`], with
//!   `Retry-After`). The table of buckets is bounded.
//! - The client address ([`client_address`]): the TCP peer, or, behind a
//!   trusted proxy, the last `X-Forwarded-For` address that is not itself
//!   a trusted proxy.
//!
//! Both are checked when a new session would be stored, i.e. when it
//! would start costing memory: a cookie-less request that stores nothing
//! is never counted or refused.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use http::HeaderMap;

use crate::cache::Cache;
use crate::config::{Config, IpNet};
use crate::error::SessionError;

/// One client address's bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    /// [`Clock::now_ms`](crate::clock::Clock::now_ms) of the last refill.
    last_ms: u64,
}

/// Token buckets of new sessions per client address, at most `max` of them.
#[derive(Debug)]
struct Limiter {
    per_ms: f64,
    burst: f64,
    max: usize,
    table: HashMap<IpAddr, Bucket>,
}

impl Limiter {
    fn refilled(&self, b: &Bucket, now_ms: u64) -> f64 {
        (b.tokens + now_ms.saturating_sub(b.last_ms) as f64 * self.per_ms).min(self.burst)
    }

    /// Takes a token of `ip`'s bucket, or says in how many seconds one
    /// will be there.
    fn take(&mut self, ip: IpAddr, now_ms: u64) -> Result<(), u64> {
        if !self.table.contains_key(&ip) && self.table.len() >= self.max {
            self.evict(now_ms);
        }
        let fresh = Bucket {
            tokens: self.burst,
            last_ms: now_ms,
        };
        let b = *self.table.get(&ip).unwrap_or(&fresh);
        let tokens = self.refilled(&b, now_ms);
        let (tokens, r) = if tokens >= 1.0 {
            (tokens - 1.0, Ok(()))
        } else {
            let secs = ((1.0 - tokens) / self.per_ms / 1000.0).ceil().max(1.0);
            (tokens, Err(secs as u64))
        };
        self.table.insert(
            ip,
            Bucket {
                tokens,
                last_ms: now_ms,
            },
        );
        r
    }

    /// Makes room: forgets the addresses whose bucket has refilled (they
    /// are as if never seen), then, if more than half the table is left,
    /// the least recently seen half. Amortized O(1) per new address.
    fn evict(&mut self, now_ms: u64) {
        let before = self.table.len();
        let (per_ms, burst) = (self.per_ms, self.burst);
        self.table
            .retain(|_, b| b.tokens + now_ms.saturating_sub(b.last_ms) as f64 * per_ms < burst);
        if self.table.len() > self.max / 2 {
            let mut seen: Vec<u64> = self.table.values().map(|b| b.last_ms).collect();
            let mid = seen.len() / 2;
            let (_, cut, _) = seen.select_nth_unstable(mid);
            let cut = *cut;
            self.table.retain(|_, b| b.last_ms > cut);
        }
        metrics::counter!("sticky_rate_limit_forgotten_total")
            .increment((before - self.table.len()) as u64);
    }
}

/// The admission state of one web server: the per-address buckets and the
/// new sessions admitted but not yet in the cache.
#[derive(Debug)]
pub(crate) struct Admission {
    limiter: Option<Mutex<Limiter>>,
    reserved_sessions: AtomicUsize,
    reserved_bytes: AtomicU64,
    /// When a refusal by a cap was last logged at `warn` (at most one per
    /// [`WARN_EVERY_MS`]: a flood must not flood the log too).
    last_warn_ms: AtomicU64,
}

/// Least time between two `warn` logs of refusals by a cap.
const WARN_EVERY_MS: u64 = 10_000;

/// A new session admitted and on its way to the cache: counted against the
/// caps until dropped (after it entered the cache, or failed to).
#[derive(Debug)]
pub(crate) struct Reservation<'a> {
    admission: &'a Admission,
    bytes: u64,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.admission
            .reserved_sessions
            .fetch_sub(1, Ordering::AcqRel);
        self.admission
            .reserved_bytes
            .fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

fn refused(reason: &'static str) {
    metrics::counter!("sticky_new_sessions_refused_total", "reason" => reason).increment(1);
}

impl Admission {
    pub(crate) fn new(config: &Config) -> Self {
        let limiter = (config.new_sessions_per_ip > 0).then(|| {
            Mutex::new(Limiter {
                per_ms: f64::from(config.new_sessions_per_ip) / 1000.0,
                burst: f64::from(config.new_sessions_burst.max(1)),
                max: config.new_sessions_tracked.max(2),
                table: HashMap::new(),
            })
        });
        Self {
            limiter,
            reserved_sessions: AtomicUsize::new(0),
            reserved_bytes: AtomicU64::new(0),
            last_warn_ms: AtomicU64::new(0),
        }
    }

    /// Whether to log this refusal at `warn` (else `debug`).
    fn warn_now(&self, now_ms: u64) -> bool {
        let last = self.last_warn_ms.load(Ordering::Relaxed);
        (last == 0 || now_ms.saturating_sub(last) >= WARN_EVERY_MS)
            && self
                .last_warn_ms
                .compare_exchange(last, now_ms.max(1), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// Admits a new session of `bytes` serialized bytes from `client`
    /// (`None`: unknown, not rate-limited), or says why not.
    pub(crate) fn admit(
        &self,
        config: &Config,
        cache: &Cache,
        client: Option<IpAddr>,
        bytes: u64,
        now_ms: u64,
    ) -> Result<Reservation<'_>, SessionError> {
        if let (Some(ip), Some(limiter)) = (client, &self.limiter) {
            if !trusted(&config.trusted_proxies, ip) {
                let mut l = limiter.lock().unwrap_or_else(|p| p.into_inner());
                if let Err(retry_after_secs) = l.take(bucket_key(ip), now_ms) {
                    drop(l);
                    refused("rate");
                    tracing::debug!(client = %ip, "new session refused: too many from this address");
                    return Err(SessionError::RateLimited { retry_after_secs });
                }
            }
        }
        self.reserved_sessions.fetch_add(1, Ordering::AcqRel);
        self.reserved_bytes.fetch_add(bytes, Ordering::AcqRel);
        let r = Reservation {
            admission: self,
            bytes,
        };
        let sessions = cache.len() + self.reserved_sessions.load(Ordering::Acquire);
        if sessions > config.max_sessions {
            refused("max_sessions");
            if self.warn_now(now_ms) {
                tracing::warn!(
                    max_sessions = config.max_sessions,
                    "new sessions refused: this server hosts as many sessions as it may (logged at most every 10 s; see sticky_new_sessions_refused_total)"
                );
            }
            return Err(SessionError::Full(format!(
                "this server hosts its maximum of {} sessions (max_sessions); existing sessions are served, new ones are refused until some expire",
                config.max_sessions
            )));
        }
        let total = cache
            .bytes()
            .saturating_add(self.reserved_bytes.load(Ordering::Acquire));
        if total > config.max_bytes {
            refused("max_bytes");
            if self.warn_now(now_ms) {
                tracing::warn!(
                    max_bytes = config.max_bytes,
                    "new sessions refused: this server hosts as many session bytes as it may (logged at most every 10 s; see sticky_new_sessions_refused_total)"
                );
            }
            return Err(SessionError::Full(format!(
                "this server hosts its maximum of {} session bytes (max_bytes); existing sessions are served, new ones are refused until some expire",
                config.max_bytes
            )));
        }
        Ok(r)
    }

    /// Client addresses tracked by the per-address limit.
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.limiter.as_ref().map_or(0, |l| {
            l.lock().unwrap_or_else(|p| p.into_inner()).table.len()
        })
    }
}

/// The bucket an address counts against: an IPv4 address, or an IPv6
/// address's /64 (one subscriber or host typically has a whole /64, so
/// per-address buckets would let it create sessions without limit).
fn bucket_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

fn trusted(proxies: &[IpNet], ip: IpAddr) -> bool {
    proxies.iter().any(|n| n.contains(ip))
}

/// One `X-Forwarded-For` entry: an address, possibly with a port.
fn forwarded_ip(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
        .map(|ip| ip.to_canonical())
}

/// The client a request came from: `peer`, unless `peer` is a trusted
/// proxy; then the last `X-Forwarded-For` address that is not a trusted
/// proxy (walking from the right, stopping at anything unparsable), or the
/// leftmost one if all are trusted.
pub(crate) fn client_address(proxies: &[IpNet], peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    let mut client = peer.to_canonical();
    if !trusted(proxies, client) {
        return client;
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    for e in entries.iter().rev() {
        let Some(ip) = forwarded_ip(e) else { break };
        client = ip;
        if !trusted(proxies, ip) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::state::tests::config;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn the_client_is_the_peer_or_the_last_untrusted_forwarded_address() {
        let proxies = IpNet::loopback();
        let mut h = HeaderMap::new();
        h.append(
            "x-forwarded-for",
            "6.6.6.6, 10.0.0.1".parse().unwrap_or_else(|_| panic!()),
        );
        h.append(
            "x-forwarded-for",
            "203.0.113.9".parse().unwrap_or_else(|_| panic!()),
        );
        assert_eq!(
            client_address(&proxies, ip("198.51.100.1"), &h),
            ip("198.51.100.1"),
            "untrusted peer: its XFF is ignored"
        );
        assert_eq!(
            client_address(&proxies, ip("127.0.0.1"), &h),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_address(&proxies, ip("::ffff:127.0.0.1"), &h),
            ip("203.0.113.9")
        );
        let mut chain = HeaderMap::new();
        chain.append(
            "x-forwarded-for",
            "6.6.6.6, 203.0.113.9, 127.0.0.2"
                .parse()
                .unwrap_or_else(|_| panic!()),
        );
        assert_eq!(
            client_address(&proxies, ip("127.0.0.1"), &chain),
            ip("203.0.113.9"),
            "trusted hops are skipped"
        );
        let mut garbage = HeaderMap::new();
        garbage.append(
            "x-forwarded-for",
            "nonsense, 127.0.0.3".parse().unwrap_or_else(|_| panic!()),
        );
        assert_eq!(
            client_address(&proxies, ip("127.0.0.1"), &garbage),
            ip("127.0.0.3")
        );
        assert_eq!(
            client_address(&proxies, ip("127.0.0.1"), &HeaderMap::new()),
            ip("127.0.0.1")
        );
        assert_eq!(
            client_address(&[], ip("127.0.0.1"), &h),
            ip("127.0.0.1"),
            "no trusted proxies"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_bucket_refills_and_the_table_stays_bounded() {
        let mut c = config(1);
        c.new_sessions_per_ip = 10;
        c.new_sessions_burst = 3;
        c.new_sessions_tracked = 100;
        let a = Admission::new(&c);
        let clock = Clock::new();
        let cache = Cache::new(clock);
        let client = Some(ip("203.0.113.1"));
        for _ in 0..3 {
            assert!(a.admit(&c, &cache, client, 1, clock.now_ms()).is_ok());
        }
        match a.admit(&c, &cache, client, 1, clock.now_ms()) {
            Err(SessionError::RateLimited { retry_after_secs }) => assert_eq!(retry_after_secs, 1),
            other => panic!("{other:?}"),
        }
        assert!(a
            .admit(&c, &cache, Some(ip("203.0.113.2")), 1, clock.now_ms())
            .is_ok());
        assert!(a
            .admit(&c, &cache, Some(ip("127.0.0.1")), 1, clock.now_ms())
            .is_ok());
        // IPv6: one bucket per /64.
        for _ in 0..3 {
            assert!(a
                .admit(&c, &cache, Some(ip("2001:db8:1:2::1")), 1, clock.now_ms())
                .is_ok());
        }
        assert!(
            a.admit(
                &c,
                &cache,
                Some(ip("2001:db8:1:2:ffff::9")),
                1,
                clock.now_ms()
            )
            .is_err(),
            "same /64"
        );
        assert!(
            a.admit(&c, &cache, Some(ip("2001:db8:1:3::1")), 1, clock.now_ms())
                .is_ok(),
            "another /64"
        );
        tokio::time::advance(std::time::Duration::from_millis(100)).await;
        assert!(
            a.admit(&c, &cache, client, 1, clock.now_ms()).is_ok(),
            "refilled one"
        );
        for i in 0..1000u32 {
            let ip = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
            assert!(a.admit(&c, &cache, Some(ip), 1, clock.now_ms()).is_ok());
            assert!(a.tracked() <= 100, "{} tracked", a.tracked());
        }
    }

    #[tokio::test]
    async fn the_caps_count_reservations() {
        let mut c = config(1);
        c.max_sessions = 2;
        c.max_bytes = 100;
        let a = Admission::new(&c);
        let cache = Cache::new(Clock::new());
        let one = a.admit(&c, &cache, None, 10, 0);
        let two = a.admit(&c, &cache, None, 10, 0);
        assert!(one.is_ok() && two.is_ok());
        assert!(matches!(
            a.admit(&c, &cache, None, 10, 0),
            Err(SessionError::Full(_))
        ));
        drop(one);
        assert!(
            matches!(a.admit(&c, &cache, None, 91, 0), Err(SessionError::Full(m)) if m.contains("max_bytes"))
        );
        assert!(a.admit(&c, &cache, None, 90, 0).is_ok());
    }
}
