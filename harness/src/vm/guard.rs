//! What `palisade vm` holds on the host and gives back however it ends: its work directory, the
//! interrupting signals (caught through a signalfd) and the QEMU process (which dies with us).

use std::fs;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use rustix::process::{Pid, PidfdFlags, pidfd_open, pidfd_send_signal};

use super::qemu::{VmError, io};
use crate::run::{PREFIX, RECORD_FILE, RunRecord, new_run_id, start_time};

/// The signals that stop `palisade vm` cleanly (kill QEMU, remove the work directory).
const INTERRUPTS: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// The interrupting signals, blocked and read from a signalfd for as long as this lives.
pub(super) struct Interrupts {
    fd: SignalFd,
    old_mask: SigSet,
}

impl Interrupts {
    pub fn catch() -> Result<Interrupts, VmError> {
        let mut signals = SigSet::empty();
        for signal in INTERRUPTS {
            signals.add(signal);
        }
        let mut old_mask = SigSet::empty();
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&signals), Some(&mut old_mask))
            .map_err(|e| io("blocking signals")(e.into()))?;
        match SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK) {
            Ok(fd) => Ok(Interrupts { fd, old_mask }),
            Err(e) => {
                let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old_mask), None);
                Err(io("signalfd")(e.into()))
            }
        }
    }

    /// A signal that arrived and was not read yet.
    pub fn pending(&self) -> Option<Signal> {
        let info = self.fd.read_signal().ok().flatten()?;
        Signal::try_from(info.ssi_signo as i32).ok()
    }
}

impl AsFd for Interrupts {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for Interrupts {
    fn drop(&mut self) {
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&self.old_mask), None);
    }
}

/// `<tmp>/palisade-<run id>-vm-<random>`: the initramfs, QEMU's sockets and log. Its `run.json`
/// names us as its owner, so `palisade cleanup` removes it once we are dead, never before.
pub(super) struct WorkDir {
    path: PathBuf,
    removed: bool,
}

impl WorkDir {
    pub fn create() -> Result<WorkDir, VmError> {
        let tmp = std::env::temp_dir();
        // Made under a hidden name and renamed once its record is in: a cleanup running meanwhile
        // never sees a Palisade directory without an owner (which it would take for a dead run's).
        let staging = tempfile::Builder::new()
            .prefix(&format!(".{PREFIX}{}-vm-", new_run_id()))
            .tempdir_in(&tmp)
            .map_err(io("creating the VM's temp dir"))?
            .keep();
        let name = staging
            .file_name()
            .map(|n| n.to_string_lossy().trim_start_matches('.').to_owned())
            .unwrap_or_default();
        let path = tmp.join(&name);
        let placed = write_record(&staging, &name).and_then(|()| {
            rustix::fs::renameat_with(
                rustix::fs::CWD,
                &staging,
                rustix::fs::CWD,
                &path,
                rustix::fs::RenameFlags::NOREPLACE,
            )
            .map_err(std::io::Error::from)
        });
        match placed {
            Ok(()) => Ok(WorkDir {
                path,
                removed: false,
            }),
            Err(e) => {
                let _ = fs::remove_dir_all(&staging);
                Err(io(format!("creating {}", path.display()))(e))
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn remove(&mut self) -> std::io::Result<()> {
        self.removed = true;
        fs::remove_dir_all(&self.path)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.removed {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Lets `palisade cleanup` tell this live VM's directory from a dead run's leftovers.
fn write_record(dir: &Path, run_id: &str) -> std::io::Result<()> {
    let pid = std::process::id() as i32;
    let record = RunRecord {
        run_id: run_id.to_owned(),
        owner_pid: pid,
        owner_start: start_time(pid).unwrap_or(0),
        runtimes: Vec::new(),
        engines: Vec::new(),
    };
    let json = serde_json::to_string_pretty(&record).map_err(std::io::Error::other)?;
    fs::write(dir.join(RECORD_FILE), json)
}

/// util-linux `setpriv`, when it can give QEMU a parent-death signal: then QEMU dies with
/// `palisade vm`, even a SIGKILLed one, which no cleanup code of ours could handle.
pub(super) fn parent_death_wrapper() -> Option<PathBuf> {
    let setpriv = crate::exec::find_program("setpriv")?;
    let works = Command::new(&setpriv)
        .args(["--pdeathsig", "KILL", "--", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    works.then_some(setpriv)
}

/// A QEMU child that is killed and reaped however the attempt ends.
pub(super) struct Qemu {
    child: Child,
    pidfd: OwnedFd,
}

impl Qemu {
    pub fn spawn(mut command: Command) -> Result<Qemu, VmError> {
        let mut child = command.spawn().map_err(VmError::NoQemu)?;
        let pidfd = Pid::from_raw(child.id() as i32)
            .ok_or(rustix::io::Errno::SRCH)
            .and_then(|pid| pidfd_open(pid, PidfdFlags::empty()));
        match pidfd {
            Ok(pidfd) => Ok(Qemu { child, pidfd }),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(io("opening a pidfd on QEMU")(e.into()))
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Readable once QEMU has exited.
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// Kills QEMU and waits for it; `Err` with the signal if another one interrupts the wait.
    pub fn kill_and_reap(mut self, interrupts: &Interrupts) -> Result<(), Signal> {
        let _ = pidfd_send_signal(&self.pidfd, rustix::process::Signal::KILL);
        loop {
            let mut fds = [
                PollFd::new(self.pidfd.as_fd(), PollFlags::POLLIN),
                PollFd::new(interrupts.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
                Ok(_) => {}
            }
            if fds[0].revents().is_some_and(|r| !r.is_empty()) {
                break;
            }
            if let Some(signal) = interrupts.pending() {
                return Err(signal);
            }
        }
        let _ = self.child.wait();
        Ok(())
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = pidfd_send_signal(&self.pidfd, rustix::process::Signal::KILL);
        let _ = self.child.wait();
    }
}

/// `palisade vm` stopped by a signal, after killing QEMU and removing its work directory.
#[derive(Debug)]
pub struct Interruption {
    pub signal: Signal,
    /// What was going on: `booting the guest (tcg)`.
    pub during: String,
    /// The QEMU process that was killed.
    pub qemu: Option<u32>,
    /// The work directory, once removed.
    pub removed: Option<PathBuf>,
    /// What could not be removed, and why.
    pub left: Option<String>,
}

impl Interruption {
    pub fn new(signal: Signal, during: impl Into<String>, qemu: Option<u32>) -> Interruption {
        Interruption {
            signal,
            during: during.into(),
            qemu,
            removed: None,
            left: None,
        }
    }

    /// 128 + the signal, as a shell reports a process the signal killed.
    pub fn exit_code(&self) -> u8 {
        128u8.saturating_add(self.signal as i32 as u8)
    }
}

impl std::fmt::Display for Interruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} while {}", self.signal.as_str(), self.during)?;
        let mut done = Vec::new();
        if let Some(pid) = self.qemu {
            done.push(format!("killed QEMU (pid {pid})"));
        }
        if let Some(dir) = &self.removed {
            done.push(format!("removed {}", dir.display()));
        }
        if !done.is_empty() {
            write!(f, ": {}", done.join(", "))?;
        }
        if let Some(left) = &self.left {
            write!(f, "; {left}")?;
        }
        Ok(())
    }
}

/// A second signal while cleaning up after the first: stop at once. QEMU gets its parent-death
/// signal when we exit (without setpriv it may live on); what is left is a dead run's, which
/// `palisade cleanup` removes.
pub(super) fn abandon(second: Signal, dir: &Path, qemu_dies_with_us: bool) -> ! {
    let qemu = if qemu_dies_with_us {
        ""
    } else {
        "; QEMU may still run: kill it first"
    };
    eprintln!(
        "palisade: vm: {} during cleanup: exiting at once, leaving {}{qemu}; run `palisade cleanup` to remove it",
        second.as_str(),
        dir.display()
    );
    std::process::exit(128 + second as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interruption_names_the_signal_what_was_stopped_and_what_was_removed() {
        let mut i = Interruption::new(Signal::SIGINT, "booting the guest (tcg)", Some(42));
        i.removed = Some(PathBuf::from("/tmp/palisade-0a1b2c-vm-x"));
        assert_eq!(
            i.to_string(),
            "SIGINT while booting the guest (tcg): killed QEMU (pid 42), removed /tmp/palisade-0a1b2c-vm-x"
        );
        assert_eq!(i.exit_code(), 130);
        let mut t = Interruption::new(Signal::SIGTERM, "building the initramfs", None);
        t.left = Some("could not remove /tmp/x: busy; run `palisade cleanup`".into());
        assert_eq!(
            t.to_string(),
            "SIGTERM while building the initramfs; could not remove /tmp/x: busy; run `palisade cleanup`"
        );
        assert_eq!(t.exit_code(), 143);
    }

    #[test]
    fn the_work_dir_is_a_run_directory_owned_by_this_live_process() {
        let mut dir = WorkDir::create().expect("work dir");
        let name = dir
            .path()
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert!(crate::run::run_tag_of(&name).is_some(), "{name}");
        assert!(name.contains("-vm-"), "{name}");
        let record: RunRecord = serde_json::from_str(
            &fs::read_to_string(dir.path().join(RECORD_FILE)).expect("run.json"),
        )
        .expect("a RunRecord");
        assert_eq!(record.owner_pid, std::process::id() as i32);
        assert_eq!(start_time(record.owner_pid), Some(record.owner_start));
        let path = dir.path().to_owned();
        dir.remove().expect("removed");
        assert!(!path.exists());
    }
}
