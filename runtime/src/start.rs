//! `start`: unblock a created container's init through the exec fifo.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::state::{ContainerState, EXEC_FIFO, StateError, Status};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(
        "cannot start container {id:?}: it is {status} (only a created container can be started)"
    )]
    NotCreated { id: String, status: Status },
    #[error("cannot start container {id:?}: its init is no longer waiting")]
    NotWaiting { id: String },
    #[error("cannot signal the exec fifo of {id:?}: {source}")]
    Fifo { id: String, source: std::io::Error },
}

pub fn start(root: &Path, id: &str) -> Result<(), StartError> {
    let st = ContainerState::load(root, id)?;
    let status = st.status(root);
    if status != Status::Created {
        return Err(StartError::NotCreated {
            id: id.to_owned(),
            status,
        });
    }
    let fifo_path = root.join(id).join(EXEC_FIFO);
    // Non-blocking: ENXIO (no reader) means the init died, instead of hanging forever.
    let mut fifo = match OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(&fifo_path)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(nix::libc::ENXIO) => {
            return Err(StartError::NotWaiting { id: id.to_owned() });
        }
        Err(source) => {
            return Err(StartError::Fifo {
                id: id.to_owned(),
                source,
            });
        }
    };
    let fifo_err = |source| StartError::Fifo {
        id: id.to_owned(),
        source,
    };
    fifo.write_all(&[1]).map_err(fifo_err)?;
    // The fifo's absence is what marks the container as started.
    std::fs::remove_file(&fifo_path).map_err(fifo_err)
}
