//! What runs containers. A [`Driver`] takes the container a scenario describes
//! ([`bundle::ContainerSpec`]), makes it real its own way (an OCI runtime: a bundle and
//! `create`), and drives its lifecycle; a [`container::Container`] is the handle a scenario holds.
//!
//! [`oci::OciCli`] drives any runtime with runc's command line.

pub mod bundle;
pub mod channel;
pub mod container;
pub mod exec;
pub mod oci;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use oci_spec::runtime::{ContainerState, State};
use serde::Serialize;

use crate::error::HarnessError;
use bundle::ContainerSpec;

/// Which runtime (or engine) is under test, as printed at the start of every run.
#[derive(Debug, Clone, Serialize)]
pub struct RuntimeInfo {
    /// The name the user gave (`runc`) or the file name of the path.
    pub name: String,
    pub path: PathBuf,
    /// The first line of `<runtime> --version`.
    pub version: String,
}

/// The container's standard streams, handed to `create` (detached, pass-through).
pub struct ContainerStdio {
    pub stdin: Stdio,
    pub stdout: Stdio,
    /// Also receives the runtime's own messages during `create`.
    pub stderr: File,
}

/// A container the driver has created: its init waits for `start`.
#[derive(Debug, Clone)]
pub struct Created {
    /// The init's pid on the host, as the runtime reported it; `None` where the driver only
    /// learns it at `start` (an engine creates the runtime's container then).
    pub host_pid: Option<i32>,
    /// The container's root filesystem as the host sees it, where the driver knows it.
    pub rootfs: Option<PathBuf>,
    /// Where a file the container writes under `/` lands on the host: the rootfs, or an
    /// engine's writable layer of the container.
    pub write_layer: Option<PathBuf>,
}

/// The lifecycle verbs, whatever runs the container.
pub trait Driver: Send + Sync {
    fn info(&self) -> &RuntimeInfo;
    /// Makes `spec` real under `dir` (a directory of the container's own, which the caller
    /// removes) and creates the container; its process waits for [`Driver::start`].
    fn create(
        &self,
        id: &str,
        spec: &ContainerSpec,
        dir: &Path,
        stdio: ContainerStdio,
    ) -> Result<Created, HarnessError>;
    fn start(&self, id: &str) -> Result<(), RuntimeError>;
    fn state(&self, id: &str) -> Result<State, RuntimeError>;
    /// The container's status, `paused` included (which a [`State`] cannot hold); a driver whose
    /// runtime can pause reports it here.
    fn status(&self, id: &str) -> Result<Status, RuntimeError> {
        Ok((*self.state(id)?.status()).into())
    }
    fn kill(&self, id: &str, signal: &str) -> Result<(), RuntimeError>;
    fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError>;
    /// Freezes every process of the container (`<runtime> pause`, `docker pause`).
    fn pause(&self, id: &str) -> Result<(), RuntimeError>;
    /// Thaws a paused container (`<runtime> resume`, `docker unpause`).
    fn resume(&self, id: &str) -> Result<(), RuntimeError>;

    /// Starts `process` in the running container `id` (whose init is `init_pid` on the host),
    /// with `stdio`; `dir` is the container's own directory, for files the driver needs.
    fn exec(
        &self,
        id: &str,
        init_pid: i32,
        process: &oci_spec::runtime::Process,
        dir: &Path,
        stdio: ContainerStdio,
    ) -> Result<exec::Execed, HarnessError> {
        let _ = (id, init_pid, process, dir, stdio);
        Err(HarnessError::Unsupported {
            what: format!(
                "`{}` cannot start a process in a running container",
                self.info().name
            ),
        })
    }

    /// The init's host pid once the container has started, for drivers whose `create` could not
    /// say it ([`Created::host_pid`] `None`); `None` if the container is not running.
    fn started_pid(&self, id: &str) -> Result<Option<i32>, HarnessError> {
        let _ = id;
        Ok(None)
    }

    /// Waits until the container has stopped; `Ok(false)` if it still runs after `timeout`. The
    /// default waits on the init's pid (a pidfd); a driver that knows better overrides it.
    fn wait_stopped(
        &self,
        id: &str,
        host_pid: Option<i32>,
        timeout: Duration,
    ) -> Result<bool, HarnessError> {
        let pid = host_pid.ok_or_else(|| HarnessError::Unsupported {
            what: format!("waiting for `{id}`: its host pid is unknown"),
        })?;
        crate::exec::wait_for_exit(pid, timeout).map_err(|source| HarnessError::Io {
            what: "waiting for the container's init",
            source,
        })
    }

    /// The reference container adapted to what this driver runs by default (an engine's own
    /// masked and read-only paths); OCI runtimes take it as it is.
    fn reference(&self, spec: ContainerSpec) -> ContainerSpec {
        spec
    }

    /// The container engine behind this driver, if it is one (image and engine-network scenarios
    /// need it; the host side of a scenario is its lab host).
    fn engine(&self) -> Option<&crate::engine::driver::EngineDriver> {
        None
    }

    /// The same driver with a defect switched on, for negative controls; `None` if this driver
    /// cannot make such a variant.
    fn variant(&self, defect: &Defect) -> Option<Arc<dyn Driver>> {
        let _ = defect;
        None
    }
}

/// A container's status as its runtime reports it: the runtime spec's four, and `paused`, which
/// runc, crun, the bundled runtime and the engines add (the spec lets a runtime define more
/// values) and which oci-spec's [`ContainerState`] has no variant for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl From<ContainerState> for Status {
    fn from(state: ContainerState) -> Status {
        match state {
            ContainerState::Creating => Status::Creating,
            ContainerState::Created => Status::Created,
            ContainerState::Running => Status::Running,
            ContainerState::Stopped => Status::Stopped,
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// A runtime defect a negative control can switch on through the driver.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Defect {
    /// Extra flags for `create` (`--no-pivot`); a flag the runtime's `create --help` does not
    /// list is left out.
    pub create_flags: Vec<String>,
    /// A host directory handed to the container as an open fd 3 (`--preserve-fds 1`): the leak
    /// behind CVE-2024-21626.
    pub leaked_dir: Option<PathBuf>,
    /// How `exec` goes wrong.
    pub exec: Option<ExecDefect>,
    /// `state` reports this pid instead of the init's.
    pub state_pid: Option<i32>,
    /// `pause` succeeds without calling the runtime: nothing is frozen.
    pub pause_noop: bool,
}

/// A runtime's `exec` gone wrong, simulated by the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecDefect {
    /// The process joins the init's namespaces by itself (nsenter), leaving `skip` out, and
    /// neither its cgroup nor the process spec is applied: it keeps the caller's.
    Nsenter {
        skip: Option<oci_spec::runtime::LinuxNamespaceType>,
    },
    /// A host directory passed to the new process as fd 3 (`--preserve-fds 1`).
    LeakedDir(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("runtime hung in `{verb}` after {} s (killed)", after.as_secs_f32())]
    Hung { verb: &'static str, after: Duration },
    #[error("`{runtime} {verb}` failed ({status}): {stderr}")]
    Failed {
        runtime: String,
        verb: &'static str,
        status: String,
        stderr: String,
    },
    #[error("cannot run the runtime `{}`: {source}", path.display())]
    Spawn {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{runtime} state` printed something that is not an OCI state ({problem}): {output:?}")]
    BadState {
        runtime: String,
        problem: String,
        output: String,
    },
    #[error("waiting for the runtime: {0}")]
    Wait(std::io::Error),
    #[error("preparing the container's stdio: {0}")]
    Stdio(std::io::Error),
}

/// The part of a runtime's stderr that says what went wrong: its last `n` lines that mention an
/// error, or its last `n` lines when none does (youki, for one, ends with a stack backtrace).
pub fn error_summary(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let errors: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.to_lowercase().contains("error"))
        .collect();
    let chosen = if errors.is_empty() { &lines } else { &errors };
    chosen[chosen.len().saturating_sub(n)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::plain("line one\nbad things happened\n", "line one | bad things happened")]
    #[case::backtrace(
        "ERROR youki: failed to prepare rootfs\n\nStack backtrace:\n   0: anyhow::error\n   1: main\n   2: start",
        "ERROR youki: failed to prepare rootfs | 0: anyhow::error"
    )]
    fn error_summaries_keep_what_went_wrong(#[case] stderr: &str, #[case] summary: &str) {
        assert_eq!(error_summary(stderr, 2).replace("   ", ""), summary);
    }
}
