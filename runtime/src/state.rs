//! The persisted state of a container (`<root>/<id>/state.json`) and the `state` verb.
//!
//! Status is never stored: it is derived from the init pid (checked against its recorded start
//! time so a recycled pid is not mistaken for the container), from the cgroup freezer (`paused`)
//! and from whether the exec fifo, which `start` removes, still exists.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cgroups::CgroupRecord;
use crate::hooks::{self, HookKind};

pub const STATE_FILE: &str = "state.json";
pub const EXEC_FIFO: &str = "exec.fifo";
/// Written by the init when it fails after `create` returned (e.g. a startContainer hook).
pub const START_ERROR: &str = "start.error";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("container {0:?} does not exist")]
    NotFound(String),
    #[error("cannot read state of container {id:?}: {source}")]
    Read { id: String, source: std::io::Error },
    #[error("corrupt state file of container {id:?}: {source}")]
    Corrupt {
        id: String,
        source: serde_json::Error,
    },
    #[error("cannot write state of container {id:?}: {source}")]
    Write { id: String, source: std::io::Error },
    #[error("invalid container id: {0}")]
    InvalidId(#[from] crate::spec::SpecError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    /// Frozen by `pause` (the cgroup freezer's state, not anything stored).
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerState {
    pub id: String,
    pub oci_version: String,
    /// Host pid of the container's init.
    pub pid: i32,
    /// Field 22 of /proc/<pid>/stat at create time, to detect pid reuse.
    pub pid_start_time: u64,
    pub bundle: PathBuf,
    pub annotations: BTreeMap<String, String>,
    pub created: String,
    pub cgroup: CgroupRecord,
    /// The config's hooks: `start` runs poststart, `delete` poststop (config.json may have
    /// changed since `create`).
    #[serde(default)]
    pub hooks: crate::hooks::HooksPlan,
}

/// The OCI state document printed by `state`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OciState<'a> {
    oci_version: &'a str,
    id: &'a str,
    status: Status,
    pid: i32,
    bundle: &'a Path,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: &'a BTreeMap<String, String>,
}

pub fn container_dir(root: &Path, id: &str) -> Result<PathBuf, StateError> {
    crate::spec::validate_id(id)?;
    Ok(root.join(id))
}

impl ContainerState {
    pub fn load(root: &Path, id: &str) -> Result<Self, StateError> {
        let path = container_dir(root, id)?.join(STATE_FILE);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StateError::NotFound(id.to_owned()));
            }
            Err(source) => {
                return Err(StateError::Read {
                    id: id.to_owned(),
                    source,
                });
            }
        };
        serde_json::from_slice(&text).map_err(|source| StateError::Corrupt {
            id: id.to_owned(),
            source,
        })
    }

    /// Writes atomically (temp file + rename) so a concurrent reader never sees half a file.
    pub fn save(&self, dir: &Path) -> Result<(), StateError> {
        let err = |source| StateError::Write {
            id: self.id.clone(),
            source,
        };
        let tmp = dir.join(".state.json.tmp");
        let json = serde_json::to_vec(self).map_err(|e| err(std::io::Error::other(e)))?;
        let mut f = std::fs::File::create(&tmp).map_err(err)?;
        f.write_all(&json).map_err(err)?;
        std::fs::rename(&tmp, dir.join(STATE_FILE)).map_err(err)
    }

    pub fn status(&self, root: &Path) -> Status {
        if !pid_alive(self.pid, self.pid_start_time) {
            return Status::Stopped;
        }
        if self.cgroup.freezer.as_ref().is_some_and(|f| f.is_frozen()) {
            return Status::Paused;
        }
        if root.join(&self.id).join(EXEC_FIFO).exists() {
            Status::Created
        } else {
            Status::Running
        }
    }
}

/// (state, starttime) of a process, from /proc/<pid>/stat.
pub fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let stat = procfs::process::Process::new(pid).ok()?.stat().ok()?;
    Some((stat.state, stat.starttime))
}

/// Alive = exists, is the same process (start time) and is not a zombie.
pub fn pid_alive(pid: i32, start_time: u64) -> bool {
    pid > 0
        && matches!(proc_stat(pid), Some((state, start)) if start == start_time && !matches!(state, 'Z' | 'X' | 'x'))
}

impl ContainerState {
    /// The state document for a hook (runtime.md "State"); the pid only while it can run.
    pub fn hook_state(&self, status: oci_spec::runtime::ContainerState) -> Vec<u8> {
        let pid = match status {
            oci_spec::runtime::ContainerState::Stopped => None,
            _ => Some(self.pid),
        };
        hooks::state_json(
            &self.oci_version,
            &self.id,
            status,
            pid,
            &self.bundle,
            &self.annotations,
        )
    }

    /// Runs this container's hooks of `kind` (poststart, poststop: all of them, whatever
    /// fails), handing each failure to `warn`: the spec has them logged, never fatal.
    pub fn run_hooks_warning(
        &self,
        kind: HookKind,
        status: oci_spec::runtime::ContainerState,
        warn: &dyn Fn(&str),
    ) {
        let hooks = self.hooks.of(kind);
        if hooks.is_empty() {
            return;
        }
        hooks::run_all_warning(kind, hooks, &self.hook_state(status), warn);
    }
}

/// The `state` verb.
pub fn state(root: &Path, id: &str) -> Result<String, StateError> {
    let st = ContainerState::load(root, id)?;
    let status = st.status(root);
    let doc = OciState {
        oci_version: &st.oci_version,
        id: &st.id,
        status,
        pid: if status == Status::Stopped { 0 } else { st.pid },
        bundle: &st.bundle,
        annotations: &st.annotations,
    };
    serde_json::to_string_pretty(&doc).map_err(|e| StateError::Corrupt {
        id: id.to_owned(),
        source: e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_with_its_own_start_time() {
        let pid = std::process::id() as i32;
        let (state, start) = proc_stat(pid).expect("our own stat");
        assert!(matches!(state, 'R' | 'S'), "state {state}");
        assert!(pid_alive(pid, start));
        assert!(!pid_alive(pid, start + 1));
        assert!(!pid_alive(0, start));
    }
}
