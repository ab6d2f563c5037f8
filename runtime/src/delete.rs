//! `delete`: remove a container's cgroups and state, then run its poststop hooks.

use std::path::Path;

use nix::sys::signal::Signal;

use crate::cgroups::{self, CgroupError};
use crate::hooks::HookKind;
use crate::state::{ContainerState, StateError, Status, container_dir};

#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot delete container {0:?}: it is running (stop it first or use --force)")]
    Running(String),
    #[error("cannot delete container {0:?}: it is paused (stop it first or use --force)")]
    Paused(String),
    #[error("cannot kill container {id:?}: {source}")]
    Kill { id: String, source: std::io::Error },
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("cannot remove state of {id:?}: {source}")]
    RemoveState { id: String, source: std::io::Error },
}

pub fn delete(root: &Path, id: &str, force: bool, warn: &dyn Fn(&str)) -> Result<(), DeleteError> {
    let dir = container_dir(root, id)?;
    let st = match ContainerState::load(root, id) {
        Ok(st) => st,
        // --force is idempotent, like runc.
        Err(StateError::NotFound(_)) if force => {
            let _ = std::fs::remove_dir_all(&dir);
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    match st.status(root) {
        Status::Running if !force => return Err(DeleteError::Running(id.to_owned())),
        Status::Paused if !force => return Err(DeleteError::Paused(id.to_owned())),
        Status::Paused => {
            // A frozen process only dies once thawed: SIGKILL everything, then thaw (as runc).
            cgroups::signal_all(&st.cgroup, Signal::SIGKILL);
            if let Some(freezer) = &st.cgroup.freezer {
                freezer.set(false)?;
            }
            crate::kill::kill_and_wait(st.pid, st.pid_start_time).map_err(|source| {
                DeleteError::Kill {
                    id: id.to_owned(),
                    source,
                }
            })?;
        }
        Status::Running | Status::Created => {
            crate::kill::kill_and_wait(st.pid, st.pid_start_time).map_err(|source| {
                DeleteError::Kill {
                    id: id.to_owned(),
                    source,
                }
            })?;
        }
        Status::Stopped => {}
    }
    // Without its own pid namespace a container can leave processes behind in its cgroup.
    cgroups::signal_all(&st.cgroup, Signal::SIGKILL);
    cgroups::destroy(&st.cgroup)?;
    std::fs::remove_dir_all(&dir).map_err(|source| DeleteError::RemoveState {
        id: id.to_owned(),
        source,
    })?;
    // After the container is deleted, before `delete` returns; a failure is only logged.
    st.run_hooks_warning(
        HookKind::Poststop,
        oci_spec::runtime::ContainerState::Stopped,
        warn,
    );
    Ok(())
}
