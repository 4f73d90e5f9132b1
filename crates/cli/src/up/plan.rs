//! The cluster `sticky up` starts: names, roles, ports and the cluster file.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::{ModeArg, UpArgs};

/// What a process is in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Director,
    Web,
    Standby,
    Store,
}

impl Role {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::Director => "director",
            Role::Web => "web",
            Role::Standby => "standby",
            Role::Store => "store",
        }
    }
}

/// One process of the cluster.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub(crate) name: String,
    pub(crate) role: Role,
    /// Where it serves (the director: its public listener).
    pub(crate) addr: SocketAddr,
}

/// The whole cluster.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) members: Vec<Member>,
    pub(crate) admin: SocketAddr,
    /// The supervisor's control API (kill, pause, resume, restart).
    pub(crate) supervisor: SocketAddr,
    pub(crate) secret: String,
    replicas: u16,
    mode: &'static str,
}

fn local(port: u32) -> anyhow::Result<SocketAddr> {
    let port = u16::try_from(port).context("--port is too high for the ports the cluster needs")?;
    Ok(SocketAddr::from(([127, 0, 0, 1], port)))
}

impl Plan {
    pub(crate) fn new(a: &UpArgs) -> anyhow::Result<Self> {
        let base = u32::from(a.port);
        let mut members = vec![Member {
            name: "director".into(),
            role: Role::Director,
            addr: local(base)?,
        }];
        for i in 1..=u32::from(a.web + a.standby) {
            members.push(Member {
                name: format!("ws{i}"),
                role: if i > u32::from(a.web) {
                    Role::Standby
                } else {
                    Role::Web
                },
                addr: local(base + 10 + i)?,
            });
        }
        for i in 1..=u32::from(a.stores) {
            members.push(Member {
                name: format!("s{i}"),
                role: Role::Store,
                addr: local(base + 40 + i)?,
            });
        }
        if a.replicas > a.stores {
            bail!("--replicas {} needs at least as many --stores", a.replicas);
        }
        let admin = local(base + 1)?;
        let supervisor = local(base + 2)?;
        for addr in members.iter().map(|m| m.addr).chain([admin, supervisor]) {
            if let Err(e) = TcpListener::bind(addr) {
                bail!(
                    "port {} is not free ({e}); is another cluster running? pass --port",
                    addr.port()
                );
            }
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)
            .map_err(|e| anyhow::anyhow!("no randomness for the cluster secret: {e}"))?;
        Ok(Self {
            members,
            admin,
            supervisor,
            secret: hex::encode(secret),
            replicas: a.replicas,
            mode: match a.mode {
                ModeArg::Sync => "sync",
                ModeArg::Async => "async",
            },
        })
    }

    pub(crate) fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }

    /// The cluster file's text.
    pub(crate) fn toml(&self) -> String {
        let mut t = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(
            t,
            "# Written by `sticky up`.\nsecret = \"{}\"\nreplicas = {}\nmode = \"{}\"\n",
            self.secret, self.replicas, self.mode
        );
        for m in &self.members {
            match m.role {
                Role::Director => {
                    let _ = writeln!(
                        t,
                        "[director]\nlisten = \"{}\"\nadmin = \"{}\"\n\
                         # The `sticky up` supervisor: the dashboard's kill, pause,\n\
                         # resume and restart buttons. Remove it across machines.\n\
                         supervisor = \"{}\"\n",
                        m.addr, self.admin, self.supervisor
                    );
                }
                Role::Web | Role::Standby => {
                    let _ = writeln!(
                        t,
                        "[[web]]\nname = \"{}\"\nlisten = \"{}\"\nstandby = {}\n",
                        m.name,
                        m.addr,
                        m.role == Role::Standby
                    );
                }
                Role::Store => {
                    let _ = writeln!(
                        t,
                        "[[store]]\nname = \"{}\"\nlisten = \"{}\"\n",
                        m.name, m.addr
                    );
                }
            }
        }
        t
    }

    /// Writes the cluster file into `dir` (readable by its owner only: it
    /// holds the secret) and returns its path.
    pub(crate) fn write(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        let path = dir.join("cluster.toml");
        std::fs::write(&path, self.toml())
            .with_context(|| format!("cannot write {}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("cannot restrict {}", path.display()))?;
        }
        Ok(path)
    }
}
