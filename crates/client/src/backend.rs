//! How a session command reaches the store: as the native `SESS.*`
//! command of a `sticky store`, or on Redis as its Lua script
//! ([`crate::scripts`]) by `EVALSHA`, and by `EVAL` when the server lost
//! the script. Both take the arguments in the same order.

use redis::Cmd;
use sticky_proto::command::SessionCommand;

use crate::scripts::{self, SCRIPTS};

/// How the session commands reach the store; the address selects it
/// ([`crate::addr`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    /// `sticky store`: the native `SESS.*` commands.
    Native,
    /// Redis: the commands as Lua scripts ([`crate::scripts`]).
    Scripts,
}

impl Backend {
    /// The request running `cmd` on `key` with the arguments `args` adds:
    /// the native command, or the script by `EVALSHA`.
    pub(crate) fn request(self, cmd: SessionCommand, key: &[u8], args: impl Fn(&mut Cmd)) -> Cmd {
        match self {
            Self::Native => {
                let mut c = redis::cmd(cmd.as_str());
                c.arg(key);
                args(&mut c);
                c
            }
            Self::Scripts => {
                let mut c = redis::cmd("EVALSHA");
                c.arg(SCRIPTS.of(cmd).get_hash())
                    .arg(1)
                    .arg(scripts::redis_key(key));
                args(&mut c);
                c
            }
        }
    }

    /// The script of `cmd` sent whole by `EVAL`, for a Redis that answered
    /// `NOSCRIPT` to [`request`](Self::request)'s `EVALSHA` (it restarted or
    /// flushed its scripts since the connection loaded them). `None` for
    /// `sticky store`, which has no scripts.
    pub(crate) fn fallback(
        self,
        cmd: SessionCommand,
        key: &[u8],
        args: impl Fn(&mut Cmd),
    ) -> Option<Cmd> {
        match self {
            Self::Native => None,
            Self::Scripts => {
                let mut c = redis::cmd("EVAL");
                c.arg(scripts::source(cmd))
                    .arg(1)
                    .arg(scripts::redis_key(key));
                args(&mut c);
                Some(c)
            }
        }
    }
}
