//! Running commands and waiting for processes with a deadline, on events (pidfd), never by polling.

use std::fs::File;
use std::io::{Read, Seek};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::process::{Pid, PidfdFlags, pidfd_open};

/// How a command ended, with everything it printed.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("cannot run `{program}`: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("`{program}` did not finish within {} s and was killed", after.as_secs_f32())]
    TimedOut { program: String, after: Duration },
    #[error("not starting `{program}`: the run was interrupted")]
    Interrupted { program: String },
    #[error("waiting for `{program}`: {source}")]
    Wait {
        program: String,
        source: std::io::Error,
    },
}

/// Runs `command` to completion, killing it (and its process group) if it outlives `timeout`.
///
/// Output goes to unnamed temp files rather than pipes, so a grandchild that keeps the descriptors
/// open (a container's init does exactly that) cannot make us wait for an end-of-file.
pub fn run(command: &mut Command, timeout: Duration) -> Result<Finished, ExecError> {
    let program = command.get_program().to_string_lossy().into_owned();
    let spawn_err = |source| ExecError::Spawn {
        program: program.clone(),
        source,
    };
    let mut stdout = tempfile::tempfile().map_err(spawn_err)?;
    let mut stderr = tempfile::tempfile().map_err(spawn_err)?;
    command
        .stdin(Stdio::null())
        .stdout(stdout.try_clone().map_err(spawn_err)?)
        .stderr(stderr.try_clone().map_err(spawn_err)?)
        .process_group(0);
    let status = run_spawned(command, &program, timeout)?;
    Ok(Finished {
        status,
        stdout: read_back(&mut stdout),
        stderr: read_back(&mut stderr),
    })
}

/// Process groups of the commands running right now (each command leads its own group).
static IN_FLIGHT: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

/// SIGKILLs every command in flight (and its process group); returns how many there were. An
/// interrupted run calls it before removing what the commands were making.
pub fn kill_in_flight() -> usize {
    let groups: Vec<i32> = IN_FLIGHT.lock().map(|g| g.clone()).unwrap_or_default();
    for &group in &groups {
        let _ =
            nix::sys::signal::killpg(nix::unistd::Pid::from_raw(group), nix::sys::signal::SIGKILL);
    }
    // Each leader's death is an event: wait for it, so nothing it was doing goes on after.
    for &group in &groups {
        let _ = wait_for_exit(group, Duration::from_secs(2));
    }
    groups.len()
}

fn track(pid: i32, running: bool) {
    if let Ok(mut groups) = IN_FLIGHT.lock() {
        if running {
            groups.push(pid);
        } else {
            groups.retain(|g| *g != pid);
        }
    }
}

/// Runs a command whose stdio the caller has already set, with the same deadline handling.
pub fn run_spawned(
    command: &mut Command,
    program: &str,
    timeout: Duration,
) -> Result<ExitStatus, ExecError> {
    if !crate::run::interrupt::may_spawn() {
        return Err(ExecError::Interrupted {
            program: program.to_owned(),
        });
    }
    let mut child = command
        .process_group(0)
        .spawn()
        .map_err(|source| ExecError::Spawn {
            program: program.to_owned(),
            source,
        })?;
    let wait_err = |source| ExecError::Wait {
        program: program.to_owned(),
        source,
    };
    let pid = child.id() as i32;
    track(pid, true);
    let exited = wait_for_exit(pid, timeout);
    track(pid, false);
    if exited.map_err(wait_err)? {
        return child.wait().map_err(wait_err);
    }
    // The child is not reaped yet, so its pid (and process group id) cannot have been reused.
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
    let _ = child.kill();
    let _ = child.wait();
    Err(ExecError::TimedOut {
        program: program.to_owned(),
        after: timeout,
    })
}

fn read_back(file: &mut File) -> String {
    let mut text = String::new();
    if file.rewind().is_ok() {
        let _ = file.read_to_string(&mut text);
    }
    text
}

pub use palisade_common::find_program;

/// Waits until process `pid` (any process, not only a child) has exited, or `timeout` passes.
///
/// Returns `Ok(true)` once it has exited (or was already gone), `Ok(false)` on timeout.
pub fn wait_for_exit(pid: i32, timeout: Duration) -> std::io::Result<bool> {
    match ProcessHandle::open(pid)? {
        Some(handle) => handle.wait(timeout),
        None => Ok(true),
    }
}

/// A pidfd: refers to one process for good, even after its pid is reused.
pub struct ProcessHandle {
    pid: i32,
    fd: std::os::fd::OwnedFd,
}

impl ProcessHandle {
    /// Opens a handle on `pid`; `None` if no such process exists (any more).
    pub fn open(pid: i32) -> std::io::Result<Option<ProcessHandle>> {
        let Some(raw) = Pid::from_raw(pid) else {
            return Ok(None);
        };
        match pidfd_open(raw, PidfdFlags::empty()) {
            Ok(fd) => Ok(Some(ProcessHandle { pid, fd })),
            Err(rustix::io::Errno::SRCH) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits for the process to exit: `Ok(true)` once it has, `Ok(false)` on timeout.
    pub fn wait(&self, timeout: Duration) -> std::io::Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let spec = Timespec::try_from(left).unwrap_or(Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            });
            let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
            match poll(&mut fds, Some(&spec)) {
                Ok(0) => return Ok(false),
                Ok(_) => return Ok(true),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub fn is_alive(&self) -> bool {
        matches!(self.wait(Duration::ZERO), Ok(false))
    }

    /// SIGKILLs the process this handle refers to (never another one that got its pid).
    pub fn kill(&self) {
        let _ = rustix::process::pidfd_send_signal(&self.fd, rustix::process::Signal::KILL);
    }
}

/// Forwards each line `reader` yields (a child's pipe) to a channel, so a wait on it can have a
/// deadline; the thread ends when the pipe closes or the receiver is gone.
pub fn lines_of(reader: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_output_and_status() {
        let done = run(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(5),
        )
        .expect("sh runs");
        assert_eq!(done.status.code(), Some(3));
        assert_eq!(done.stdout, "out\n");
        assert_eq!(done.stderr, "err\n");
    }

    #[test]
    fn kills_a_command_that_hangs() {
        let started = Instant::now();
        let err = run(Command::new("sleep").arg("60"), Duration::from_millis(200))
            .expect_err("must time out");
        assert!(matches!(err, ExecError::TimedOut { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let err = run(
            &mut Command::new("/nonexistent/palisade"),
            Duration::from_secs(1),
        )
        .expect_err("spawn fails");
        assert!(
            err.to_string()
                .starts_with("cannot run `/nonexistent/palisade`"),
            "{err}"
        );
    }
}
