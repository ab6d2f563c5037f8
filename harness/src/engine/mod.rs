//! Container engines (Docker, Podman) run the way people run them, inside a *lab host* Palisade
//! owns, so that nothing an engine does reaches the real machine.
//!
//! ```text
//!  real machine (root netns untouched)
//!  └─ lab host: netns palisade-<id>-engN-host + own mount, UTS and IPC namespaces
//!       │  holder process, cgroup palisade-<id>-engN (tracks every engine process)
//!       ├─ dockerd (own data/exec root, socket, containerd) ─┐ bridges, veths, iptables NAT:
//!       ├─ podman (own root/runroot/tmpdir, CNI config) ─────┘ all inside the lab host
//!       └─ uplink 198.51.100.254 ──veth── outside netns 198.51.100.1 (peer-address service)
//! ```
//!
//! - [`labhost`]: the lab host itself, and running commands inside it.
//! - [`docker`]: a Palisade-owned `dockerd` in a lab host, and its client.
//! - [`podman`]: podman with its own storage and configuration, in a lab host.
//! - [`image`]: the probe image, built offline from scratch.
//! - [`cleanup`]: what a killed engine run leaves, and how it is removed.
//! - [`driver`]: the engine as a [`crate::Driver`]: the suite's containers through `docker` or
//!   `podman`, their config as the engine's own flags ([`translate`]).
//! - [`variant`]: the engine with a simulated runtime defect, for negative controls.

pub mod cleanup;
pub mod docker;
pub mod driver;
pub mod image;
pub mod labhost;
pub mod podman;
pub mod translate;
pub mod variant;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use palisade_probe::{Request, Response};

use crate::error::HarnessError;
use crate::exec::{self, ExecError, Finished};

/// How long one engine command (a `run`, a `build`, a daemon's start) may take before it is
/// declared hung: generous, because a loaded CI machine is slow, but never unbounded.
pub fn engine_timeout() -> Duration {
    let secs = std::env::var("PALISADE_ENGINE_TIMEOUT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(90);
    Duration::from_secs(secs)
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("`{0}` is not installed (not found on PATH)")]
    Missing(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error(transparent)]
    Harness(#[from] HarnessError),
    #[error("lab host: {0}")]
    Lab(String),
    #[error("{daemon} exited while starting ({status}); the end of its log ({}):\n{tail}", log.display())]
    DaemonExited {
        daemon: String,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("{daemon} did not answer within {} s; the end of its log ({}):\n{tail}", after.as_secs_f32(), log.display())]
    DaemonNotReady {
        daemon: String,
        after: Duration,
        log: PathBuf,
        tail: String,
    },
    #[error("no {engine} daemon is listening on {socket}: {message}")]
    NotRunning {
        engine: &'static str,
        socket: String,
        message: String,
    },
    #[error("no permission to use the {engine} socket {socket}: {message}")]
    SocketPermission {
        engine: &'static str,
        socket: String,
        message: String,
    },
    #[error("{engine} does not know the runtime `{name}`: {message}")]
    UnknownRuntime {
        engine: &'static str,
        name: String,
        message: String,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error(
        "`{command}` printed no probe response ({problem}); stdout {stdout:?}, stderr {stderr:?}"
    )]
    NoProbeResponse {
        command: String,
        problem: String,
        stdout: String,
        stderr: String,
    },
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> EngineError {
    let what = what.into();
    move |source| EngineError::Io { what, source }
}

/// An engine's command-line client, as Palisade drives it.
pub trait Engine {
    /// `docker` or `podman`, for messages.
    fn name(&self) -> &'static str;
    /// The client with its global options and environment, set to run inside the lab host.
    fn cli(&self) -> Command;
    /// What the client talks to, for messages (`unix:///…/docker.sock`; podman: its root).
    fn endpoint(&self) -> String;
    /// Options every `run` gets (podman: the cgroup parent, which it has no daemon-wide flag for).
    fn run_options(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Runs the engine's client with `args`; a failure is classified (daemon not running, socket
/// permission, unknown runtime) so the user reads what is wrong, not a wall of client output.
pub fn cli(engine: &dyn Engine, args: &[&str], timeout: Duration) -> Result<Finished, EngineError> {
    let mut command = engine.cli();
    command.args(args);
    let shown = shown(engine.name(), args);
    let done = exec::run(&mut command, timeout)?;
    if done.status.success() {
        return Ok(done);
    }
    Err(classify(engine, &shown, &done, runtime_arg(args)))
}

/// The value of a `--runtime` option in `args`, if any.
fn runtime_arg<'a>(args: &[&'a str]) -> Option<&'a str> {
    args.iter().enumerate().find_map(|(i, arg)| {
        if let Some(value) = arg.strip_prefix("--runtime=") {
            Some(value)
        } else if *arg == "--runtime" {
            args.get(i + 1).copied()
        } else {
            None
        }
    })
}

fn shown(engine: &str, args: &[&str]) -> String {
    std::iter::once(engine)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a failed client call means, from the messages the engines print.
pub fn classify(
    engine: &dyn Engine,
    command: &str,
    done: &Finished,
    runtime: Option<&str>,
) -> EngineError {
    let stderr = done.stderr.trim().to_owned();
    let kind = failure_kind(&stderr);
    let (name, socket) = (engine.name(), engine.endpoint());
    match kind {
        FailureKind::NotRunning => EngineError::NotRunning {
            engine: name,
            socket,
            message: stderr,
        },
        FailureKind::Permission => EngineError::SocketPermission {
            engine: name,
            socket,
            message: stderr,
        },
        FailureKind::UnknownRuntime => EngineError::UnknownRuntime {
            engine: name,
            name: runtime.unwrap_or("(default)").to_owned(),
            message: stderr,
        },
        FailureKind::Other => EngineError::Command {
            command: command.to_owned(),
            status: done.status.to_string(),
            stderr,
        },
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    NotRunning,
    Permission,
    UnknownRuntime,
    Other,
}

/// Docker's and Podman's wording for the failures a user must be told about plainly.
pub fn failure_kind(stderr: &str) -> FailureKind {
    let text = stderr.to_ascii_lowercase();
    if text.contains("permission denied while trying to connect") {
        FailureKind::Permission
    } else if text.contains("cannot connect to the docker daemon") {
        FailureKind::NotRunning
    } else if text.contains("unknown runtime specified")
        || (text.contains("oci runtime") && text.contains("not found"))
    {
        FailureKind::UnknownRuntime
    } else {
        FailureKind::Other
    }
}

/// One probe answer from a container the engine ran, and how long the whole `run` took.
#[derive(Debug)]
pub struct ProbeRun {
    pub response: Response,
    pub took: Duration,
}

/// `<engine> run --rm [--runtime R] [extra…] <image> '<request>'`: starts a container of the
/// probe image, which answers `request` once and exits.
pub fn run_probe(
    engine: &dyn Engine,
    image: &str,
    runtime: Option<&str>,
    extra: &[&str],
    request: &Request,
) -> Result<ProbeRun, EngineError> {
    let request = serde_json::to_string(request).map_err(|e| EngineError::Command {
        command: "encoding the probe request".into(),
        status: "error".into(),
        stderr: e.to_string(),
    })?;
    let options = engine.run_options();
    let mut args: Vec<&str> = vec!["run", "--rm"];
    args.extend(options.iter().map(String::as_str));
    if let Some(runtime) = runtime {
        args.extend(["--runtime", runtime]);
    }
    args.extend_from_slice(extra);
    args.extend([image, &request]);
    let mut command = engine.cli();
    command.args(&args);
    let shown = shown(engine.name(), &args);
    let started = Instant::now();
    let done = exec::run(&mut command, engine_timeout())?;
    let took = started.elapsed();
    // The probe exits non-zero when it answers with an error: that answer is still the result.
    let last = done.stdout.lines().rev().find(|l| !l.trim().is_empty());
    match last.map(serde_json::from_str::<Response>) {
        Some(Ok(response)) => Ok(ProbeRun { response, took }),
        _ if !done.status.success() => Err(classify(engine, &shown, &done, runtime)),
        Some(Err(e)) => Err(EngineError::NoProbeResponse {
            command: shown,
            problem: e.to_string(),
            stdout: done.stdout,
            stderr: done.stderr,
        }),
        None => Err(EngineError::NoProbeResponse {
            command: shown,
            problem: "empty output".into(),
            stdout: done.stdout,
            stderr: done.stderr,
        }),
    }
}

/// The last `lines` lines of a log file (for an error message), or why it could not be read.
pub(crate) fn log_tail(path: &std::path::Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(unreadable: {e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(
        "docker: Cannot connect to the Docker daemon at unix:///tmp/x.sock. Is the docker daemon running?",
        FailureKind::NotRunning
    )]
    #[case(
        "permission denied while trying to connect to the Docker daemon socket at unix:///tmp/x.sock: Get \"http://%2Ftmp%2Fx.sock/v1.24/version\": dial unix /tmp/x.sock: connect: permission denied",
        FailureKind::Permission
    )]
    #[case(
        "docker: Error response from daemon: Unknown runtime specified nosuch.",
        FailureKind::UnknownRuntime
    )]
    #[case(
        "Error: default OCI runtime \"nosuch\" not found: invalid argument",
        FailureKind::UnknownRuntime
    )]
    #[case("Error: short-name resolution enforced", FailureKind::Other)]
    fn engine_failures_are_named(#[case] stderr: &str, #[case] kind: FailureKind) {
        assert_eq!(failure_kind(stderr), kind);
    }

    #[rstest]
    #[case(&["run", "--runtime", "crun", "img"], Some("crun"))]
    #[case(&["run", "--runtime=runc", "img"], Some("runc"))]
    #[case(&["run", "img"], None)]
    fn the_runtime_option_is_found(#[case] args: &[&str], #[case] runtime: Option<&str>) {
        assert_eq!(runtime_arg(args), runtime);
    }
}
