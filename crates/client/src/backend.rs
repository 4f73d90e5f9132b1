//! How a session command reaches the store: as the native `SESS.*`
//! command of a `sticky store`, or on Redis as its Lua script
//! ([`crate::scripts`]) by `EVALSHA`, and by `EVAL` when the server lost
//! the script. Both take the arguments in the same order; a script gets
//! the keys it touches as `KEYS` ([`Script::keys`]) and, last, the
//! arguments only it needs (the claim window, which a `sticky store` knows
//! itself).

use redis::Cmd;
use sticky_proto::command::SessionCommand;

use crate::scripts::{Script, SCRIPTS};

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
    /// The request running `cmd` on `subject` (the session key, or the
    /// owner, the command names first) with the arguments `args` adds:
    /// the native command, or the script by `EVALSHA` with the arguments
    /// `script_args` adds after them.
    pub(crate) fn request(
        self,
        cmd: SessionCommand,
        subject: &[u8],
        args: impl Fn(&mut Cmd),
        script_args: impl Fn(&mut Cmd),
    ) -> Cmd {
        match self {
            Self::Native => {
                let mut c = redis::cmd(cmd.as_str());
                c.arg(subject);
                args(&mut c);
                c
            }
            Self::Scripts => {
                let script = Script::of(cmd);
                let mut c = redis::cmd("EVALSHA");
                c.arg(SCRIPTS.get(script).get_hash());
                script_call(&mut c, script, subject, args, script_args);
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
        subject: &[u8],
        args: impl Fn(&mut Cmd),
        script_args: impl Fn(&mut Cmd),
    ) -> Option<Cmd> {
        match self {
            Self::Native => None,
            Self::Scripts => Some(eval(Script::of(cmd), subject, args, script_args)),
        }
    }
}

/// `EVALSHA` of a script that implements no command of its own (the lease
/// part of `SESS.GET ... WITHLEASE` on Redis).
pub(crate) fn evalsha(script: Script, subject: &[u8]) -> Cmd {
    let mut c = redis::cmd("EVALSHA");
    c.arg(SCRIPTS.get(script).get_hash());
    script_call(&mut c, script, subject, |_| {}, |_| {});
    c
}

/// `EVAL` of `script`, the source sent whole.
pub(crate) fn eval(
    script: Script,
    subject: &[u8],
    args: impl Fn(&mut Cmd),
    script_args: impl Fn(&mut Cmd),
) -> Cmd {
    let mut c = redis::cmd("EVAL");
    c.arg(script.source());
    script_call(&mut c, script, subject, args, script_args);
    c
}

/// Adds `numkeys KEYS... ARGV...` of a call of `script` on `subject`.
fn script_call(
    c: &mut Cmd,
    script: Script,
    subject: &[u8],
    args: impl Fn(&mut Cmd),
    script_args: impl Fn(&mut Cmd),
) {
    let keys = script.keys(subject);
    c.arg(keys.len());
    for k in &keys {
        c.arg(k);
    }
    if script.subject_in_argv() {
        c.arg(subject);
    }
    args(c);
    script_args(c);
}
