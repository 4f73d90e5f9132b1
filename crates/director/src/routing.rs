//! Routing: the [`Table`] every request reads, and the choice of a web
//! server for a request.
//!
//! The table is an immutable snapshot of which servers may take which
//! clients. It is rebuilt whenever a server's health, readiness or admin
//! state changes, or the server list is reloaded, and published through an
//! `ArcSwap`: the request path reads it without a lock.
//!
//! The rules (see `docs/director.md`):
//!
//! 1. A valid route cookie naming a routable server that is not evacuating
//!    goes there (standbys and draining servers included).
//! 2. A valid route cookie naming a server that is down, fencing,
//!    evacuating or unknown: a healthy standby if there is one (and one is
//!    ready, or no web server is), else the healthy web servers; among
//!    them, the one rendezvous hashing picks for
//!    the client's key (its session cookie, else its route cookie, else its
//!    IP address), so every director picks the same one.
//! 3. No cookie, or a forged one: a new client: least requests in flight
//!    relative to the weight, ties broken by weighted rotation, over the
//!    healthy web servers that are not standby and not draining.
//!
//! Wherever a choice is made, servers that report `ready` are preferred
//! over those that do not, and servers a request could not connect to
//! since their last good health check are passed over (unless nothing
//! else is left). Draining servers are the last resort for moved
//! clients, when nothing else is healthy.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use sticky_proto::rendezvous;

use crate::backend::Backend;
use crate::route_cookie::{same_value, split_value, RequestCookies, RouteSigner};
use crate::status::AdminState;

/// One server in a table.
pub(crate) struct Entry {
    pub(crate) backend: Arc<Backend>,
    /// Up, fenced and not evacuating: a cookie naming it is honoured.
    pub(crate) routable: bool,
    pub(crate) weight: u32,
    /// A request could not connect to it since its last good health check
    /// ([`Backend::unreachable`]): passed over wherever the director
    /// chooses, like a request's own `avoid` list.
    unreachable: bool,
}

/// A snapshot of the servers and who may take which clients.
pub(crate) struct Table {
    pub(crate) entries: Vec<Entry>,
    /// Candidates for new clients.
    new_clients: Vec<usize>,
    /// Candidates for moved clients, in order of preference.
    standbys: Vec<usize>,
    web: Vec<usize>,
    last_resort: Vec<usize>,
    /// Whether [`Self::standbys`] and [`Self::web`] hold a server that
    /// reports ready (else they hold every candidate, none ready).
    standbys_ready: bool,
    web_ready: bool,
    /// Whether any entry is [`Entry::unreachable`].
    any_unreachable: bool,
    pub(crate) servers_up: usize,
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    /// Index in [`Table::entries`].
    pub(crate) index: usize,
    /// The response must carry a route cookie naming the chosen server.
    pub(crate) set_cookie: bool,
    /// The client's valid cookie named another server (which may no longer
    /// be configured: then `None`).
    pub(crate) moved: Option<Moved>,
    /// The attempt may give up connecting sooner (`[director]
    /// reroute_connect_timeout_ms`): the director chose the server, and
    /// either another one it would choose next is left (neither avoided
    /// nor unreachable), or this one could not be reached lately and is
    /// tried only because nothing else is left (a quick answer lets the
    /// client try another director).
    pub(crate) quick_connect: bool,
}

/// A client moved off the server its cookie named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Moved {
    /// Index of the server it left, if still configured.
    pub(crate) from: Option<usize>,
}

/// Why a route cookie was not honoured as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CookieVerdict {
    Absent,
    Forged,
    /// Valid, names the entry at this index.
    Known(usize),
    /// Valid, names a server the table does not have.
    Unknown,
}

impl Table {
    /// Builds a table from the current state of `backends`.
    pub(crate) fn build(backends: &[Arc<Backend>]) -> Self {
        let mut entries = Vec::with_capacity(backends.len());
        let mut ready = Vec::with_capacity(backends.len());
        for b in backends {
            let h = b.health();
            let admin = b.admin();
            entries.push(Entry {
                backend: Arc::clone(b),
                routable: h.routable() && admin != AdminState::Evacuating,
                weight: b.weight(),
                unreachable: b.unreachable(),
            });
            ready.push(h.ready);
        }
        // The candidates `f` accepts, those that report ready if any, and
        // whether any did.
        let pick = |f: &dyn Fn(&Entry) -> bool| -> (Vec<usize>, bool) {
            let all: Vec<usize> = (0..entries.len()).filter(|&i| f(&entries[i])).collect();
            let ready_only: Vec<usize> = all.iter().copied().filter(|&i| ready[i]).collect();
            if ready_only.is_empty() {
                (all, false)
            } else {
                (ready_only, true)
            }
        };
        let enabled = |e: &Entry| e.routable && e.backend.admin() == AdminState::Enabled;
        let (new_clients, _) = pick(&|e| enabled(e) && !e.backend.standby() && e.weight > 0);
        let (standbys, standbys_ready) = pick(&|e| enabled(e) && e.backend.standby());
        let (web, web_ready) = pick(&|e| enabled(e) && !e.backend.standby());
        let (last_resort, _) = pick(&|e| e.routable);
        let servers_up = entries.iter().filter(|e| e.routable).count();
        let any_unreachable = entries.iter().any(|e| e.unreachable);
        Self {
            entries,
            new_clients,
            standbys,
            web,
            last_resort,
            standbys_ready,
            web_ready,
            any_unreachable,
            servers_up,
        }
    }

    /// The index of the server called `name`.
    /// Whether this table routes to the server called `name`.
    pub(crate) fn lists_routable(&self, name: &str) -> bool {
        self.index_of(name.as_bytes())
            .is_some_and(|i| self.entries[i].routable)
    }

    pub(crate) fn index_of(&self, name: &[u8]) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.backend.name.as_bytes() == name)
    }

    fn verdict(&self, route: Option<&[u8]>, signer: &RouteSigner) -> CookieVerdict {
        let Some(value) = route else {
            return CookieVerdict::Absent;
        };
        let Some((name, _)) = split_value(value) else {
            return CookieVerdict::Forged;
        };
        match self.index_of(name) {
            Some(i) if same_value(value, self.entries[i].backend.cookie_value.as_bytes()) => {
                CookieVerdict::Known(i)
            }
            Some(_) => CookieVerdict::Forged,
            None if signer.verify(value).is_some() => CookieVerdict::Unknown,
            None => CookieVerdict::Forged,
        }
    }

    /// Chooses the server for a request; `None` when no server can take it.
    #[cfg(test)]
    pub(crate) fn route(
        &self,
        cookies: &RequestCookies<'_>,
        client_ip: IpAddr,
        signer: &RouteSigner,
        rotation: &AtomicUsize,
    ) -> Option<Decision> {
        self.route_avoiding(cookies, client_ip, signer, rotation, &[])
    }

    /// Chooses the server for a request; `None` when no server can take
    /// it. Passes over the servers in `avoid` (this request could not
    /// connect to them) and those some request could not connect to since
    /// their last good health check, wherever the choice is the
    /// director's: a moved client's failover (to the next tier when every
    /// server of one is avoided: a standby cut from this director, then
    /// the web servers) and a new client's pick. When every candidate is
    /// avoided, the choice is made as if none were. A cookie naming a
    /// routable server goes there (it may hold the session), unless this
    /// request could not connect to it: then the request fails over, and
    /// the server it lands on claims the session through the stores — it
    /// is refused (`421` naming the owner) while the owner's lease is live,
    /// and succeeds when the cookie was stale (an old one, replayed).
    pub(crate) fn route_avoiding(
        &self,
        cookies: &RequestCookies<'_>,
        client_ip: IpAddr,
        signer: &RouteSigner,
        rotation: &AtomicUsize,
        avoid: &[Arc<Backend>],
    ) -> Option<Decision> {
        match self.verdict(cookies.route, signer) {
            CookieVerdict::Known(i) if self.entries[i].routable && !self.in_avoid(i, avoid) => {
                Some(Decision {
                    index: i,
                    set_cookie: false,
                    moved: None,
                    quick_connect: self.avoided(i, avoid) || self.failover_left(i, avoid),
                })
            }
            CookieVerdict::Known(i) => self.failover(cookies, client_ip, Some(i), avoid),
            CookieVerdict::Unknown => self.failover(cookies, client_ip, None, avoid),
            CookieVerdict::Absent | CookieVerdict::Forged => {
                let candidates = self.avoiding(&self.new_clients, avoid);
                let index = self.least_loaded(&candidates, rotation)?;
                let quick_connect = self.avoided(index, avoid)
                    || self
                        .new_clients
                        .iter()
                        .any(|&j| j != index && !self.avoided(j, avoid));
                Some(Decision {
                    index,
                    set_cookie: true,
                    moved: None,
                    quick_connect,
                })
            }
        }
    }

    fn failover(
        &self,
        cookies: &RequestCookies<'_>,
        client_ip: IpAddr,
        from: Option<usize>,
        avoid: &[Arc<Backend>],
    ) -> Option<Decision> {
        let candidates = self.failover_among(avoid);
        if candidates.is_empty() {
            return None;
        }
        let index = match (cookies.session, cookies.route) {
            (Some(key), _) | (None, Some(key)) => self.rendezvous(&candidates, key),
            (None, None) => self.rendezvous(&candidates, client_ip.to_string().as_bytes()),
        }?;
        let quick_connect = self.avoided(index, avoid) || self.failover_left(index, avoid);
        Some(Decision {
            index,
            set_cookie: true,
            moved: Some(Moved { from }),
            quick_connect,
        })
    }

    /// The servers a moved client is routed among (by rendezvous hashing
    /// of its key): the healthy standbys if any, else the healthy web
    /// servers, else any routable one; standbys none of which reports
    /// ready (say, cut from a quorum of the stores: it could not take the
    /// sessions over) give way to web servers that do. Empty when none is
    /// routable.
    pub(crate) fn failover_candidates(&self) -> &[usize] {
        self.failover_tiers()
            .into_iter()
            .find(|c| !c.is_empty())
            .unwrap_or(&[])
    }

    /// [`Self::failover_candidates`] without the servers in `avoid` and the
    /// unreachable ones: the first tier that has others (a standby this
    /// director cannot reach gives way to the web servers); all of the
    /// first tier when none has. What a moved client is routed among, and
    /// who is asked to adopt a dead server's sessions.
    pub(crate) fn failover_among(&self, avoid: &[Arc<Backend>]) -> std::borrow::Cow<'_, [usize]> {
        let tier = self.failover_candidates();
        if avoid.is_empty() && !self.any_unreachable {
            return std::borrow::Cow::Borrowed(tier);
        }
        self.failover_tiers()
            .into_iter()
            .map(|c| self.without(c, avoid))
            .find(|c| !c.is_empty())
            .map_or(std::borrow::Cow::Borrowed(tier), std::borrow::Cow::Owned)
    }

    /// The tiers of [`Self::failover_candidates`], in order of preference.
    fn failover_tiers(&self) -> [&[usize]; 3] {
        if self.standbys_ready || !self.web_ready {
            [&self.standbys, &self.web, &self.last_resort]
        } else {
            [&self.web, &self.standbys, &self.last_resort]
        }
    }

    /// `candidates` but the servers in `avoid` (compared by name) and the
    /// unreachable ones.
    fn without(&self, candidates: &[usize], avoid: &[Arc<Backend>]) -> Vec<usize> {
        candidates
            .iter()
            .copied()
            .filter(|&i| !self.avoided(i, avoid))
            .collect()
    }

    /// Whether a failover candidate other than entry `i` is left, neither
    /// in `avoid` nor unreachable.
    fn failover_left(&self, i: usize, avoid: &[Arc<Backend>]) -> bool {
        self.failover_tiers()
            .iter()
            .any(|t| t.iter().any(|&j| j != i && !self.avoided(j, avoid)))
    }

    /// Whether entry `i` is in `avoid` (compared by name) or unreachable.
    fn avoided(&self, i: usize, avoid: &[Arc<Backend>]) -> bool {
        self.entries[i].unreachable || self.in_avoid(i, avoid)
    }

    /// Whether entry `i` is in `avoid` (compared by name): this request
    /// could not connect to it.
    fn in_avoid(&self, i: usize, avoid: &[Arc<Backend>]) -> bool {
        let name = &self.entries[i].backend.name;
        avoid.iter().any(|b| b.name == *name)
    }

    /// `candidates` but the servers in `avoid` and the unreachable ones;
    /// all of them when that leaves none (or nothing is avoided).
    fn avoiding<'a>(
        &self,
        candidates: &'a [usize],
        avoid: &[Arc<Backend>],
    ) -> std::borrow::Cow<'a, [usize]> {
        if avoid.is_empty() && !self.any_unreachable {
            return std::borrow::Cow::Borrowed(candidates);
        }
        let rest = self.without(candidates, avoid);
        if rest.is_empty() {
            std::borrow::Cow::Borrowed(candidates)
        } else {
            std::borrow::Cow::Owned(rest)
        }
    }

    /// Weighted rendezvous (highest random weight) hashing of `key` over
    /// `candidates`: the same key picks the same server on every director,
    /// and removing a server only moves the keys it had.
    fn rendezvous(&self, candidates: &[usize], key: &[u8]) -> Option<usize> {
        let scores = candidates.iter().map(|&i| {
            let e = &self.entries[i];
            let h = rendezvous::sha256_hash(key, e.backend.name.as_bytes());
            // Equal scores: the higher hash.
            (rendezvous::weighted_score(h, e.weight.max(1)), h)
        });
        rendezvous::best(scores).map(|p| candidates[p])
    }

    /// Fewest requests in flight relative to the weight; ties (the usual
    /// case at low load) go round by weight, so that sequential new clients
    /// spread in proportion to the weights.
    fn least_loaded(&self, candidates: &[usize], rotation: &AtomicUsize) -> Option<usize> {
        // (active, weight) of the best so far, compared as active/weight by
        // cross-multiplication.
        let mut best: Option<(u64, u64)> = None;
        let mut tied_weight: u64 = 0;
        for &i in candidates {
            let e = &self.entries[i];
            let active = e.backend.active.load(Ordering::Relaxed);
            let w = u64::from(e.weight);
            match best {
                Some((ba, bw))
                    if u128::from(active) * u128::from(bw) > u128::from(ba) * u128::from(w) => {}
                Some((ba, bw))
                    if u128::from(active) * u128::from(bw) == u128::from(ba) * u128::from(w) =>
                {
                    tied_weight += w;
                }
                _ => {
                    best = Some((active, w));
                    tied_weight = w;
                }
            }
        }
        let (ba, bw) = best?;
        if tied_weight == 0 {
            return None;
        }
        let ticket = rotation.fetch_add(1, Ordering::Relaxed) as u64 % tied_weight;
        let mut acc = 0u64;
        let mut last = None;
        for &i in candidates {
            let e = &self.entries[i];
            let active = e.backend.active.load(Ordering::Relaxed);
            let w = u64::from(e.weight);
            // Loads may have moved since the first pass: accept any server
            // at or below the best ratio seen.
            if u128::from(active) * u128::from(bw) <= u128::from(ba) * u128::from(w) {
                last = Some(i);
                acc += w;
                if ticket < acc {
                    return Some(i);
                }
            }
        }
        last.or_else(|| candidates.first().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DirectorConfig, ServerSpec};
    use std::net::{Ipv4Addr, SocketAddr};

    const SECRET: &[u8] = b"a cluster secret of at least 32 bytes!";

    fn backends(specs: &[(&str, bool, u32)]) -> Vec<Arc<Backend>> {
        let servers: Vec<ServerSpec> = specs
            .iter()
            .enumerate()
            .map(|(i, (name, standby, weight))| ServerSpec {
                name: (*name).into(),
                addr: SocketAddr::from(([127, 0, 0, 1], 9000 + i as u16)),
                standby: *standby,
                weight: *weight,
            })
            .collect();
        let config = DirectorConfig::new(SECRET, servers.clone());
        let signer = RouteSigner::new(SECRET);
        servers
            .iter()
            .map(|s| {
                let b = Backend::new(s, &config, &signer, Default::default());
                {
                    let mut h = b.health();
                    h.up = true;
                    h.ready = true;
                    h.epoch = Some(1);
                }
                Arc::new(b)
            })
            .collect()
    }

    fn down(b: &Backend) {
        b.health().mark_down(2);
    }

    const IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[test]
    fn new_clients_rotate_by_weight_when_idle() {
        let bs = backends(&[
            ("ws1", false, 1),
            ("ws2", false, 2),
            ("ws3", false, 1),
            ("sb", true, 1),
        ]);
        let t = Table::build(&bs);
        let signer = RouteSigner::new(SECRET);
        let rot = AtomicUsize::new(0);
        let mut counts = [0usize; 4];
        for _ in 0..400 {
            let d = t
                .route(&RequestCookies::default(), IP, &signer, &rot)
                .unwrap_or_else(|| panic!("no route"));
            assert!(d.set_cookie && d.moved.is_none());
            counts[d.index] += 1;
        }
        assert_eq!(counts, [100, 200, 100, 0], "weights 1:2:1, standby never");
    }

    #[test]
    fn new_clients_prefer_fewer_requests_in_flight() {
        let bs = backends(&[("ws1", false, 1), ("ws2", false, 1)]);
        bs[0].active.store(3, Ordering::Relaxed);
        let t = Table::build(&bs);
        let rot = AtomicUsize::new(0);
        let signer = RouteSigner::new(SECRET);
        for _ in 0..10 {
            let d = t.route(&RequestCookies::default(), IP, &signer, &rot);
            assert_eq!(d.map(|d| d.index), Some(1));
        }
    }

    #[test]
    fn cookies_stick_and_failover_is_deterministic() {
        let bs = backends(&[("ws1", false, 1), ("ws2", false, 1), ("ws3", false, 1)]);
        let signer = RouteSigner::new(SECRET);
        let rot = AtomicUsize::new(0);
        let ws1 = signer.value("ws1");
        let t = Table::build(&bs);
        let c = RequestCookies {
            route: Some(ws1.as_bytes()),
            session: Some(b"sid-1"),
        };
        let d = t.route(&c, IP, &signer, &rot);
        assert_eq!(
            d,
            Some(Decision {
                index: 0,
                set_cookie: false,
                moved: None,
                quick_connect: true,
            })
        );

        down(&bs[0]);
        let t = Table::build(&bs);
        // Many session keys of ws1's clients spread over ws2 and ws3, each
        // always to the same one.
        let mut counts = [0usize; 3];
        for n in 0..1000 {
            let sid = format!("session-{n}");
            let c = RequestCookies {
                route: Some(ws1.as_bytes()),
                session: Some(sid.as_bytes()),
            };
            let d = t
                .route(&c, IP, &signer, &rot)
                .unwrap_or_else(|| panic!("no route"));
            assert_eq!(d.moved, Some(Moved { from: Some(0) }));
            assert!(d.set_cookie);
            let again = t.route(&c, IP, &signer, &rot).map(|d| d.index);
            assert_eq!(again, Some(d.index));
            counts[d.index] += 1;
        }
        assert_eq!(counts[0], 0);
        assert!(
            counts[1] > 400 && counts[2] > 400,
            "even spread: {counts:?}"
        );
        // Another director (another table built from equal state) agrees.
        let other = Table::build(&bs);
        let c = RequestCookies {
            route: Some(ws1.as_bytes()),
            session: Some(b"k"),
        };
        assert_eq!(
            t.route(&c, IP, &signer, &rot).map(|d| d.index),
            other
                .route(&c, IP, &signer, &AtomicUsize::new(7))
                .map(|d| d.index)
        );
    }

    /// `ws1`–`ws3` and the standby `sb`, `ws1` down.
    fn three_and_a_standby_ws1_down() -> Vec<Arc<Backend>> {
        let bs = backends(&[
            ("ws1", false, 1),
            ("ws2", false, 1),
            ("ws3", false, 1),
            ("sb", true, 1),
        ]);
        down(&bs[0]);
        bs
    }

    /// The table of `ws1`–`ws3` alone, `ws1` down: where moved clients go
    /// when no standby is up.
    fn web_only_ws1_down() -> Table {
        let web_only = backends(&[("ws1", false, 1), ("ws2", false, 1), ("ws3", false, 1)]);
        down(&web_only[0]);
        Table::build(&web_only)
    }

    #[test]
    fn a_server_a_request_could_not_reach_is_passed_over_where_the_director_chooses() {
        let bs = three_and_a_standby_ws1_down();
        let signer = RouteSigner::new(SECRET);
        let rot = AtomicUsize::new(0);
        let t = Table::build(&bs);
        let ws1 = signer.value("ws1");
        let sb = [Arc::clone(&bs[3])];
        let no_standby = web_only_ws1_down();
        let mut spread = [0usize; 4];
        for n in 0..50 {
            let sid = format!("s{n}");
            let moved = RequestCookies {
                route: Some(ws1.as_bytes()),
                session: Some(sid.as_bytes()),
            };
            // A moved client goes to the standby, unless this request
            // could not connect to it: then to the web servers, by
            // rendezvous hashing over them, as when no standby is up.
            assert_eq!(t.route(&moved, IP, &signer, &rot).map(|d| d.index), Some(3));
            let d = t
                .route_avoiding(&moved, IP, &signer, &rot, &sb)
                .unwrap_or_else(|| panic!("no route"));
            assert!(d.set_cookie && d.moved.is_some());
            spread[d.index] += 1;
            let without_standby = no_standby.route(&moved, IP, &signer, &rot);
            assert_eq!(Some(d.index), without_standby.map(|d| d.index));
            // Every candidate avoided: as if none were.
            let all: Vec<Arc<Backend>> = bs.iter().map(Arc::clone).collect();
            let d = t.route_avoiding(&moved, IP, &signer, &rot, &all);
            assert_eq!(d.map(|d| d.index), Some(3));
        }
        assert!(
            spread[0] == 0 && spread[3] == 0 && spread[1] > 0 && spread[2] > 0,
            "over the healthy web servers: {spread:?}"
        );
        // A new client avoids it too.
        let ws2 = [Arc::clone(&bs[1])];
        for _ in 0..20 {
            let d = t.route_avoiding(&RequestCookies::default(), IP, &signer, &rot, &ws2);
            assert_eq!(d.map(|d| d.index), Some(2), "ws1 is down, ws2 avoided");
        }
        // A cookie naming a routable server goes there (it may hold the
        // session), unless this request could not connect to it: then the
        // request fails over, and the server it lands on claims the session
        // through the stores (refused while the owner's lease is live).
        let ws2_cookie = signer.value("ws2");
        let c = RequestCookies {
            route: Some(ws2_cookie.as_bytes()),
            session: Some(b"s1"),
        };
        let d = t.route(&c, IP, &signer, &rot);
        assert_eq!(d.map(|d| (d.index, d.moved)), Some((1, None)));
        let d = t.route_avoiding(&c, IP, &signer, &rot, &ws2);
        assert_eq!(
            d.map(|d| (d.index, d.moved, d.set_cookie)),
            Some((3, Some(Moved { from: Some(1) }), true)),
            "failed over to the standby"
        );
    }

    #[test]
    fn a_server_some_request_could_not_reach_is_passed_over_by_every_request_until_checked() {
        let bs = three_and_a_standby_ws1_down();
        let signer = RouteSigner::new(SECRET);
        let rot = AtomicUsize::new(0);
        let ws1 = signer.value("ws1");
        let moved = |sid: &'static [u8]| RequestCookies {
            route: Some(ws1.as_bytes()),
            session: Some(sid),
        };
        // Before: the standby, and the director could send the client on
        // to a web server, so the attempt may connect within the shorter
        // limit.
        let t = Table::build(&bs);
        let d = t
            .route(&moved(b"s1"), IP, &signer, &rot)
            .unwrap_or_else(|| panic!("no route"));
        assert_eq!((d.index, d.quick_connect), (3, true));

        // One request could not connect to the standby: a table built now
        // passes it over for every moved client, with no avoid list.
        assert!(bs[3].mark_unreachable());
        assert!(!bs[3].mark_unreachable(), "marked once");
        let t = Table::build(&bs);
        assert_eq!(
            &*t.failover_among(&[]),
            &[1, 2],
            "adopted by the web servers"
        );
        let without_standby = web_only_ws1_down();
        for sid in [&b"s1"[..], b"s2", b"s3", b"s4"] {
            let c = RequestCookies {
                route: Some(ws1.as_bytes()),
                session: Some(sid),
            };
            let d = t
                .route(&c, IP, &signer, &rot)
                .unwrap_or_else(|| panic!("no route"));
            let expected = without_standby
                .route(&c, IP, &signer, &rot)
                .map(|d| d.index);
            assert_eq!(Some(d.index), expected, "as if no standby were up");
            assert!(d.quick_connect, "the other web server is left");
        }
        // A new client never goes to an unreachable web server while
        // another is left.
        assert!(bs[1].mark_unreachable());
        let t = Table::build(&bs);
        for _ in 0..20 {
            let d = t
                .route(&RequestCookies::default(), IP, &signer, &rot)
                .unwrap_or_else(|| panic!("no route"));
            assert_eq!(d.index, 2, "ws1 down, ws2 unreachable");
            assert!(
                !d.quick_connect,
                "no other server is left: the whole timeout"
            );
        }
        // A cookie naming it still goes there first, with the short limit.
        let ws2_cookie = signer.value("ws2");
        let c = RequestCookies {
            route: Some(ws2_cookie.as_bytes()),
            session: Some(b"s1"),
        };
        let d = t
            .route(&c, IP, &signer, &rot)
            .unwrap_or_else(|| panic!("no route"));
        assert_eq!((d.index, d.moved, d.quick_connect), (1, None, true));
        // Every failover candidate unreachable: as if none were.
        assert!(bs[2].mark_unreachable());
        let t = Table::build(&bs);
        let d = t
            .route(&moved(b"s1"), IP, &signer, &rot)
            .unwrap_or_else(|| panic!("no route"));
        assert_eq!(
            (d.index, d.quick_connect),
            (3, true),
            "tried only because nothing else is left: a quick answer"
        );
        // A good health check clears the mark.
        for b in &bs[1..] {
            assert!(b.clear_unreachable());
            assert!(!b.clear_unreachable());
        }
        let t = Table::build(&bs);
        let d = t
            .route(&moved(b"s1"), IP, &signer, &rot)
            .unwrap_or_else(|| panic!("no route"));
        assert_eq!((d.index, d.quick_connect), (3, true));
    }

    #[test]
    fn a_standby_that_is_not_ready_gives_way_to_ready_web_servers() {
        let bs = backends(&[("ws1", false, 1), ("ws2", false, 1), ("sb", true, 1)]);
        let signer = RouteSigner::new(SECRET);
        let rot = AtomicUsize::new(0);
        down(&bs[0]);
        let ws1 = signer.value("ws1");
        let moved = RequestCookies {
            route: Some(ws1.as_bytes()),
            session: Some(b"s1"),
        };
        let to = |t: &Table| t.route(&moved, IP, &signer, &rot).map(|d| d.index);
        assert_eq!(to(&Table::build(&bs)), Some(2), "the standby, ready");
        // The standby cannot reach a quorum of its stores: ws2 takes the
        // moved clients, and is asked to adopt.
        bs[2].health().ready = false;
        let t = Table::build(&bs);
        assert_eq!(to(&t), Some(1));
        assert_eq!(t.failover_candidates(), &[1]);
        // Nobody ready: the standby after all.
        bs[1].health().ready = false;
        assert_eq!(to(&Table::build(&bs)), Some(2));
    }

    #[test]
    fn standby_takes_moved_clients_and_forged_cookies_are_new_clients() {
        let bs = backends(&[("ws1", false, 1), ("ws2", false, 1), ("sb", true, 1)]);
        let signer = RouteSigner::new(SECRET);
        let rot = AtomicUsize::new(0);
        down(&bs[0]);
        let t = Table::build(&bs);
        let ws1 = signer.value("ws1");
        for n in 0..50 {
            let sid = format!("s{n}");
            let c = RequestCookies {
                route: Some(ws1.as_bytes()),
                session: Some(sid.as_bytes()),
            };
            assert_eq!(t.route(&c, IP, &signer, &rot).map(|d| d.index), Some(2));
        }
        // A cookie of a server no longer configured, validly signed.
        let gone = signer.value("ws9");
        let c = RequestCookies {
            route: Some(gone.as_bytes()),
            session: None,
        };
        let d = t.route(&c, IP, &signer, &rot);
        assert_eq!(
            d.map(|d| (d.index, d.moved)),
            Some((2, Some(Moved { from: None })))
        );
        // Forged: ws2 with a wrong MAC is a new client (never the standby).
        let forged = format!("ws2.{}", "0".repeat(32));
        let c = RequestCookies {
            route: Some(forged.as_bytes()),
            session: None,
        };
        let d = t.route(&c, IP, &signer, &rot);
        assert_eq!(
            d.map(|d| (d.index, d.set_cookie, d.moved)),
            Some((1, true, None))
        );
    }

    #[test]
    fn draining_keeps_its_clients_evacuating_loses_them() {
        let bs = backends(&[("ws1", false, 1), ("ws2", false, 1)]);
        let signer = RouteSigner::new(SECRET);
        let rot = AtomicUsize::new(0);
        let ws1 = signer.value("ws1");
        let c = RequestCookies {
            route: Some(ws1.as_bytes()),
            session: Some(b"x"),
        };
        bs[0].set_admin(AdminState::Draining);
        let t = Table::build(&bs);
        assert_eq!(t.route(&c, IP, &signer, &rot).map(|d| d.index), Some(0));
        for _ in 0..10 {
            let d = t.route(&RequestCookies::default(), IP, &signer, &rot);
            assert_eq!(d.map(|d| d.index), Some(1), "no new clients while draining");
        }
        bs[0].set_admin(AdminState::Evacuating);
        let t = Table::build(&bs);
        assert_eq!(t.route(&c, IP, &signer, &rot).map(|d| d.index), Some(1));
        // Nothing routable at all.
        down(&bs[1]);
        let t = Table::build(&bs);
        assert_eq!(t.route(&c, IP, &signer, &rot), None);
        assert_eq!(t.route(&RequestCookies::default(), IP, &signer, &rot), None);
    }
}
