//! `start`: unblock a created container's init through the exec fifo, wait until it has exec'd
//! the container's process (or failed, e.g. in a startContainer hook), then run poststart hooks.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rustix::event::{PollFd, PollFlags, poll};

use crate::hooks::HookKind;
use crate::state::{ContainerState, EXEC_FIFO, START_ERROR, StateError, Status};

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
    #[error("container {id:?} failed to start: {message}")]
    Failed { id: String, message: String },
}

pub fn start(root: &Path, id: &str, warn: &dyn Fn(&str)) -> Result<(), StartError> {
    let st = ContainerState::load(root, id)?;
    let status = st.status(root);
    if status != Status::Created {
        return Err(StartError::NotCreated {
            id: id.to_owned(),
            status,
        });
    }
    let dir = root.join(id);
    let fifo_path = dir.join(EXEC_FIFO);
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
    std::fs::remove_file(&fifo_path).map_err(fifo_err)?;
    wait_for_exec(&fifo).map_err(fifo_err)?;
    // The init writes this file only when it fails after `create` (startContainer hook, exec).
    let message = std::fs::read_to_string(dir.join(START_ERROR)).unwrap_or_default();
    if !message.trim().is_empty() {
        return Err(StartError::Failed {
            id: id.to_owned(),
            message: message.trim().to_owned(),
        });
    }
    st.run_hooks_warning(
        HookKind::Poststart,
        oci_spec::runtime::ContainerState::Running,
        warn,
    );
    Ok(())
}

/// Blocks until the init no longer holds the fifo's read end: it is close-on-exec, so that is
/// the exec of the container's process, or the init's exit. The write end then reports POLLERR.
fn wait_for_exec(fifo: &std::fs::File) -> std::io::Result<()> {
    loop {
        // No events asked for: POLLERR (no reader left) is always reported.
        let mut fds = [PollFd::new(fifo, PollFlags::empty())];
        match poll(&mut fds, None) {
            Ok(_) if fds[0].revents().intersects(PollFlags::ERR | PollFlags::HUP) => {
                return Ok(());
            }
            Ok(_) | Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
