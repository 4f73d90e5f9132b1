//! Network faults between processes of one machine (needs root): one
//! network namespace per named host, all on one bridge, and links cut,
//! cut one way, slowed or made lossy with `tc`.
//!
//! ```ignore
//! use sticky_netfault::Net;
//!
//! let net = Net::new(&["ws1", "s1", "s2"])?;
//! let mut store = net.host("s1")?.command("sticky");   // runs inside s1
//! store.args(["store", "--listen", &format!("{}:7000", net.addr("s1")?)]);
//! net.cut("ws1", "s1")?;            // both directions
//! net.cut_one_way("s2", "ws1")?;    // packets from s2 to ws1 only
//! net.isolate("s2")?;               // from every host and from this process
//! net.slow("ws1", "s2", 1_000_000, 20)?; // 1 Mbit/s, 20-packet queue
//! net.lossy("ws1", "s2", 16)?;      // and one packet in 16 lost
//! assert!(net.dropped_to("s1")? > 0);
//! net.heal_all()?;
//! // dropping `net` removes every namespace and link it created
//! ```
//!
//! # How
//!
//! A run has a tag: a prefix (default [`Net::DEFAULT_PREFIX`]) and random
//! hex digits. It creates:
//!
//! - a *switch* namespace holding the bridge `br0` and one port per
//!   endpoint (`p0`, `p1`, ...). It has its own (empty) firewall, so a
//!   host firewall that filters bridged packets (`br_netfilter`) does not
//!   reach it;
//! - one namespace per host, with `lo` and `eth0` (the other end of its
//!   port), and the address `10.213.X.i` (host i, from 1) of a /24 picked
//!   for the run, not overlapping any address or route of the machine nor
//!   another run's; and any further address given with [`Net::add_addr`]
//!   (a document's own addresses, which then exist only inside the run's
//!   namespaces);
//! - the *root* endpoint ([`Net::ROOT`]): a link `TAGr` in the root
//!   namespace with the address `10.213.X.254`, port `p0` of the bridge,
//!   so the test process reaches every host and may itself be cut off.
//!
//! Every fault acts on the egress of a bridge port, so in the "network":
//! neither end's kernel sees a local drop. A port has an `htb` root qdisc
//! whose default class passes everything, a class whose queue is a `pfifo`
//! of limit 0 (every packet steered there is dropped), and per slow link
//! a class of the slow rate with a small `pfifo`. A `u32` filter on the
//! source address steers a directed pair's packets: packets from A to B
//! are filtered on B's port (one filter per address of A). A lossy link is such a drop filter that also
//! matches the low bits of the IP identification ([`Net::lossy`]). Only
//! IPv4 is filtered (ARP passes, so a healed link works at once). This
//! kernel has no `netem`, `tbf`, `ingress`, filter actions or `matchall`:
//! no random loss, and no delay beyond queueing.
//!
//! Faults compose: each one is healed on its own (a link cut by
//! [`Net::cut`] and by [`Net::isolate`] stays cut until both are healed),
//! and asking twice for the same fault changes nothing.
//!
//! # Cleanup
//!
//! Dropping a [`Net`] (also while unwinding from a panic) kills what still
//! runs in its namespaces and deletes them, which deletes the bridge and
//! every veth. Names in shared places carry the creator's PID and start
//! time (`owner.rs`); [`Net::with_prefix`] first removes leftovers of
//! runs with the same prefix whose creator is gone (a crashed or killed
//! test), and [`Net::remove_leftovers`] does only that.
//!
//! # Layout
//!
//! - `cmd`: running `ip` and `tc`, reading their JSON listings.
//! - `error`: [`NetError`].
//! - `faults`: which links are faulted, what is asked for and what is
//!   installed ([`Slow`]); no command, tested without root.
//! - `owner`: the creator's PID and start time in every name.
//! - `random`: the run tag's random digits.
//!
//! # Users
//!
//! `sticky up --netns` runs every process of a cluster in its own host of
//! a [`Net`] and serves the faults on its control API; `sticky chaos
//! --net` injects them (docs/reliability.md, "Network faults"). The tests
//! reach it through `sticky-test-support`, which re-exports it.

mod cmd;
mod error;
mod faults;
mod owner;
pub mod random;

use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::sync::{Mutex, PoisonError};

pub use error::NetError;
pub use faults::Slow;
use faults::{Faults, Pair, TcOp};
use owner::Owner;

/// One host: a network namespace with one address.
#[derive(Debug)]
pub struct Host {
    name: String,
    netns: String,
    addr: Ipv4Addr,
}

impl Host {
    /// The name given to [`Net::new`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its address (on `eth0`, in the run's /24).
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// Its network namespace's name (for `ip netns exec` or `ip -n`).
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// A command running `program` inside this host's namespace: `ip netns
    /// exec NETNS program`. `ip` executes the program in its own process,
    /// so the child's PID is the program's (signals reach it).
    pub fn command(&self, program: impl AsRef<OsStr>) -> std::process::Command {
        let mut c = std::process::Command::new("ip");
        c.args(["netns", "exec", &self.netns]).arg(program);
        c
    }

    /// [`Host::command`] for tokio.
    pub fn tokio_command(&self, program: impl AsRef<OsStr>) -> tokio::process::Command {
        tokio::process::Command::from(self.command(program))
    }
}

/// One endpoint of the bridge: the root namespace (index 0) or a host.
#[derive(Debug)]
struct Endpoint {
    name: String,
    addr: Ipv4Addr,
    /// Further addresses of a host ([`Net::add_addr`]): faults match
    /// them too.
    extra: Vec<Ipv4Addr>,
    /// Its port on the bridge, in the switch namespace.
    port: String,
}

/// A test network: hosts in their own namespaces on one bridge, with the
/// root namespace on it too, and the faults between them. Removed on drop.
/// How it works: the crate documentation and "Network
/// faults" in `docs/reliability.md`.
#[derive(Debug)]
pub struct Net {
    tag: String,
    owner: Owner,
    switch: String,
    root_link: String,
    subnet: [u8; 3],
    hosts: Vec<Host>,
    /// Index 0: the root namespace; index i: `hosts[i - 1]`.
    endpoints: Vec<Endpoint>,
    faults: Mutex<Faults>,
}

/// The second octet of every run's /24.
const SUBNET_B: u8 = 213;
/// Attempts to find a free /24.
const SUBNET_TRIES: u32 = 32;
/// The last octet of the root namespace's address.
const ROOT_OCTET: u8 = 254;
/// At most this many hosts (addresses .1 to .200).
const MAX_HOSTS: usize = 200;
/// Random hex digits after the prefix.
const TAG_RANDOM: usize = 6;
/// The longest prefix: TAG + `r` must fit an interface name (15).
const MAX_PREFIX: usize = 15 - TAG_RANDOM - 1;
/// The longest host name.
const MAX_HOST_NAME: usize = 32;

/// The u32 filter priority of the drop filter for packets from endpoint i.
const DROP_PRIO: usize = 10;
/// The u32 filter priority of the loss filter for packets from endpoint
/// i (after the drop filters, before the slow ones).
const LOSS_PRIO: usize = 500;
/// The u32 filter priority of the slow filter for packets from endpoint i
/// (after every drop filter: a cut beats a slow link).
const SLOW_PRIO: usize = 1000;
/// The class minor (and qdisc major) of the slow link from endpoint i.
const SLOW_CLASS: usize = 0x100;

impl Net {
    /// The name of the root namespace's endpoint (the test process), for
    /// the fault methods. No host may have it.
    pub const ROOT: &'static str = "root";
    /// The prefix of [`Net::new`]'s names.
    pub const DEFAULT_PREFIX: &'static str = "stk";

    /// [`Net::with_prefix`] with [`Net::DEFAULT_PREFIX`].
    pub fn new(hosts: &[&str]) -> Result<Net, NetError> {
        Net::with_prefix(Net::DEFAULT_PREFIX, hosts)
    }

    /// Creates the network: the bridge, one namespace per host in `hosts`
    /// (names of lowercase letters, digits, `-` and `_`, not starting with
    /// `_`, at most 32 characters, not [`Net::ROOT`]), the root endpoint.
    /// First removes the leftovers of dead runs with `prefix` (lowercase
    /// letters and digits, at most 8 characters). On an error, what was
    /// created is removed.
    pub fn with_prefix(prefix: &str, hosts: &[&str]) -> Result<Net, NetError> {
        check_prefix(prefix)?;
        check_hosts(hosts)?;
        let owner = Owner::current().ok_or(NetError::NoOwner)?;
        Net::remove_leftovers(prefix)?;
        let tag = format!("{prefix}{}", random::hex(TAG_RANDOM));
        let mut net = Net {
            switch: owner.netns_name(&tag, "_switch"),
            root_link: format!("{tag}r"),
            tag,
            owner,
            subnet: [10, SUBNET_B, 0],
            hosts: Vec::new(),
            endpoints: Vec::new(),
            faults: Mutex::new(Faults::default()),
        };
        // On an error `net` is dropped here, which removes what exists.
        net.build(hosts)?;
        Ok(net)
    }

    fn build(&mut self, hosts: &[&str]) -> Result<(), NetError> {
        let sw = self.switch.clone();
        cmd::ip(&["netns", "add", &sw])?;
        cmd::ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        cmd::ip(&["-n", &sw, "link", "set", "br0", "up"])?;

        // The root endpoint.
        let root = self.root_link.clone();
        cmd::ip(&[
            "link", "add", &root, "type", "veth", "peer", "name", "p0", "netns", &sw,
        ])?;
        cmd::ip(&["link", "set", &root, "alias", &self.owner.alias(&self.tag)])?;
        self.attach_port("p0")?;
        cmd::ip(&["link", "set", &root, "up"])?;
        let third = self.claim_subnet()?;
        self.subnet = [10, SUBNET_B, third];
        self.endpoints.push(Endpoint {
            name: Net::ROOT.to_owned(),
            addr: Ipv4Addr::new(10, SUBNET_B, third, ROOT_OCTET),
            extra: Vec::new(),
            port: "p0".to_owned(),
        });

        for (i, name) in hosts.iter().enumerate() {
            let octet = u8::try_from(i + 1).map_err(|_| NetError::InvalidName {
                name: (*name).to_owned(),
                why: "too many hosts",
            })?;
            let addr = Ipv4Addr::new(10, SUBNET_B, third, octet);
            let ns = self.owner.netns_name(&self.tag, name);
            let port = format!("p{}", i + 1);
            cmd::ip(&["netns", "add", &ns])?;
            cmd::ip(&[
                "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ])?;
            self.attach_port(&port)?;
            cmd::ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            cmd::ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ])?;
            cmd::ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            self.hosts.push(Host {
                name: (*name).to_owned(),
                netns: ns,
                addr,
            });
            self.endpoints.push(Endpoint {
                name: (*name).to_owned(),
                addr,
                extra: Vec::new(),
                port,
            });
        }
        Ok(())
    }

    /// Attaches `port` to the bridge, with the qdisc every fault uses: an
    /// `htb` whose default class 1:1 passes everything and whose class
    /// 1:2 drops everything (a `pfifo` of limit 0).
    fn attach_port(&self, port: &str) -> Result<(), NetError> {
        let sw = &self.switch;
        cmd::ip(&["-n", sw, "link", "set", port, "master", "br0"])?;
        let dev = ["dev", port];
        let tc = |args: &[&str]| -> Result<String, NetError> {
            let mut all: Vec<&str> = vec![args[0], args[1]];
            all.extend_from_slice(&dev);
            all.extend_from_slice(&args[2..]);
            cmd::tc_in(sw, &all)
        };
        tc(&[
            "qdisc", "add", "root", "handle", "1:", "htb", "default", "1",
        ])?;
        for class in ["1:1", "1:2"] {
            tc(&[
                "class", "add", "parent", "1:", "classid", class, "htb", "rate", "10gbit",
                "quantum", "60000",
            ])?;
        }
        tc(&[
            "qdisc", "add", "parent", "1:2", "handle", "20:", "pfifo", "limit", "0",
        ])?;
        cmd::ip(&["-n", sw, "link", "set", port, "up"])?;
        Ok(())
    }

    /// Picks a /24 of 10.213.0.0/16 that no address or route of the root
    /// namespace overlaps and gives the root link its address there.
    /// Returns its third octet. Two runs starting at once may pick the same
    /// one: each checks again after taking it, and retries if another
    /// link has an address in it.
    fn claim_subnet(&self) -> Result<u8, NetError> {
        let root = &self.root_link;
        for _ in 0..SUBNET_TRIES {
            let third = u8::try_from(random::u64() % 256).unwrap_or(0);
            let net = Ipv4Addr::new(10, SUBNET_B, third, 0);
            let busy = |used: &[cmd::InUse]| {
                used.iter()
                    .any(|u| &u.dev != root && cmd::overlaps(u.addr, u.len, net, 24))
            };
            if busy(&cmd::ipv4_in_use()?) {
                continue;
            }
            let cidr = format!("{}/24", Ipv4Addr::new(10, SUBNET_B, third, ROOT_OCTET));
            cmd::ip(&["addr", "add", &cidr, "dev", root])?;
            if !busy(&cmd::ipv4_in_use()?) {
                return Ok(third);
            }
            cmd::ip(&["addr", "del", &cidr, "dev", root])?;
        }
        Err(NetError::NoSubnet(SUBNET_TRIES))
    }

    /// Removes what runs with `prefix` left behind when their creator is
    /// gone: deletes their root-namespace link, kills the processes in
    /// their namespaces, deletes the namespaces (and so their links).
    /// Returns how many namespaces and links it deleted.
    pub fn remove_leftovers(prefix: &str) -> Result<usize, NetError> {
        check_prefix(prefix)?;
        let mut removed = 0;
        for link in cmd::root_links()? {
            let Some((tag, owner)) = link.alias.as_deref().and_then(owner::parse_alias) else {
                continue;
            };
            if link.name.starts_with(prefix) && tag.starts_with(prefix) && !owner.alive() {
                eprintln!(
                    "netns: removing link {} left by dead process {}",
                    link.name, owner.pid
                );
                delete_link(&link.name)?;
                removed += 1;
            }
        }
        for ns in cmd::netns_names()? {
            let Some((tag, owner)) = owner::parse_netns_name(&ns) else {
                continue;
            };
            if tag.starts_with(prefix) && !owner.alive() {
                eprintln!(
                    "netns: removing namespace {ns} left by dead process {}",
                    owner.pid
                );
                remove_netns(&ns)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The run's tag: the prefix of every name it created.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The run's network, `10.213.X.0` (a /24).
    pub fn subnet(&self) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, 0)
    }

    /// The root namespace's address on the bridge: where the hosts reach
    /// the test process.
    pub fn root_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.subnet[0], self.subnet[1], self.subnet[2], ROOT_OCTET)
    }

    /// The host named `name`.
    pub fn host(&self, name: &str) -> Result<&Host, NetError> {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .ok_or_else(|| NetError::UnknownHost(name.to_owned()))
    }

    /// Every host, in the order given.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The address of endpoint `name` (a host or [`Net::ROOT`]).
    pub fn addr(&self, name: &str) -> Result<Ipv4Addr, NetError> {
        Ok(self.endpoints[self.index(name)?].addr)
    }

    /// Gives host `name` a further address, `addr/prefix_len` on its
    /// `eth0`: to run processes at the addresses a document names (a
    /// deployment guide's `10.0.0.11`), on the same bridge. Those
    /// addresses exist only inside the run's namespaces: never in the root
    /// namespace, which keeps the run's one address (so a host reaches
    /// the root endpoint only from its own `10.213.X.i`). Every fault
    /// matches a host's further addresses as well, so it is refused once
    /// a fault is installed (add them first).
    pub fn add_addr(&mut self, name: &str, addr: Ipv4Addr, prefix_len: u8) -> Result<(), NetError> {
        let bad = |why| {
            Err(NetError::InvalidAddr {
                addr: format!("{addr}/{prefix_len}"),
                why,
            })
        };
        let e = self.index(name)?;
        if e == 0 {
            return bad("the root namespace keeps the run's one address");
        }
        if prefix_len > 32 {
            return bad("a prefix length is 0 to 32");
        }
        if !self.faults().is_clear() {
            return bad("addresses are added before the first fault");
        }
        if self
            .endpoints
            .iter()
            .any(|p| p.addr == addr || p.extra.contains(&addr))
        {
            return bad("an endpoint of this network has it already");
        }
        let ns = self.hosts[e - 1].netns.clone();
        cmd::ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/{prefix_len}"),
            "dev",
            "eth0",
        ])?;
        self.endpoints[e].extra.push(addr);
        Ok(())
    }

    fn index(&self, name: &str) -> Result<usize, NetError> {
        self.endpoints
            .iter()
            .position(|e| e.name == name)
            .ok_or_else(|| NetError::UnknownHost(name.to_owned()))
    }

    fn pair(&self, from: &str, to: &str) -> Result<Pair, NetError> {
        let pair = (self.index(from)?, self.index(to)?);
        if pair.0 == pair.1 {
            return Err(NetError::SameEndpoint(from.to_owned()));
        }
        Ok(pair)
    }

    /// Cuts the link between `a` and `b`, both directions: every IPv4
    /// packet between them is dropped. Either may be [`Net::ROOT`].
    pub fn cut(&self, a: &str, b: &str) -> Result<(), NetError> {
        let (x, y) = self.pair(a, b)?;
        self.change(|f| {
            f.cut((x, y));
            f.cut((y, x));
        })
    }

    /// Drops the packets from `from` to `to` only. A TCP connection needs
    /// both directions, so it fails either way: `from`'s SYN is lost, or
    /// `to`'s SYN arrives and its SYN-ACK is lost. Datagrams from `to`
    /// arrive.
    pub fn cut_one_way(&self, from: &str, to: &str) -> Result<(), NetError> {
        let pair = self.pair(from, to)?;
        self.change(|f| f.cut(pair))
    }

    /// Cuts `a` off from every other host and from the root namespace,
    /// both directions.
    pub fn isolate(&self, a: &str) -> Result<(), NetError> {
        let e = self.index(a)?;
        self.change(|f| f.isolate(e))
    }

    /// Slows the link between `a` and `b`, both directions: each way, at
    /// most `rate_bits` bits per second pass and a queue of `queue`
    /// packets holds the rest; what overflows it is dropped (the only loss
    /// this kernel can make without netem). Replaces an earlier slow link
    /// between them; a cut takes precedence.
    pub fn slow(&self, a: &str, b: &str, rate_bits: u64, queue: u32) -> Result<(), NetError> {
        let (x, y) = self.pair(a, b)?;
        let slow = check_slow(rate_bits, queue)?;
        self.change(|f| {
            f.slow((x, y), slow);
            f.slow((y, x), slow);
        })
    }

    /// [`Net::slow`] for the packets from `from` to `to` only.
    pub fn slow_one_way(
        &self,
        from: &str,
        to: &str,
        rate_bits: u64,
        queue: u32,
    ) -> Result<(), NetError> {
        let pair = self.pair(from, to)?;
        let slow = check_slow(rate_bits, queue)?;
        self.change(|f| f.slow(pair, slow))
    }

    /// Makes the link between `a` and `b` lose one IPv4 packet in
    /// `one_in` (a power of two from 2 to 32768), each direction. This
    /// kernel has no random loss (`netem`, `gact`): the packets lost are
    /// those whose IP identification ends in as many 1 bits. Linux numbers
    /// the packets of each TCP connection from a random start, so every
    /// connection loses one in `one_in` of its segments, retransmissions
    /// included (each has a new number), at a place that differs from one
    /// connection to the next. A GSO batch is one packet here. Packets
    /// with the number 0 (SYN-ACKs, unconnected UDP) are never lost.
    /// Replaces an earlier loss between them; a cut takes precedence.
    pub fn lossy(&self, a: &str, b: &str, one_in: u32) -> Result<(), NetError> {
        let (x, y) = self.pair(a, b)?;
        let one_in = check_loss(one_in)?;
        self.change(|f| {
            f.lose((x, y), one_in);
            f.lose((y, x), one_in);
        })
    }

    /// [`Net::lossy`] for the packets from `from` to `to` only.
    pub fn lossy_one_way(&self, from: &str, to: &str, one_in: u32) -> Result<(), NetError> {
        let pair = self.pair(from, to)?;
        let one_in = check_loss(one_in)?;
        self.change(|f| f.lose(pair, one_in))
    }

    /// How many packets on their way to endpoint `to` were dropped so
    /// far (by cuts, isolations, losses and full slow-link queues): the
    /// evidence that a fault bit.
    pub fn dropped_to(&self, to: &str) -> Result<u64, NetError> {
        let port = &self.endpoints[self.index(to)?].port;
        let command = format!("tc -s -j qdisc show dev {port}");
        let out = cmd::tc_in(&self.switch, &["-s", "-j", "qdisc", "show", "dev", port])?;
        let qdiscs: Vec<serde_json::Value> =
            serde_json::from_str(&out).map_err(|e| NetError::Output {
                command,
                detail: e.to_string(),
            })?;
        // The leaves: the root htb counts its children's drops again.
        Ok(qdiscs
            .iter()
            .filter(|q| q.get("kind").and_then(|k| k.as_str()) == Some("pfifo"))
            .filter_map(|q| q.get("drops").and_then(serde_json::Value::as_u64))
            .sum())
    }

    /// Heals the cuts, slow and lossy links between `a` and `b`, both
    /// directions (not an isolation of either).
    pub fn heal(&self, a: &str, b: &str) -> Result<(), NetError> {
        let (x, y) = self.pair(a, b)?;
        self.change(|f| {
            f.heal_pair((x, y));
            f.heal_pair((y, x));
        })
    }

    /// Heals the cut, slow and lossy link from `from` to `to` only.
    pub fn heal_one_way(&self, from: &str, to: &str) -> Result<(), NetError> {
        let pair = self.pair(from, to)?;
        self.change(|f| f.heal_pair(pair))
    }

    /// Ends the isolation of `a` (its other faults stay).
    pub fn heal_isolation(&self, a: &str) -> Result<(), NetError> {
        let e = self.index(a)?;
        self.change(|f| f.heal_isolation(e))
    }

    /// Heals every fault.
    pub fn heal_all(&self) -> Result<(), NetError> {
        self.change(Faults::heal_all)
    }

    /// Whether packets from `from` to `to` are dropped now (by a cut or an
    /// isolation).
    pub fn blocked(&self, from: &str, to: &str) -> Result<bool, NetError> {
        let pair = self.pair(from, to)?;
        Ok(self.faults().dropped(pair))
    }

    fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        // A panic while holding the lock leaves a consistent state: the
        // installed layer only records operations that succeeded.
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes what is asked for, then brings the kernel there. On an
    /// error the request stays, and the next change retries what failed.
    fn change(&self, f: impl FnOnce(&mut Faults)) -> Result<(), NetError> {
        let mut faults = self.faults();
        f(&mut faults);
        for op in faults.reconcile(self.endpoints.len()) {
            self.apply(op)?;
            faults.applied(op);
        }
        Ok(())
    }

    /// Runs the `tc` commands of one operation, on the port of the
    /// packets' destination, matching their source.
    fn apply(&self, op: TcOp) -> Result<(), NetError> {
        let (from, to) = op.pair();
        let port = self.endpoints[to].port.as_str();
        // One filter per address of the source, at the same priority (a
        // deletion by priority removes them all).
        let sources: Vec<String> = std::iter::once(self.endpoints[from].addr)
            .chain(self.endpoints[from].extra.iter().copied())
            .map(|a| format!("{a}/32"))
            .collect();
        let sw = self.switch.as_str();
        let drop_prio = (DROP_PRIO + from).to_string();
        let slow_prio = (SLOW_PRIO + from).to_string();
        let loss_prio = (LOSS_PRIO + from).to_string();
        let slow_class = format!("1:{:x}", SLOW_CLASS + from);
        let slow_qdisc = format!("{:x}:", SLOW_CLASS + from);
        let filter = |prio: &str, flow: &str| -> Result<String, NetError> {
            let mut out = String::new();
            for src in &sources {
                out = cmd::tc_in(
                    sw,
                    &[
                        "filter", "add", "dev", port, "parent", "1:", "protocol", "ip", "prio",
                        prio, "u32", "match", "ip", "src", src, "flowid", flow,
                    ],
                )?;
            }
            Ok(out)
        };
        let unfilter = |prio: &str| {
            cmd::tc_in(
                sw,
                &[
                    "filter", "del", "dev", port, "parent", "1:", "protocol", "ip", "prio", prio,
                ],
            )
        };
        match op {
            TcOp::AddDrop(_) => filter(&drop_prio, "1:2")?,
            TcOp::DelDrop(_) => unfilter(&drop_prio)?,
            TcOp::AddSlow(_, slow) => {
                let rate = format!("{}bit", slow.rate_bits);
                cmd::tc_in(
                    sw,
                    &[
                        "class",
                        "add",
                        "dev",
                        port,
                        "parent",
                        "1:",
                        "classid",
                        &slow_class,
                        "htb",
                        "rate",
                        &rate,
                        "ceil",
                        &rate,
                        "quantum",
                        "1514",
                    ],
                )?;
                cmd::tc_in(
                    sw,
                    &[
                        "qdisc",
                        "add",
                        "dev",
                        port,
                        "parent",
                        &slow_class,
                        "handle",
                        &slow_qdisc,
                        "pfifo",
                        "limit",
                        &slow.queue.to_string(),
                    ],
                )?;
                filter(&slow_prio, &slow_class)?
            }
            TcOp::AddLoss(_, one_in) => {
                // The IP identification is the 16 bits at offset 4.
                let ones = format!("0x{:x}", one_in - 1);
                for src in &sources {
                    cmd::tc_in(
                        sw,
                        &[
                            "filter", "add", "dev", port, "parent", "1:", "protocol", "ip", "prio",
                            &loss_prio, "u32", "match", "ip", "src", src, "match", "u16", &ones,
                            &ones, "at", "4", "flowid", "1:2",
                        ],
                    )?;
                }
                String::new()
            }
            TcOp::DelLoss(_) => unfilter(&loss_prio)?,
            TcOp::DelSlow(_) => {
                unfilter(&slow_prio)?;
                cmd::tc_in(sw, &["class", "del", "dev", port, "classid", &slow_class])?
            }
        };
        Ok(())
    }

    /// Removes everything of this run: its root link (and so, at once,
    /// the other end, port `p0`), the processes left in its namespaces,
    /// the namespaces (the kernel then destroys their links, and so every
    /// veth, in the background). Carries on past errors; returns the
    /// first.
    fn remove(&self) -> Result<(), NetError> {
        let mut first = None;
        let mut note = |r: Result<(), NetError>| {
            if let Err(e) = r {
                first.get_or_insert(e);
            }
        };
        note(delete_link(&self.root_link));
        match cmd::netns_names() {
            Ok(names) => {
                for ns in names.iter().filter(|n| {
                    owner::parse_netns_name(n)
                        .is_some_and(|(tag, o)| tag == self.tag && o == self.owner)
                }) {
                    note(remove_netns(ns));
                }
            }
            Err(e) => note(Err(e)),
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            eprintln!("netns: cleaning up run {} failed: {e}", self.tag);
        }
    }
}

/// Kills what runs in namespace `ns` and deletes it. Gone already (another
/// run removing the same leftovers): not an error.
fn remove_netns(ns: &str) -> Result<(), NetError> {
    let result = kill_and_delete_netns(ns);
    match result {
        Err(_) if !cmd::netns_names()?.iter().any(|n| n == ns) => Ok(()),
        other => other,
    }
}

fn kill_and_delete_netns(ns: &str) -> Result<(), NetError> {
    // Processes keep a namespace (and its links) alive after its name is
    // gone: kill them first.
    for pid in cmd::netns_pids(ns)? {
        if pid != std::process::id() {
            // It may have exited meanwhile: not an error.
            let _ = cmd::run("kill", &["-KILL", &pid.to_string()]);
        }
    }
    cmd::ip(&["netns", "delete", ns]).map(drop)
}

/// Deletes a link of the root namespace (a veth: its peer too), if it
/// exists.
fn delete_link(name: &str) -> Result<(), NetError> {
    match cmd::ip(&["link", "delete", name]) {
        Err(NetError::Failed { stderr, .. }) if stderr.contains("Cannot find device") => Ok(()),
        other => other.map(drop),
    }
}

fn check_prefix(prefix: &str) -> Result<(), NetError> {
    let bad = |why| {
        Err(NetError::InvalidName {
            name: prefix.to_owned(),
            why,
        })
    };
    if prefix.is_empty() || prefix.len() > MAX_PREFIX {
        return bad("a prefix has 1 to 8 characters");
    }
    if !prefix
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return bad("a prefix has only lowercase letters and digits");
    }
    Ok(())
}

fn check_hosts(hosts: &[&str]) -> Result<(), NetError> {
    if hosts.len() > MAX_HOSTS {
        return Err(NetError::InvalidName {
            name: format!("{} hosts", hosts.len()),
            why: "at most 200 hosts",
        });
    }
    for (i, &name) in hosts.iter().enumerate() {
        let bad = |why| {
            Err(NetError::InvalidName {
                name: name.to_owned(),
                why,
            })
        };
        if name.is_empty() || name.len() > MAX_HOST_NAME {
            return bad("a host name has 1 to 32 characters");
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            || name.starts_with('_')
        {
            return bad("a host name has lowercase letters, digits, '-' and '_', not first");
        }
        if name == Net::ROOT {
            return bad("the root namespace's endpoint has this name");
        }
        if hosts[..i].contains(&name) {
            return bad("two hosts have this name");
        }
    }
    Ok(())
}

fn check_slow(rate_bits: u64, queue: u32) -> Result<Slow, NetError> {
    if !(8_000..=10_000_000_000).contains(&rate_bits) {
        return Err(NetError::InvalidSlow("the rate is 8 kbit/s to 10 Gbit/s"));
    }
    if !(1..=100_000).contains(&queue) {
        return Err(NetError::InvalidSlow(
            "the queue holds 1 to 100000 packets (0 would be a cut)",
        ));
    }
    Ok(Slow { rate_bits, queue })
}

fn check_loss(one_in: u32) -> Result<u16, NetError> {
    match u16::try_from(one_in) {
        Ok(n) if n >= 2 && n.is_power_of_two() => Ok(n),
        _ => Err(NetError::InvalidLoss(one_in)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loss_is_one_packet_in_a_power_of_two() {
        assert_eq!(check_loss(16).ok(), Some(16));
        assert_eq!(check_loss(32768).ok(), Some(32768));
        assert!(check_loss(1).is_err());
        assert!(check_loss(12).is_err());
        assert!(check_loss(65536).is_err());
    }

    #[test]
    fn names_that_would_break_a_netns_or_interface_name_are_refused() {
        assert!(check_prefix("stk").is_ok());
        assert!(check_prefix("abcdefgh").is_ok());
        assert!(check_prefix("abcdefghi").is_err(), "TAG + r > 15 chars");
        assert!(check_prefix("").is_err());
        assert!(check_prefix("St.k").is_err());
        assert!(check_hosts(&["ws1", "s-1", "s_2"]).is_ok());
        assert!(check_hosts(&["ws1", "ws1"]).is_err());
        assert!(check_hosts(&["root"]).is_err());
        assert!(check_hosts(&["_switch"]).is_err());
        assert!(check_hosts(&["a.b"]).is_err());
        assert!(check_hosts(&["a/b"]).is_err());
        assert!(check_hosts(&[""]).is_err());
    }

    #[test]
    fn a_slow_link_is_neither_a_cut_nor_unbounded() {
        assert!(check_slow(1_000_000, 10).is_ok());
        assert!(check_slow(1_000_000, 0).is_err());
        assert!(check_slow(100, 10).is_err());
    }
}
