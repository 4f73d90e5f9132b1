//! Who created a namespace or link: every name the harness creates in a
//! shared place carries its creator's PID and start time, so a later run
//! can tell the leftovers of a crashed run (creator gone) from those of a
//! run still going (creator alive), even if the PID was reused since.
//!
//! - a namespace is named `TAG.PID.START.LABEL` (LABEL: a host's name, or
//!   `_switch` for the namespace holding the bridge);
//! - the one link in the root namespace is named `TAG` + `r` and has the
//!   alias `sticky-netns TAG PID START`.
//!
//! TAG is the run's prefix followed by random hex digits.

/// The creator of a run: a process, told apart from a later one with the
/// same PID by its start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Owner {
    /// Its PID.
    pub(super) pid: u32,
    /// Its start time, in clock ticks after boot (`/proc/PID/stat`, field 22).
    pub(super) start: u64,
}

/// The first word of the alias of the harness's links.
const ALIAS_MARK: &str = "sticky-netns";

impl Owner {
    /// This process.
    pub(super) fn current() -> Option<Owner> {
        Owner::of(std::process::id())
    }

    /// Process `pid`, if it runs (a zombie does not).
    pub(super) fn of(pid: u32) -> Option<Owner> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (state, start) = parse_stat(&stat)?;
        (state != "Z" && state != "X").then_some(Owner { pid, start })
    }

    /// Whether the process still runs.
    pub(super) fn alive(&self) -> bool {
        Owner::of(self.pid).is_some_and(|now| now.start == self.start)
    }

    /// The name of a namespace of run `tag` with `label`.
    pub(super) fn netns_name(&self, tag: &str, label: &str) -> String {
        format!("{tag}.{}.{}.{label}", self.pid, self.start)
    }

    /// The alias of a root-namespace link of run `tag`.
    pub(super) fn alias(&self, tag: &str) -> String {
        format!("{ALIAS_MARK} {tag} {} {}", self.pid, self.start)
    }
}

/// The state and start time in the text of `/proc/PID/stat`.
fn parse_stat(stat: &str) -> Option<(&str, u64)> {
    // The command name, in parentheses, may hold spaces: count fields
    // after its closing parenthesis. The state is field 3, the start time
    // field 22.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// The run tag and owner of a namespace named by [`Owner::netns_name`].
pub(super) fn parse_netns_name(name: &str) -> Option<(&str, Owner)> {
    let mut parts = name.splitn(4, '.');
    let tag = parts.next()?;
    let pid = parts.next()?.parse().ok()?;
    let start = parts.next()?.parse().ok()?;
    parts.next()?;
    Some((tag, Owner { pid, start }))
}

/// The run tag and owner in an alias made by [`Owner::alias`].
pub(super) fn parse_alias(alias: &str) -> Option<(&str, Owner)> {
    let mut words = alias.split_whitespace();
    if words.next()? != ALIAS_MARK {
        return None;
    }
    let tag = words.next()?;
    let pid = words.next()?.parse().ok()?;
    let start = words.next()?.parse().ok()?;
    words
        .next()
        .is_none()
        .then_some((tag, Owner { pid, start }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn this_process_is_alive_and_a_reused_pid_is_not_its_owner() {
        let me = Owner::current().expect("read /proc/self/stat");
        assert_eq!(me.pid, std::process::id());
        assert!(me.alive());
        let other = Owner {
            start: me.start + 1,
            ..me
        };
        assert!(!other.alive(), "same PID, other start time: not the owner");
    }

    #[test]
    fn a_process_that_exited_is_not_alive() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let owner = Owner::of(pid);
        child.wait().unwrap();
        // Either it had exited (a zombie) before we looked, or it has now.
        assert!(owner.is_none_or(|o| !o.alive()));
    }

    #[test]
    fn the_start_time_is_found_after_a_command_with_spaces_and_parentheses() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(parse_stat(stat), Some(("S", 98765)));
    }

    #[test]
    fn names_and_aliases_carry_the_owner_and_parse_back() {
        let o = Owner {
            pid: 4321,
            start: 99,
        };
        let ns = o.netns_name("stk0a1b2c", "web-1");
        assert_eq!(ns, "stk0a1b2c.4321.99.web-1");
        assert_eq!(parse_netns_name(&ns), Some(("stk0a1b2c", o)));
        assert_eq!(parse_alias(&o.alias("stk0a1b2c")), Some(("stk0a1b2c", o)));
        assert_eq!(parse_netns_name("stk-someone-elses"), None);
        assert_eq!(parse_netns_name("stk.1.2"), None);
        assert_eq!(parse_alias("sticky-netns stk 1"), None);
        assert_eq!(parse_alias("sticky-netns stk 1 2 extra"), None);
        assert_eq!(parse_alias("something else"), None);
    }
}
