//! The history's sampler: every
//! [`history_interval`](crate::DirectorConfig::history_interval) (5 s) it
//! records one [`Sample`] of what the director observes — its request
//! and failover counters, its response-time histogram, the routable
//! servers, the store board — and of what the web servers report in
//! their Prometheus metrics (`GET /.sticky/metrics` with the admin
//! token: `sticky_takeovers_total`, `sticky_adopted_total`,
//! `sticky_recopies_total`, `sticky_recopy_pending`), and an event for
//! each server whose failovers, takeovers or re-copies grew. The counters
//! are first read when the sampler starts: what a web server counted
//! before (or before the director first reached it) is not shown. A web
//! server without metrics (a library user without a recorder: `404`) or
//! not answering is left out of those figures; it is never marked down by
//! this.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::{Duration, Instant};

use http::{HeaderValue, Method, StatusCode};
use tokio::task::JoinSet;

use crate::history::{quantile, wall_ms, EventKind, Sample};
use crate::state::State;
use crate::status::StoreState;

/// The web servers' metrics path.
const METRICS_PATH: &str = "/.sticky/metrics";
/// Largest metrics answer read.
const MAX_METRICS: usize = 4 << 20;
/// Longest a scrape may take (less when the interval is shorter).
const SCRAPE_LIMIT: Duration = Duration::from_secs(2);
/// Shortest interval (a zero one would spin).
const MIN_INTERVAL: Duration = Duration::from_millis(50);

/// The counters a web server's metrics carry, as last read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Metrics {
    takeovers: u64,
    adopted: u64,
    recopies: u64,
    pending: u64,
}

/// What the previous sample saw of one web server.
#[derive(Default)]
struct Seen {
    failovers: u64,
    metrics: Option<Metrics>,
}

/// What the previous sample saw.
struct Baseline {
    at: Instant,
    requests: u64,
    failovers: u64,
    cumulative: Vec<u64>,
    servers: HashMap<String, Seen>,
}

/// Samples until the director stops.
pub(crate) async fn run(shared: Weak<State>) {
    let Some(interval) = shared
        .upgrade()
        .map(|s| s.config.history_interval.max(MIN_INTERVAL))
    else {
        return;
    };
    // The web servers' counters now (they usually run before the director
    // starts), so that the first sample counts only what it covers.
    let mut metrics = scrape(&shared, interval.min(SCRAPE_LIMIT)).await;
    let Some(s) = shared.upgrade() else {
        return;
    };
    let mut last = Baseline {
        at: Instant::now(),
        requests: s.stats.requests.load(Ordering::Relaxed),
        failovers: s.stats.failovers.load(Ordering::Relaxed),
        cumulative: s.stats.response_time.snapshot().cumulative,
        servers: s
            .backends()
            .iter()
            .map(|b| {
                let seen = Seen {
                    failovers: b.failovers.load(Ordering::Relaxed),
                    metrics: metrics.remove(&b.name),
                };
                (b.name.clone(), seen)
            })
            .collect(),
    };
    drop(s);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate: the first sample covers a whole interval.
    tick.tick().await;
    loop {
        tick.tick().await;
        if !shared.upgrade().is_some_and(|s| s.is_serving()) {
            return;
        }
        let metrics = scrape(&shared, interval.min(SCRAPE_LIMIT)).await;
        let Some(s) = shared.upgrade() else {
            return;
        };
        sample(&s, metrics, &mut last);
    }
}

/// Takes one sample, with the web servers' `metrics` just read, and
/// records the events it shows.
fn sample(s: &State, metrics: HashMap<String, Metrics>, last: &mut Baseline) {
    let now = Instant::now();
    let elapsed = now.duration_since(last.at).as_secs_f64();
    let requests = s.stats.requests.load(Ordering::Relaxed);
    let failovers = s.stats.failovers.load(Ordering::Relaxed);
    let times = s.stats.response_time.snapshot();
    let requests_per_sec = if elapsed > 0.0 {
        requests.saturating_sub(last.requests) as f64 / elapsed
    } else {
        0.0
    };
    let mut sample = Sample {
        at_ms: wall_ms(),
        requests_per_sec: (requests_per_sec * 100.0).round() / 100.0,
        p50_us: quantile(0.5, &times.le_us, &times.cumulative, &last.cumulative),
        p99_us: quantile(0.99, &times.le_us, &times.cumulative, &last.cumulative),
        failovers: failovers.saturating_sub(last.failovers),
        servers_up: s.table.load().servers_up,
        ..Sample::default()
    };
    let stores = s.stores.status();
    let up: Vec<_> = stores
        .iter()
        .filter(|st| st.state == StoreState::Up)
        .collect();
    sample.stores_up = up.len();
    if !up.is_empty() {
        sample.store_keys = Some(up.iter().map(|st| st.keys).sum());
    }

    let mut servers = HashMap::new();
    for b in s.backends() {
        let before = last.servers.remove(&b.name).unwrap_or_default();
        let now_failovers = b.failovers.load(Ordering::Relaxed);
        let moved = grew(now_failovers, Some(before.failovers));
        if moved > 0 {
            s.history.event(
                EventKind::Failover,
                &b.name,
                format!(
                    "{} from its clients went to other servers",
                    plural(moved, "request")
                ),
            );
        }
        let read = metrics.get(&b.name).copied();
        if let Some(m) = read {
            let prior = before.metrics;
            let took = grew(m.takeovers, prior.map(|p| p.takeovers));
            let adopted = grew(m.adopted, prior.map(|p| p.adopted));
            let copied = grew(m.recopies, prior.map(|p| p.recopies));
            // Adopting claims through a takeover: counted in both.
            *sample.takeovers.get_or_insert(0) += took;
            *sample.recopies.get_or_insert(0) += copied;
            *sample.recopy_pending.get_or_insert(0) += m.pending;
            let told = match (took, adopted) {
                (0, 0) => None,
                (0, a) => Some(format!("adopted {} of a dead server", plural(a, "session"))),
                (t, 0) => Some(format!(
                    "took over {} from the stores",
                    plural(t, "session")
                )),
                (t, a) => Some(format!(
                    "took over {} from the stores ({a} adopting a dead server's)",
                    plural(t, "session")
                )),
            };
            if let Some(message) = told {
                s.history.event(EventKind::Takeover, &b.name, message);
            }
            let pending_before = prior.map_or(0, |p| p.pending);
            let progress = match (copied, m.pending) {
                (0, 0) if pending_before > 0 => Some("re-copy done".to_owned()),
                (0, 0) => None,
                (0, waiting) if pending_before == 0 => Some(format!(
                    "re-copy started: {} to copy again",
                    plural(waiting, "session")
                )),
                (0, _) => None,
                (n, 0) => Some(format!("re-copied {}: done", plural(n, "session"))),
                (n, waiting) => Some(format!(
                    "re-copied {} ({waiting} waiting)",
                    plural(n, "session")
                )),
            };
            if let Some(message) = progress {
                s.history.event(EventKind::Recopy, &b.name, message);
            }
        }
        servers.insert(
            b.name.clone(),
            Seen {
                failovers: now_failovers,
                // A server not read this time keeps what was last read.
                metrics: read.or(before.metrics),
            },
        );
    }
    s.history.sample(sample);
    *last = Baseline {
        at: now,
        requests,
        failovers,
        cumulative: times.cumulative,
        servers,
    };
}

/// How much a counter grew since `before` (all of it after a restart of
/// its process, nothing at the first look).
fn grew(now: u64, before: Option<u64>) -> u64 {
    match before {
        Some(b) if now >= b => now - b,
        Some(_) => now,
        None => 0,
    }
}

fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Reads the metrics of every web server, at once (those marked down
/// too: a server that comes back is then read from its first moments),
/// without keeping the director alive meanwhile.
async fn scrape(shared: &Weak<State>, limit: Duration) -> HashMap<String, Metrics> {
    let Some(s) = shared.upgrade() else {
        return HashMap::new();
    };
    let mut reads = JoinSet::new();
    for b in s.backends() {
        let token: HeaderValue = s.token.clone();
        let (name, addr) = (b.name.clone(), b.addr);
        reads.spawn(async move {
            let answer = sticky_proto::control::request(
                addr,
                Method::GET,
                METRICS_PATH,
                Some(&token),
                limit,
                MAX_METRICS,
            )
            .await;
            let metrics = match answer {
                Ok(resp) if resp.status() == StatusCode::OK => {
                    std::str::from_utf8(resp.body()).ok().and_then(parse)
                }
                Ok(_) | Err(_) => None,
            };
            (name, metrics)
        });
    }
    drop(s);
    let mut out = HashMap::new();
    while let Some(done) = reads.join_next().await {
        if let Ok((name, Some(m))) = done {
            out.insert(name, m);
        }
    }
    out
}

/// The counters of a Prometheus text page (label sets summed); `None`
/// unless it has `sticky_takeovers_total` (not a Sticky web server's).
fn parse(text: &str) -> Option<Metrics> {
    let mut m = Metrics::default();
    let mut found = false;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(series), Some(value)) = (parts.next(), parts.next()) else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series);
        let slot = match name {
            "sticky_takeovers_total" => {
                found = true;
                &mut m.takeovers
            }
            "sticky_adopted_total" => &mut m.adopted,
            "sticky_recopies_total" => &mut m.recopies,
            "sticky_recopy_pending" => &mut m.pending,
            _ => continue,
        };
        if let Ok(v) = value.parse::<f64>() {
            if v.is_finite() && v >= 0.0 {
                *slot = slot.saturating_add(v as u64);
            }
        }
    }
    found.then_some(m)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_web_servers_metrics_page_gives_its_counters() {
        let page = "# HELP sticky_takeovers_total x\n\
                    # TYPE sticky_takeovers_total counter\n\
                    sticky_takeovers_total 3\n\
                    sticky_adopted_total 2\n\
                    sticky_recopies_total{store=\"s1\"} 4\n\
                    sticky_recopies_total{store=\"s2\"} 5\n\
                    sticky_recopy_pending 7.0\n\
                    sticky_takeovers_totalx 100\n\
                    sticky_cache_hits_total 9\n\
                    garbage\n";
        assert_eq!(
            parse(page),
            Some(Metrics {
                takeovers: 3,
                adopted: 2,
                recopies: 9,
                pending: 7
            })
        );
        assert_eq!(parse("other_metric 1\n"), None, "not a Sticky web server");
        assert_eq!(
            parse("sticky_takeovers_total NaN\nsticky_recopy_pending -1\n"),
            Some(Metrics::default())
        );
    }

    #[test]
    fn counters_grow_restart_and_start_unseen() {
        assert_eq!(grew(10, Some(4)), 6);
        assert_eq!(grew(3, Some(40)), 3, "its process restarted");
        assert_eq!(grew(10, None), 0, "the first look counts nothing");
        assert_eq!(plural(1, "session"), "1 session");
        assert_eq!(plural(2, "session"), "2 sessions");
    }
}
