//! `sticky up --app python|node|CMD`: one app process behind each web
//! server, which then runs as a sidecar in front of it (docs/sidecar.md).

use std::path::{Path, PathBuf};

use anyhow::bail;
use tokio::process::Command;

/// The app each web server fronts.
#[derive(Debug, Clone)]
pub(crate) struct AppSpec {
    /// `python`, `node` or `command`, for messages.
    pub(crate) label: &'static str,
    program: String,
    args: Vec<String>,
    /// Where it runs (an example's folder).
    dir: Option<PathBuf>,
    /// The paths that get a session (`--session-prefix`); every path when
    /// `None`. The examples keep their page outside, as the Rust demo does.
    pub(crate) session_prefix: Option<&'static str>,
}

/// The folder of example `name` (`examples/NAME/` holding `file`): under
/// `$STICKY_EXAMPLES`, else in the nearest `examples/` above the working
/// directory or above this executable (a build in the repository).
fn example_dir(name: &str, file: &str) -> anyhow::Result<PathBuf> {
    if let Some(root) = std::env::var_os("STICKY_EXAMPLES").filter(|v| !v.is_empty()) {
        let dir = PathBuf::from(root).join(name);
        if dir.join(file).is_file() {
            return Ok(dir);
        }
        bail!("STICKY_EXAMPLES has no {name}/{file}");
    }
    let starts = [
        std::env::current_dir().ok(),
        std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(Path::to_path_buf)),
    ];
    for start in starts.into_iter().flatten() {
        for dir in start.ancestors() {
            let candidate = dir.join("examples").join(name);
            if candidate.join(file).is_file() {
                return Ok(candidate);
            }
        }
    }
    bail!(
        "cannot find examples/{name}/{file} above the working directory or the sticky binary; \
         run from the repository or set STICKY_EXAMPLES to its examples/ folder"
    )
}

impl AppSpec {
    /// `python` and `node` are the example shops; anything else is a shell
    /// command serving HTTP on `127.0.0.1:$PORT`.
    pub(crate) fn resolve(arg: &str) -> anyhow::Result<Self> {
        let arg = arg.trim();
        Ok(match arg {
            "python" => Self {
                label: "python",
                program: "python3".into(),
                args: vec!["app.py".into()],
                dir: Some(example_dir("python", "app.py")?),
                session_prefix: Some("/api/"),
            },
            "node" => Self {
                label: "node",
                program: "node".into(),
                args: vec!["app.js".into()],
                dir: Some(example_dir("node", "app.js")?),
                session_prefix: Some("/api/"),
            },
            "" => bail!("--app needs python, node or a command"),
            cmd => Self {
                label: "command",
                program: "sh".into(),
                // exec: signals reach the app itself, not a shell.
                args: vec!["-c".into(), format!("exec {cmd}")],
                dir: None,
                session_prefix: None,
            },
        })
    }

    /// The command that starts one app on `port`, serving the shop page
    /// from `shop_html`.
    pub(crate) fn command(&self, port: u16, shop_html: &Path) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .env("PORT", port.to_string())
            .env("HOST", "127.0.0.1")
            .env("SHOP_HTML", shop_html);
        if let Some(dir) = &self.dir {
            cmd.current_dir(dir);
        }
        cmd
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn examples_are_found_in_the_repository_and_commands_run_through_sh() {
        let py = AppSpec::resolve("python").unwrap();
        assert!(py.dir.as_ref().unwrap().join("app.py").is_file());
        assert_eq!(py.session_prefix, Some("/api/"));
        let node = AppSpec::resolve("node").unwrap();
        assert!(node.dir.as_ref().unwrap().join("app.js").is_file());
        let cmd = AppSpec::resolve("./my-app --fast").unwrap();
        assert_eq!(cmd.args, ["-c", "exec ./my-app --fast"]);
        assert_eq!(cmd.session_prefix, None);
        assert!(AppSpec::resolve(" ").is_err());
    }
}
