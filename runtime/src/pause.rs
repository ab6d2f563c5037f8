//! `pause` and `resume`: freeze and thaw every process of a container through its cgroup's
//! freezer (v1 `freezer.state`, or v2 `cgroup.freeze`). `state` then reports `paused`.

use std::path::Path;

use crate::cgroups::{CgroupError, Freezer};
use crate::state::{ContainerState, StateError, Status};

#[derive(Debug, thiserror::Error)]
pub enum PauseError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot pause container {id:?}: it is {status} (only a running or created one can be)")]
    NotRunning { id: String, status: Status },
    #[error("cannot resume container {id:?}: it is {status}, not paused")]
    NotPaused { id: String, status: Status },
    #[error("cannot pause container {0:?}: its cgroup has no freezer")]
    NoFreezer(String),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
}

fn freezer(st: &ContainerState) -> Result<&Freezer, PauseError> {
    st.cgroup
        .freezer
        .as_ref()
        .ok_or_else(|| PauseError::NoFreezer(st.id.clone()))
}

pub fn pause(root: &Path, id: &str) -> Result<(), PauseError> {
    let st = ContainerState::load(root, id)?;
    let status = st.status(root);
    if !matches!(status, Status::Running | Status::Created) {
        return Err(PauseError::NotRunning {
            id: id.to_owned(),
            status,
        });
    }
    Ok(freezer(&st)?.set(true)?)
}

pub fn resume(root: &Path, id: &str) -> Result<(), PauseError> {
    let st = ContainerState::load(root, id)?;
    let status = st.status(root);
    if status != Status::Paused {
        return Err(PauseError::NotPaused {
            id: id.to_owned(),
            status,
        });
    }
    Ok(freezer(&st)?.set(false)?)
}
