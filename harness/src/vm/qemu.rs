//! The host side of `palisade vm`: finds a kernel, builds the initramfs, boots QEMU (KVM when it
//! works, TCG otherwise), streams the guest's results, and throws everything away afterwards.

use std::fs::{self, File};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;

pub use super::guard::Interruption;
use super::guard::{Interrupts, Qemu, WorkDir, abandon, parent_death_wrapper};
use super::initramfs::{self, InitramfsSpec};
use super::kernel::{extract_vmlinux, find_kernel, kernel_release};
use super::protocol::{CgroupLayout, GuestConfig};
use super::report::GuestReport;
use super::session::{End, KVM_PROBE, Session, Sources};

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
    /// The static `palisade` binary to run in the guest (its probe and bundled runtime too).
    pub palisade: PathBuf,
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
    /// The verdicts, from the suite's JSON report. `None`: the suite was not asked for one (`list`)
    /// or the guest did not get that far; `Err`: asked for, but none came, and why.
    pub report: Option<Result<GuestReport, String>>,
}

/// The exit code when the guest died or hung before reporting one.
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
    /// SIGINT, SIGTERM or SIGHUP: QEMU is killed and the work directory removed.
    #[error("{0}")]
    Interrupted(Interruption),
}

pub(super) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> VmError {
    let what = what.into();
    move |source| VmError::Io { what, source }
}

const QEMU: &str = "qemu-system-x86_64";

/// Boots the guest, runs the suite in it, prints its output live and returns how it went.
/// SIGINT, SIGTERM and SIGHUP end it early with [`VmError::Interrupted`], QEMU killed and the work
/// directory removed.
pub fn run_vm(opts: &VmOptions) -> Result<VmReport, VmError> {
    let started = Instant::now();
    Command::new(QEMU)
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .map_err(VmError::NoQemu)?;
    let kernel = find_kernel(opts.kernel.as_deref())?;
    let setpriv = parent_death_wrapper();
    if setpriv.is_none() {
        println!(
            "palisade: vm: note: util-linux `setpriv --pdeathsig` is not available: if palisade is killed (SIGKILL), QEMU outlives it"
        );
    }
    // From here on, Ctrl-C and friends end the guest and remove the work directory instead of
    // killing us midway.
    let interrupts = Interrupts::catch()?;
    let mut dir = WorkDir::create()?;
    let result = prepare(opts, &kernel, dir.path(), &interrupts).and_then(|guest| {
        boot(
            opts,
            &guest,
            dir.path(),
            &interrupts,
            setpriv.as_deref(),
            started,
        )
    });
    let Err(VmError::Interrupted(mut interruption)) = result else {
        return result;
    };
    if let Some(second) = interrupts.pending() {
        abandon(second, dir.path(), setpriv.is_some());
    }
    match dir.remove() {
        Ok(()) => interruption.removed = Some(dir.path().to_owned()),
        Err(e) => {
            interruption.left = Some(format!(
                "could not remove {}: {e}; run `palisade cleanup`",
                dir.path().display()
            ))
        }
    }
    Err(VmError::Interrupted(interruption))
}

/// What QEMU boots.
struct Guest {
    kernel: PathBuf,
    initrd: PathBuf,
}

/// Builds the initramfs in `dir`, and the uncompressed kernel when it can boot directly.
fn prepare(
    opts: &VmOptions,
    kernel: &Path,
    dir: &Path,
    interrupts: &Interrupts,
) -> Result<Guest, VmError> {
    let release = kernel_release(kernel);
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
    let initrd = dir.join("initramfs.cpio");
    let built = initramfs::build(
        &InitramfsSpec {
            palisade: opts.palisade.clone(),
            programs,
            modules_dir,
            config: GuestConfig {
                cgroup: opts.cgroup,
                modules: Vec::new(),
                args: opts.suite_args.clone(),
                env: opts.env.clone(),
            },
            staging: dir.to_owned(),
        },
        &initrd,
    );
    let boot_kernel = built
        .is_ok()
        .then(|| extract_vmlinux(kernel, release.as_deref(), dir))
        .flatten();
    // Ctrl-C also reaches the tools these steps run (ldd, objcopy, xz), in our process group:
    // what failed then failed because of the interruption.
    if let Some(signal) = interrupts.pending() {
        return Err(VmError::Interrupted(Interruption::new(
            signal,
            "building the initramfs",
            None,
        )));
    }
    let built = built?;
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
    Ok(Guest {
        kernel: boot_kernel.unwrap_or_else(|| kernel.to_owned()),
        initrd,
    })
}

/// Boots `guest` and watches it: KVM first when it may work, TCG otherwise.
fn boot(
    opts: &VmOptions,
    guest: &Guest,
    dir: &Path,
    interrupts: &Interrupts,
    setpriv: Option<&Path>,
    started: Instant,
) -> Result<VmReport, VmError> {
    let kvm_usable = File::options()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    let attempts: &[&'static str] = match opts.accel {
        Accel::Tcg => &["tcg"],
        Accel::Kvm => &["kvm"],
        Accel::Auto if kvm_usable => &["kvm", "tcg"],
        Accel::Auto => &["tcg"],
    };
    let mut last_error = None;
    for (i, accel) in attempts.iter().enumerate() {
        let attempt = Attempt {
            opts,
            dir,
            kernel: &guest.kernel,
            initrd: &guest.initrd,
            accel,
            probe_kvm: i + 1 < attempts.len(),
            interrupts,
            setpriv,
            started,
        };
        match attempt.run() {
            Ok(report) => return Ok(report),
            Err(AttemptError::KvmUnusable(why)) => {
                println!("palisade: vm: KVM cannot boot this kernel ({why}); falling back to TCG");
                last_error = Some(VmError::QemuFailed { accel, log: why });
            }
            Err(AttemptError::Fatal(e)) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| VmError::QemuFailed {
        accel: "none",
        log: "no accelerator to try".to_owned(),
    }))
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
    interrupts: &'a Interrupts,
    /// Runs QEMU with a parent-death signal.
    setpriv: Option<&'a Path>,
    started: Instant,
}

/// What waiting for QEMU to connect a socket gave.
enum Accepted {
    Stream(UnixStream),
    /// QEMU exited, or did not connect in time.
    Failed,
    Interrupted(Signal),
}

impl Attempt<'_> {
    fn qemu_command(&self, console: &Path, results: &Path) -> Command {
        let mut append = String::from("console=ttyS0 earlyprintk=ttyS0 panic=-1 edd=off");
        if !self.opts.verbose {
            append.push_str(" quiet");
        }
        // Everything after `--` is the init's argv: /init is palisade, this makes it the init.
        append.push_str(" -- vm-init");
        let mut command = match self.setpriv {
            Some(setpriv) => {
                let mut command = Command::new(setpriv);
                command.args(["--pdeathsig", "KILL", "--", QEMU]);
                command
            }
            None => Command::new(QEMU),
        };
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
            .args(["-serial", "chardev:results"])
            .stdin(Stdio::null())
            // Its own process group: Ctrl-C reaches us, and we end the guest.
            .process_group(0);
        command
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join(format!("qemu-{}.log", self.accel))
    }

    fn qemu_log(&self) -> String {
        fs::read_to_string(self.log_path())
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    fn run(&self) -> Result<VmReport, AttemptError> {
        let launched = Instant::now();
        let (qemu, console, results) = self.launch()?;
        println!(
            "palisade: vm: booting with {} ({} CPUs, {} MiB)",
            self.accel, self.opts.cpus, self.opts.memory_mib
        );
        let sources = Sources {
            console,
            results,
            signals: self.interrupts,
            qemu: qemu.pidfd(),
        };
        let deadline = self.started + self.opts.timeout;
        let mut session = Session::new(self.opts, sources, self.probe_kvm, launched, deadline);
        let end = session.run()?;
        let outcome = session.outcome(end);
        match end {
            End::Interrupted(signal) => {
                let during = format!("{} ({})", outcome.during, self.accel);
                Err(self.interrupted(qemu, signal, &during).into())
            }
            End::KvmSilent => Err(AttemptError::KvmUnusable(format!(
                "no kernel output within {} s",
                KVM_PROBE.as_secs()
            ))),
            End::Stopped | End::TimedOut => {
                drop(qemu);
                if let Some(why) = &outcome.failure {
                    println!("palisade: vm: {why}; last console lines:");
                    for line in &outcome.recent_console {
                        println!("guest| {line}");
                    }
                    let log = self.qemu_log();
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
                    report: outcome.report,
                })
            }
        }
    }

    /// Starts QEMU and waits until it has connected the console and the results channel (it
    /// does so while starting up, before the guest runs).
    fn launch(&self) -> Result<(Qemu, UnixStream, UnixStream), AttemptError> {
        let console_path = self.dir.join(format!("console-{}.sock", self.accel));
        let results_path = self.dir.join(format!("results-{}.sock", self.accel));
        let console_listener =
            UnixListener::bind(&console_path).map_err(io("binding the console socket"))?;
        let results_listener =
            UnixListener::bind(&results_path).map_err(io("binding the results socket"))?;
        let log = File::create(self.log_path()).map_err(io("creating the QEMU log"))?;
        let log2 = log.try_clone().map_err(io("creating the QEMU log"))?;
        let mut command = self.qemu_command(&console_path, &results_path);
        command.stdout(log).stderr(log2);
        let qemu = Qemu::spawn(command)?;
        let console = self.accept(&console_listener, &qemu, Duration::from_secs(20));
        let results = match console {
            Accepted::Stream(_) => self.accept(&results_listener, &qemu, Duration::from_secs(20)),
            _ => Accepted::Failed,
        };
        match (console, results) {
            (Accepted::Stream(console), Accepted::Stream(results)) => Ok((qemu, console, results)),
            (Accepted::Interrupted(signal), _) | (_, Accepted::Interrupted(signal)) => {
                let during = format!("starting QEMU ({})", self.accel);
                Err(self.interrupted(qemu, signal, &during).into())
            }
            _ => {
                drop(qemu);
                let log = self.qemu_log();
                Err(if self.probe_kvm {
                    AttemptError::KvmUnusable(log)
                } else {
                    AttemptError::Fatal(VmError::QemuFailed {
                        accel: self.accel,
                        log,
                    })
                })
            }
        }
    }

    /// Kills QEMU after `signal`; a second signal meanwhile gives up on the cleanup at once.
    fn interrupted(&self, qemu: Qemu, signal: Signal, during: &str) -> VmError {
        let pid = qemu.pid();
        if let Err(second) = qemu.kill_and_reap(self.interrupts) {
            abandon(second, self.dir, self.setpriv.is_some());
        }
        VmError::Interrupted(Interruption::new(signal, during, Some(pid)))
    }

    /// Waits for QEMU to connect to `listener`, watching for its exit and for signals.
    fn accept(&self, listener: &UnixListener, qemu: &Qemu, timeout: Duration) -> Accepted {
        let mut fds = [
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(qemu.pidfd(), PollFlags::POLLIN),
            PollFd::new(self.interrupts.as_fd(), PollFlags::POLLIN),
        ];
        let timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
        loop {
            match poll(&mut fds, timeout) {
                Err(nix::errno::Errno::EINTR) => continue,
                Ok(n) if n > 0 => break,
                _ => return Accepted::Failed,
            }
        }
        let ready = |i: usize| fds[i].revents().is_some_and(|r| !r.is_empty());
        if ready(2)
            && let Some(signal) = self.interrupts.pending()
        {
            return Accepted::Interrupted(signal);
        }
        if ready(0)
            && let Ok((stream, _)) = listener.accept()
        {
            return Accepted::Stream(stream);
        }
        Accepted::Failed
    }
}
