//! `kill`: signal the container's init (or, with --all, every process in its cgroup).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::process::PidfdFlags;

use crate::cgroups;
use crate::state::{ContainerState, StateError, Status, pid_alive};

#[derive(Debug, thiserror::Error)]
pub enum KillError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("invalid signal {0:?}")]
    InvalidSignal(String),
    #[error("container {0:?} is not running")]
    NotRunning(String),
    #[error(transparent)]
    Cgroup(#[from] cgroups::CgroupError),
    #[error("cannot send {signal} to pid {pid}: {source}")]
    Signal {
        pid: i32,
        signal: Signal,
        source: nix::errno::Errno,
    },
}

/// Accepts `9`, `KILL`, `SIGKILL`, `kill`.
pub fn parse_signal(s: &str) -> Result<Signal, KillError> {
    let invalid = || KillError::InvalidSignal(s.to_owned());
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| invalid());
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name).map_err(|_| invalid())
}

pub fn kill(root: &Path, id: &str, signal: Option<&str>, all: bool) -> Result<(), KillError> {
    let signal = signal
        .map(parse_signal)
        .transpose()?
        .unwrap_or(Signal::SIGTERM);
    let st = ContainerState::load(root, id)?;
    let status = st.status(root);
    if status == Status::Stopped {
        return Err(KillError::NotRunning(id.to_owned()));
    }
    if all {
        cgroups::signal_all(&st.cgroup, signal);
    } else {
        nix::sys::signal::kill(Pid::from_raw(st.pid), signal).map_err(|source| {
            KillError::Signal {
                pid: st.pid,
                signal,
                source,
            }
        })?;
    }
    // A frozen process acts on SIGKILL only once thawed: thaw it, as runc does. Other signals
    // stay pending until `resume`.
    if status == Status::Paused
        && signal == Signal::SIGKILL
        && let Some(freezer) = &st.cgroup.freezer
    {
        freezer.set(false)?;
    }
    Ok(())
}

/// SIGKILLs `pid` (if it is still the process started at `start_time`) and waits for it to die.
/// The init is not our child, so the wait uses a pidfd rather than waitpid.
pub fn kill_and_wait(pid: i32, start_time: u64) -> std::io::Result<()> {
    let Some(rpid) = rustix::process::Pid::from_raw(pid) else {
        return Ok(());
    };
    let pidfd = match rustix::process::pidfd_open(rpid, PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::SRCH) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    // Checked after pidfd_open: the pidfd pins this exact process, so no recycled pid is hit.
    if !pid_alive(pid, start_time) {
        return Ok(());
    }
    rustix::process::pidfd_send_signal(&pidfd, rustix::process::Signal::KILL)?;
    let timeout = Timespec::try_from(Duration::from_secs(10)).unwrap_or(Timespec {
        tv_sec: 10,
        tv_nsec: 0,
    });
    loop {
        let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) => return Err(std::io::Error::other(format!("pid {pid} did not die"))),
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
