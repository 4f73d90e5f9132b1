//! Running `ip` and `tc`, and reading their JSON listings.

use std::net::Ipv4Addr;
use std::process::Command;

use super::error::NetError;

/// Runs `program args...`; its standard output if it exits with 0.
pub(super) fn run<S: AsRef<str>>(program: &str, args: &[S]) -> Result<String, NetError> {
    let line = || {
        let mut line = program.to_owned();
        for a in args {
            line.push(' ');
            line.push_str(a.as_ref());
        }
        line
    };
    let out = Command::new(program)
        .args(args.iter().map(AsRef::as_ref))
        .output()
        .map_err(|source| NetError::Spawn {
            command: line(),
            source,
        })?;
    if !out.status.success() {
        return Err(NetError::Failed {
            command: line(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip args...`.
pub(super) fn ip<S: AsRef<str>>(args: &[S]) -> Result<String, NetError> {
    run("ip", args)
}

/// `tc -n netns args...`: tc inside namespace `netns`.
pub(super) fn tc_in(netns: &str, args: &[&str]) -> Result<String, NetError> {
    let mut all = vec!["-n", netns];
    all.extend_from_slice(args);
    run("tc", &all)
}

/// Parses the JSON output of `ip -j ...` (empty output: no entry).
fn json_list(command: &str, out: &str) -> Result<Vec<serde_json::Value>, NetError> {
    if out.trim().is_empty() {
        return Ok(Vec::new());
    }
    match serde_json::from_str(out) {
        Ok(serde_json::Value::Array(items)) => Ok(items),
        Ok(_) => Err(NetError::Output {
            command: command.to_owned(),
            detail: "not a JSON array".to_owned(),
        }),
        Err(e) => Err(NetError::Output {
            command: command.to_owned(),
            detail: e.to_string(),
        }),
    }
}

/// The names of the named network namespaces.
pub(super) fn netns_names() -> Result<Vec<String>, NetError> {
    let out = ip(&["-j", "netns", "list"])?;
    Ok(json_list("ip -j netns list", &out)?
        .iter()
        .filter_map(|ns| ns.get("name")?.as_str().map(str::to_owned))
        .collect())
}

/// The PIDs of the processes in namespace `name`.
pub(super) fn netns_pids(name: &str) -> Result<Vec<u32>, NetError> {
    Ok(ip(&["netns", "pids", name])?
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

/// A link of the root namespace: its name and alias.
pub(super) struct Link {
    /// `ifname`.
    pub(super) name: String,
    /// `ifalias`, if set.
    pub(super) alias: Option<String>,
}

/// The links of the root namespace.
pub(super) fn root_links() -> Result<Vec<Link>, NetError> {
    let out = ip(&["-j", "link", "show"])?;
    Ok(json_list("ip -j link show", &out)?
        .iter()
        .filter_map(|l| {
            Some(Link {
                name: l.get("ifname")?.as_str()?.to_owned(),
                alias: l.get("ifalias").and_then(|a| a.as_str()).map(str::to_owned),
            })
        })
        .collect())
}

/// An IPv4 network in use in the root namespace: an address's subnet
/// (with the link holding it) or a route's destination.
#[derive(Debug)]
pub(super) struct InUse {
    /// The network's first address (any address in it will do).
    pub(super) addr: Ipv4Addr,
    /// Its prefix length.
    pub(super) len: u8,
    /// The link it is on.
    pub(super) dev: String,
}

/// The IPv4 networks of the root namespace's addresses and routes (main
/// table; the default route excluded).
pub(super) fn ipv4_in_use() -> Result<Vec<InUse>, NetError> {
    let mut all = Vec::new();
    let out = ip(&["-j", "-4", "addr", "show"])?;
    for link in json_list("ip -j -4 addr show", &out)? {
        let dev = link.get("ifname").and_then(|n| n.as_str()).unwrap_or("");
        let infos = link.get("addr_info").and_then(|a| a.as_array());
        for info in infos.into_iter().flatten() {
            let addr = info.get("local").and_then(|a| a.as_str());
            let len = info.get("prefixlen").and_then(|l| l.as_u64());
            if let (Some(Ok(addr)), Some(len)) = (addr.map(str::parse), len) {
                all.push(InUse {
                    addr,
                    len: u8::try_from(len.min(32)).unwrap_or(32),
                    dev: dev.to_owned(),
                });
            }
        }
    }
    let out = ip(&["-j", "-4", "route", "show"])?;
    for route in json_list("ip -j -4 route show", &out)? {
        let dev = route.get("dev").and_then(|n| n.as_str()).unwrap_or("");
        let Some(dst) = route.get("dst").and_then(|d| d.as_str()) else {
            continue;
        };
        if dst == "default" {
            continue;
        }
        let (addr, len) = dst.split_once('/').unwrap_or((dst, "32"));
        if let (Ok(addr), Ok(len)) = (addr.parse(), len.parse::<u8>()) {
            all.push(InUse {
                addr,
                len: len.min(32),
                dev: dev.to_owned(),
            });
        }
    }
    Ok(all)
}

/// Whether the networks `a/alen` and `b/blen` share an address.
pub(super) fn overlaps(a: Ipv4Addr, alen: u8, b: Ipv4Addr, blen: u8) -> bool {
    let len = u32::from(alen.min(blen).min(32));
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(a) & mask == u32::from(b) & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_overlap_when_the_shorter_prefix_contains_the_other() {
        let net = |s: &str| s.parse::<Ipv4Addr>().unwrap_or(Ipv4Addr::UNSPECIFIED);
        assert!(overlaps(net("10.213.7.0"), 24, net("10.213.7.254"), 32));
        assert!(overlaps(net("10.0.0.0"), 8, net("10.213.7.0"), 24));
        assert!(!overlaps(net("10.213.7.0"), 24, net("10.213.8.0"), 24));
        assert!(!overlaps(net("192.0.2.0"), 24, net("10.213.7.0"), 24));
        assert!(overlaps(net("0.0.0.0"), 0, net("10.213.7.0"), 24));
    }
}
