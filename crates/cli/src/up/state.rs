//! What `sticky up` tells other commands about the cluster it runs: the
//! state file `<run dir>/up.json` (rewritten whenever a process starts,
//! restarts or stops), the pointer to the latest run dir, a record per
//! running `sticky up` (`running/<pid>`), and the process records its
//! control API answers with. [`find`] picks the cluster `sticky status`,
//! `sticky bench` and `sticky chaos --attach` look at, and knows when
//! several run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Name of the state file in the run dir.
pub(crate) const STATE_FILE: &str = "up.json";

/// A process's life as the supervisor sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ProcState {
    /// Started, not healthy yet.
    Starting,
    /// Started and healthy (or was, last time it was checked).
    Running,
    /// Stopped with SIGSTOP (`pause`); SIGCONT (`resume`) continues it.
    Paused,
    /// Told to stop (SIGTERM) for a `restart`: starts again once it exited
    /// (or was killed after the grace period).
    Stopping,
    /// Exited or killed; `restart` starts it again.
    Exited,
    /// Stopped with the rest of the cluster.
    Stopped,
}

impl ProcState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ProcState::Starting => "starting",
            ProcState::Running => "running",
            ProcState::Paused => "paused",
            ProcState::Stopping => "stopping",
            ProcState::Exited => "exited",
            ProcState::Stopped => "stopped",
        }
    }
}

/// One process of the cluster: what `GET /api/processes` lists and the
/// state file records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProcessInfo {
    /// `director`, `ws1`, `s1`...
    pub(crate) name: String,
    /// `director`, `web`, `standby` or `store`.
    pub(crate) role: String,
    /// Where it serves (the director: its public listener).
    pub(crate) addr: SocketAddr,
    /// Its current (or last) process id.
    pub(crate) pid: u32,
    /// Its life.
    pub(crate) state: ProcState,
    /// How it ended, once exited (`signal: 9 (SIGKILL)`...).
    pub(crate) exit: Option<String>,
    /// Times it was restarted.
    pub(crate) restarts: u32,
    /// Its standard output and error.
    pub(crate) log: PathBuf,
}

/// The state file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct UpState {
    /// Format version.
    pub(crate) version: u32,
    /// The `sticky up` process.
    pub(crate) pid: u32,
    /// False once `sticky up` stopped the cluster.
    pub(crate) running: bool,
    /// The run dir.
    pub(crate) dir: PathBuf,
    /// The cluster file the processes read.
    pub(crate) config: PathBuf,
    /// The shop's URL (the director's public listener).
    pub(crate) shop: String,
    /// The dashboard's URL (the director's admin listener).
    pub(crate) dashboard: String,
    /// The director's admin listener.
    pub(crate) admin: SocketAddr,
    /// The supervisor's control API.
    pub(crate) supervisor: SocketAddr,
    /// Every director (`sticky up --directors N`), the first (whose
    /// `shop`, `dashboard` and `admin` are above) first. Empty in state
    /// files of older versions: then the one above.
    #[serde(default)]
    pub(crate) directors: Vec<DirectorInfo>,
    /// Every process, in the order they start: stores, web servers, the
    /// directors.
    pub(crate) processes: Vec<ProcessInfo>,
}

/// One director in the state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DirectorInfo {
    /// `director`, `director2`...
    pub(crate) name: String,
    /// Its shop URL (public listener).
    pub(crate) shop: String,
    /// Its admin listener (dashboard, API).
    pub(crate) admin: SocketAddr,
}

impl UpState {
    /// Writes `<dir>/up.json` atomically (a temporary file renamed over it).
    pub(crate) fn write(&self) -> anyhow::Result<()> {
        let path = self.dir.join(STATE_FILE);
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        let mut text = serde_json::to_vec_pretty(self).context("cannot encode the state")?;
        text.push(b'\n');
        std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }

    /// Reads the state file of the run dir `dir`.
    pub(crate) fn read(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(STATE_FILE);
        let text = std::fs::read(&path).with_context(|| {
            format!(
                "cannot read {} (is {} the directory of a `sticky up`?)",
                path.display(),
                dir.display()
            )
        })?;
        serde_json::from_slice(&text).with_context(|| format!("{} is unreadable", path.display()))
    }
}

/// Where the path of the latest run dir is kept:
/// `$XDG_RUNTIME_DIR/sticky/last-up` when that variable is set, else
/// `~/.sticky/last-up`.
pub(crate) fn pointer_path() -> Option<PathBuf> {
    if let Some(run) = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(run).join("sticky").join("last-up"));
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|home| PathBuf::from(home).join(".sticky").join("last-up"))
}

/// Points [`pointer_path`] at `dir`. Failing to is not fatal: `sticky
/// status --dir` still works.
pub(crate) fn write_pointer(dir: &Path) {
    let Some(path) = pointer_path() else {
        return;
    };
    let result = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&path, format!("{}\n", dir.display())));
    if let Err(e) = result {
        tracing::warn!(file = %path.display(), error = %e, "cannot record the run dir for `sticky status`");
    }
}

/// The run dir [`pointer_path`] names.
pub(crate) fn read_pointer() -> anyhow::Result<PathBuf> {
    let path = pointer_path().context("neither XDG_RUNTIME_DIR nor HOME is set")?;
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            anyhow::bail!("no `sticky up` recorded in {}", path.display())
        }
        Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
    };
    let dir = text.trim();
    anyhow::ensure!(!dir.is_empty(), "{} is empty", path.display());
    Ok(PathBuf::from(dir))
}

/// Where each running `sticky up` leaves a record (a file named after its
/// PID holding its run dir), next to [`pointer_path`]: `sticky status`,
/// `sticky bench` and `sticky chaos --attach` see from it when several
/// clusters run.
fn running_dir() -> Option<PathBuf> {
    Some(pointer_path()?.parent()?.join("running"))
}

/// Records this process's cluster in [`running_dir`] (and points
/// [`pointer_path`] at it). Failing to is not fatal.
pub(crate) fn register(dir: &Path) {
    write_pointer(dir);
    let Some(running) = running_dir() else {
        return;
    };
    let path = running.join(std::process::id().to_string());
    let result = std::fs::create_dir_all(&running)
        .and_then(|()| std::fs::write(&path, format!("{}\n", dir.display())));
    if let Err(e) = result {
        tracing::warn!(file = %path.display(), error = %e, "cannot record the running cluster");
    }
}

/// Removes this process's record from [`running_dir`].
pub(crate) fn unregister() {
    if let Some(running) = running_dir() {
        let _ = std::fs::remove_file(running.join(std::process::id().to_string()));
    }
}

/// Whether process `pid` exists.
pub(crate) fn pid_alive(pid: u32) -> bool {
    i32::try_from(pid)
        .is_ok_and(|p| nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None).is_ok())
}

/// The clusters running now, per [`running_dir`]: each record whose
/// `sticky up` lives and whose state file says it runs, the latest
/// started first. Records of `sticky up`s that are gone are removed.
pub(crate) fn running() -> Vec<UpState> {
    let Some(running) = running_dir() else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(&running) else {
        return Vec::new();
    };
    let mut found: Vec<(std::time::SystemTime, UpState)> = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let state = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| UpState::read(Path::new(text.trim())).ok())
            .filter(|s| s.pid == pid && s.running && pid_alive(pid));
        match state {
            Some(s) => {
                let when = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::SystemTime::UNIX_EPOCH);
                found.push((when, s));
            }
            None if !pid_alive(pid) => {
                let _ = std::fs::remove_file(&path);
            }
            None => {}
        }
    }
    found.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.pid.cmp(&a.1.pid)));
    found.into_iter().map(|(_, s)| s).collect()
}

/// The `sticky up` a command looks at, and the others running.
#[derive(Debug)]
pub(crate) struct Found {
    /// Its state file.
    pub(crate) state: UpState,
    /// The other clusters running now (empty when `--dir` chose).
    pub(crate) others: Vec<UpState>,
}

impl Found {
    /// What to tell the user when several clusters run: which one this
    /// is, the others, and `pick` (how to pick another).
    pub(crate) fn note(&self, pick: &str) -> Option<String> {
        if self.others.is_empty() {
            return None;
        }
        let mut text = format!(
            "{} clusters are running; this is the latest started: sticky up pid {}, run dir {}.",
            self.others.len() + 1,
            self.state.pid,
            self.state.dir.display()
        );
        for o in &self.others {
            text.push_str(&format!(
                "\nalso running: sticky up pid {}, shop {}, run dir {}",
                o.pid,
                o.shop,
                o.dir.display()
            ));
        }
        text.push('\n');
        text.push_str(pick);
        Some(text)
    }
}

/// The `sticky up` to look at: the one whose run dir is `dir`, else the
/// latest started of those running (the pointer's, if it runs), else the
/// one the pointer names (maybe stopped). `sticky status`, `sticky bench`
/// and `sticky chaos --attach` all find it here; `pick` ends the message
/// when none is found (how to name one: `pass --dir DIR`).
pub(crate) fn find(dir: Option<&Path>, pick: &str) -> anyhow::Result<Found> {
    find_any(dir).map_err(|e| match dir {
        Some(_) => e,
        None => anyhow::anyhow!("{}; start one, or {pick}", crate::values::error_text(&e)),
    })
}

fn find_any(dir: Option<&Path>) -> anyhow::Result<Found> {
    if let Some(dir) = dir {
        return Ok(Found {
            state: UpState::read(dir)?,
            others: Vec::new(),
        });
    }
    let mut running = running();
    let pointer = read_pointer();
    let chosen = match &pointer {
        Ok(p) => running.iter().position(|s| &s.dir == p),
        Err(_) => None,
    }
    .or((!running.is_empty()).then_some(0));
    match chosen {
        Some(i) => {
            let state = running.remove(i);
            Ok(Found {
                state,
                others: running,
            })
        }
        None => Ok(Found {
            state: UpState::read(&pointer?)?,
            others: Vec::new(),
        }),
    }
}
