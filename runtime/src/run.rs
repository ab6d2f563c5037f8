//! `run`: create + start + wait + delete, exiting with the container's exit code.

use std::path::Path;

use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::cli::CreateArgs;
use crate::create::{CreateError, create_container};
use crate::delete::{DeleteError, delete};
use crate::start::{StartError, start};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Create(#[from] CreateError),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Delete(#[from] DeleteError),
    #[error("cannot become a child subreaper: {0}")]
    Subreaper(nix::errno::Errno),
    #[error("waiting for the container: {0}")]
    Wait(nix::errno::Errno),
}

pub fn run(root: &Path, args: &CreateArgs, no_pivot: bool, detach: bool) -> Result<u8, RunError> {
    if !detach {
        // The init is our grandchild; as a subreaper we inherit it when the intermediate exits and
        // can collect its exit status with waitpid.
        nix::sys::prctl::set_child_subreaper(true).map_err(RunError::Subreaper)?;
    }
    let st = create_container(
        root,
        &args.bundle,
        &args.id,
        args.pid_file.as_deref(),
        no_pivot,
    )?;
    if let Err(e) = start(root, &args.id) {
        let _ = delete(root, &args.id, true);
        return Err(e.into());
    }
    if detach {
        return Ok(0);
    }
    let code = loop {
        match waitpid(Pid::from_raw(st.pid), None) {
            Ok(WaitStatus::Exited(_, code)) => break u8::try_from(code & 0xff).unwrap_or(255),
            Ok(WaitStatus::Signaled(_, sig, _)) => break 128u8.saturating_add(sig as u8),
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                let _ = delete(root, &args.id, true);
                return Err(RunError::Wait(e));
            }
        }
    };
    delete(root, &args.id, true)?;
    Ok(code)
}
