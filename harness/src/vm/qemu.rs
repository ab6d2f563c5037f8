//! The host side of `palisade vm`: finds a kernel, builds the initramfs, boots QEMU (KVM when it
//! works, TCG otherwise), streams the guest's results, and throws everything away afterwards.

use std::fs::{self, File};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use rustix::process::{Pid, PidfdFlags, pidfd_open, pidfd_send_signal};

use super::initramfs::{self, InitramfsSpec};
use super::kernel::{extract_vmlinux, find_kernel, kernel_release};
use super::protocol::{CgroupLayout, GuestConfig};
use super::session::{End, KVM_PROBE, Session, Sources};
use crate::run::{PREFIX, RECORD_FILE, RunRecord, start_time};

/// How the guest's CPU is virtualised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// KVM if `/dev/kvm` boots the guest kernel, TCG otherwise.
    Auto,
    Kvm,
    Tcg,
}

impl std::str::FromStr for Accel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Accel::Auto),
            "kvm" => Ok(Accel::Kvm),
            "tcg" => Ok(Accel::Tcg),
            other => Err(format!("`{other}`: expected auto, kvm or tcg")),
        }
    }
}

/// Everything `palisade vm` was asked.
#[derive(Debug, Clone)]
pub struct VmOptions {
    pub kernel: Option<PathBuf>,
    pub cgroup: CgroupLayout,
    pub accel: Accel,
    pub memory_mib: u32,
    pub cpus: u32,
    /// The whole run, boot included; the guest is killed after it.
    pub timeout: Duration,
    /// Echo the guest's console and the init's messages.
    pub verbose: bool,
    /// Runtimes (names on PATH or paths) to copy into the guest; missing names are skipped.
    pub programs: Vec<String>,
    /// The `palisade` command line to run inside (`run pid::`).
    pub suite_args: Vec<String>,
    /// Where `palisade`, `palisade-probe` and `palisade-runtime` are.
    pub palisade_dir: PathBuf,
    /// Environment passed to the suite inside.
    pub env: Vec<(String, String)>,
}

/// How a run went.
#[derive(Debug, Clone)]
pub struct VmReport {
    /// The suite's exit code, or a Palisade code when the guest did not report one.
    pub exit_code: i32,
    /// Why the guest did not deliver an exit code (panic, hang, timeout, interrupt).
    pub failure: Option<String>,
    pub accel: &'static str,
    /// From starting QEMU to the init's first line.
    pub boot: Option<Duration>,
    /// From starting QEMU to the first scenario's verdict.
    pub first_result: Option<Duration>,
    /// From the start of `palisade vm` (initramfs included) to the guest's end.
    pub total: Duration,
    pub results: usize,
}

/// The exit code when the guest died, hung or was interrupted before reporting one.
pub const EXIT_GUEST_LOST: i32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("no guest kernel: {0}")]
    NoKernel(String),
    #[error("QEMU (`qemu-system-x86_64`) is not installed: {0}")]
    NoQemu(std::io::Error),
    #[error("building the initramfs: {0}")]
    Initramfs(#[from] initramfs::InitramfsError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("QEMU failed to start the guest ({accel}): {log}")]
    QemuFailed { accel: &'static str, log: String },
}

pub(super) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> VmError {
    let what = what.into();
    move |source| VmError::Io { what, source }
}

const QEMU: &str = "qemu-system-x86_64";

/// Boots the guest, runs the suite in it, prints its output live and returns how it went.
pub fn run_vm(opts: &VmOptions) -> Result<VmReport, VmError> {
    let started = Instant::now();
    Command::new(QEMU)
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .map_err(VmError::NoQemu)?;
    let kernel = find_kernel(opts.kernel.as_deref())?;
    let release = kernel_release(&kernel);

    let dir = tempfile::Builder::new()
        // A run tag of its own, so `palisade cleanup` finds what a killed `palisade vm` left.
        .prefix(&format!("{PREFIX}{}-vm-", crate::run::new_run_id()))
        .tempdir()
        .map_err(io("creating the VM's temp dir"))?;
    record_owner(dir.path());

    let mut programs = Vec::new();
    for name in &opts.programs {
        match crate::exec::find_program(name) {
            Some(path) => programs.push(path),
            None => println!("palisade: vm: `{name}` not found on this host, not in the guest"),
        }
    }
    let modules_dir = release
        .as_ref()
        .map(|r| Path::new("/lib/modules").join(r))
        .filter(|d| d.join("modules.dep").is_file());
    let initrd = dir.path().join("initramfs.cpio");
    let built = initramfs::build(
        &InitramfsSpec {
            palisade_dir: opts.palisade_dir.clone(),
            programs,
            modules_dir,
            config: GuestConfig {
                cgroup: opts.cgroup,
                modules: Vec::new(),
                args: opts.suite_args.clone(),
                env: opts.env.clone(),
            },
            staging: dir.path().to_owned(),
        },
        &initrd,
    )?;
    let boot_kernel = extract_vmlinux(&kernel, release.as_deref(), dir.path());
    println!(
        "palisade: vm: kernel {} ({}{}), initramfs {} MiB, {} modules{}, cgroup {}",
        kernel.display(),
        release.as_deref().unwrap_or("unknown release"),
        if boot_kernel.is_some() {
            ", booted uncompressed"
        } else {
            ""
        },
        built.bytes >> 20,
        built.modules.len(),
        if built.modules_missing.is_empty() {
            String::new()
        } else {
            format!(" (not available: {})", built.modules_missing.join(", "))
        },
        opts.cgroup
    );
    let boot_kernel = boot_kernel.unwrap_or(kernel);

    // Ctrl-C and friends end the guest and remove the temp dir instead of killing us midway.
    let mut signals = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        signals.add(s);
    }
    let mut old_mask = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&signals), Some(&mut old_mask))
        .map_err(|e| io("blocking signals")(e.into()))?;
    let signal_fd =
        SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC).map_err(|e| io("signalfd")(e.into()));

    let result = signal_fd.and_then(|signal_fd| {
        let kvm_usable = File::options()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_ok();
        let attempts: Vec<&'static str> = match opts.accel {
            Accel::Tcg => vec!["tcg"],
            Accel::Kvm => vec!["kvm"],
            Accel::Auto if kvm_usable => vec!["kvm", "tcg"],
            Accel::Auto => vec!["tcg"],
        };
        let mut last_error = None;
        for (i, accel) in attempts.iter().enumerate() {
            let fallback = i + 1 < attempts.len();
            let attempt = Attempt {
                opts,
                dir: dir.path(),
                kernel: &boot_kernel,
                initrd: &initrd,
                accel,
                probe_kvm: fallback,
                signal_fd: &signal_fd,
                started,
            };
            match attempt.run() {
                Ok(report) => return Ok(report),
                Err(AttemptError::KvmUnusable(why)) => {
                    println!(
                        "palisade: vm: KVM cannot boot this kernel ({why}); falling back to TCG"
                    );
                    last_error = Some(VmError::QemuFailed { accel, log: why });
                }
                Err(AttemptError::Fatal(e)) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| VmError::QemuFailed {
            accel: "none",
            log: "no accelerator to try".to_owned(),
        }))
    });
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old_mask), None);
    drop(dir);
    result
}

/// Lets `palisade cleanup` tell this live VM's temp dir from a dead run's leftovers.
fn record_owner(dir: &Path) {
    let pid = std::process::id() as i32;
    let record = RunRecord {
        run_id: dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        owner_pid: pid,
        owner_start: start_time(pid).unwrap_or(0),
        runtimes: Vec::new(),
    };
    if let Ok(json) = serde_json::to_string_pretty(&record) {
        let _ = fs::write(dir.join(RECORD_FILE), json);
    }
}

enum AttemptError {
    /// KVM started but the guest stayed silent, or QEMU refused KVM: try TCG.
    KvmUnusable(String),
    Fatal(VmError),
}

impl From<VmError> for AttemptError {
    fn from(e: VmError) -> Self {
        AttemptError::Fatal(e)
    }
}

struct Attempt<'a> {
    opts: &'a VmOptions,
    dir: &'a Path,
    kernel: &'a Path,
    initrd: &'a Path,
    accel: &'static str,
    /// Give up on this accelerator (rather than fail) when the guest is silent early on.
    probe_kvm: bool,
    signal_fd: &'a SignalFd,
    started: Instant,
}

/// A QEMU child that is killed and reaped however the attempt ends.
struct Qemu {
    child: Child,
    pidfd: std::os::fd::OwnedFd,
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = pidfd_send_signal(&self.pidfd, rustix::process::Signal::KILL);
        let _ = self.child.wait();
    }
}

impl Attempt<'_> {
    fn qemu_command(&self, console: &Path, results: &Path) -> Command {
        let mut append = String::from("console=ttyS0 earlyprintk=ttyS0 panic=-1 edd=off");
        if !self.opts.verbose {
            append.push_str(" quiet");
        }
        // Everything after `--` is the init's argv: /init is palisade, this makes it the init.
        append.push_str(" -- vm-init");
        let mut command = Command::new(QEMU);
        command
            .args(["-M", "q35", "-accel", self.accel])
            .args(["-m", &self.opts.memory_mib.to_string()])
            .args(["-smp", &self.opts.cpus.to_string()])
            .args(["-nodefaults", "-no-user-config", "-display", "none"])
            .args(["-no-reboot", "-nic", "none"])
            .arg("-kernel")
            .arg(self.kernel)
            .arg("-initrd")
            .arg(self.initrd)
            .args(["-append", &append])
            .arg("-chardev")
            .arg(format!("socket,id=console,path={}", console.display()))
            .args(["-serial", "chardev:console"])
            .arg("-chardev")
            .arg(format!("socket,id=results,path={}", results.display()))
            .args(["-serial", "chardev:results"]);
        command
    }

    fn run(&self) -> Result<VmReport, AttemptError> {
        let console_path = self.dir.join(format!("console-{}.sock", self.accel));
        let results_path = self.dir.join(format!("results-{}.sock", self.accel));
        let console_listener =
            UnixListener::bind(&console_path).map_err(io("binding the console socket"))?;
        let results_listener =
            UnixListener::bind(&results_path).map_err(io("binding the results socket"))?;
        let log_path = self.dir.join(format!("qemu-{}.log", self.accel));
        let log = File::create(&log_path).map_err(io("creating the QEMU log"))?;
        let log2 = log.try_clone().map_err(io("creating the QEMU log"))?;
        let launched = Instant::now();
        let child = self
            .qemu_command(&console_path, &results_path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            // Its own process group: Ctrl-C reaches us, and we end the guest.
            .process_group(0)
            .spawn()
            .map_err(VmError::NoQemu)?;
        let pid = Pid::from_raw(child.id() as i32);
        let pidfd = match pid.map(|p| pidfd_open(p, PidfdFlags::empty())) {
            Some(Ok(fd)) => fd,
            _ => {
                return Err(AttemptError::Fatal(VmError::QemuFailed {
                    accel: self.accel,
                    log: "cannot open a pidfd on QEMU".to_owned(),
                }));
            }
        };
        let qemu = Qemu { child, pidfd };
        let qemu_log = || {
            fs::read_to_string(&log_path)
                .unwrap_or_default()
                .trim()
                .to_owned()
        };

        // QEMU connects to both sockets while starting up, before the guest runs.
        let mut console = self.accept(&console_listener, &qemu, Duration::from_secs(20));
        let mut results = self.accept(&results_listener, &qemu, Duration::from_secs(20));
        let (Some(console), Some(results)) = (console.take(), results.take()) else {
            let log = qemu_log();
            return Err(if self.probe_kvm {
                AttemptError::KvmUnusable(log)
            } else {
                AttemptError::Fatal(VmError::QemuFailed {
                    accel: self.accel,
                    log,
                })
            });
        };
        println!(
            "palisade: vm: booting with {} ({} CPUs, {} MiB)",
            self.accel, self.opts.cpus, self.opts.memory_mib
        );

        let sources = Sources {
            console,
            results,
            signals: self.signal_fd,
            qemu: qemu.pidfd.as_fd(),
        };
        let deadline = self.started + self.opts.timeout;
        let mut session = Session::new(self.opts, sources, self.probe_kvm, launched, deadline);
        let end = session.run()?;
        let outcome = session.outcome(end);
        drop(qemu);
        if end == End::KvmSilent {
            return Err(AttemptError::KvmUnusable(format!(
                "no kernel output within {} s",
                KVM_PROBE.as_secs()
            )));
        }
        if let Some(why) = &outcome.failure {
            println!("palisade: vm: {why}; last console lines:");
            for line in &outcome.recent_console {
                println!("guest| {line}");
            }
            let log = qemu_log();
            if !log.is_empty() {
                println!("palisade: vm: qemu said: {log}");
            }
        }
        Ok(VmReport {
            exit_code: outcome.exit.unwrap_or(EXIT_GUEST_LOST),
            failure: outcome.failure,
            accel: self.accel,
            boot: outcome.booted,
            first_result: outcome.first_result,
            total: self.started.elapsed(),
            results: outcome.results_seen,
        })
    }

    /// Waits for QEMU to connect to `listener`; `None` if QEMU exits or takes too long.
    fn accept(
        &self,
        listener: &UnixListener,
        qemu: &Qemu,
        timeout: Duration,
    ) -> Option<UnixStream> {
        let mut fds = [
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(qemu.pidfd.as_fd(), PollFlags::POLLIN),
        ];
        let timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
        loop {
            match poll(&mut fds, timeout) {
                Err(nix::errno::Errno::EINTR) => continue,
                Ok(n) if n > 0 => break,
                _ => return None,
            }
        }
        if fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLIN))
        {
            return listener.accept().ok().map(|(s, _)| s);
        }
        None
    }
}
