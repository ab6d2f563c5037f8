//! `run`: create + start + wait + delete, exiting with the container's exit code.

use std::path::Path;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
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

pub fn run(
    root: &Path,
    args: &CreateArgs,
    no_pivot: bool,
    detach: bool,
    warn: &dyn Fn(&str),
) -> Result<u8, RunError> {
    if !detach {
        // The init is our grandchild; as a subreaper we inherit it when the intermediate exits and
        // can collect its exit status with waitpid.
        nix::sys::prctl::set_child_subreaper(true).map_err(RunError::Subreaper)?;
    }
    let st = create_container(root, args, no_pivot, warn)?;
    // Blocked only now, after the init was forked with the default mask; signals that arrive from
    // here on are read from a signalfd and forwarded to the container, like runc does.
    let signals = if detach {
        None
    } else {
        match forward_signals() {
            Ok(sfd) => Some(sfd),
            Err(e) => {
                let _ = delete(root, &args.id, true, warn);
                return Err(RunError::Wait(e));
            }
        }
    };
    if let Err(e) = start(root, &args.id, warn) {
        let _ = delete(root, &args.id, true, warn);
        return Err(e.into());
    }
    let Some(signals) = signals else {
        return Ok(0);
    };
    let code = match wait_forwarding(Pid::from_raw(st.pid), &signals) {
        Ok(code) => code,
        Err(e) => {
            let _ = delete(root, &args.id, true, warn);
            return Err(RunError::Wait(e));
        }
    };
    delete(root, &args.id, true, warn)?;
    Ok(code)
}

const FORWARDED: &[Signal] = &[
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

pub(crate) fn forward_signals() -> nix::Result<SignalFd> {
    let mut mask = SigSet::empty();
    for s in FORWARDED {
        mask.add(*s);
    }
    mask.add(Signal::SIGCHLD);
    mask.thread_block()?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC)
}

/// Waits for the init, forwarding signals to it and reaping any other orphan this subreaper
/// inherits (containers without their own pid namespace).
pub(crate) fn wait_forwarding(init: Pid, signals: &SignalFd) -> nix::Result<u8> {
    loop {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == init => {
                    return Ok(u8::try_from(code & 0xff).unwrap_or(255));
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == init => {
                    return Ok(128u8.saturating_add(sig as u8));
                }
                Ok(WaitStatus::StillAlive) => break,
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e),
            }
        }
        match signals.read_signal() {
            Ok(Some(info)) => {
                let signo = i32::try_from(info.ssi_signo).unwrap_or(0);
                if let Ok(sig) = Signal::try_from(signo)
                    && sig != Signal::SIGCHLD
                {
                    // The init may be exiting; the next waitpid round sees it.
                    let _ = nix::sys::signal::kill(init, sig);
                }
            }
            Ok(None) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
}
