//! The host side of `palisade vm`: finds a kernel, builds the initramfs, boots QEMU (KVM when it
//! works, TCG otherwise), streams the guest's results, and throws everything away afterwards.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
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
use super::protocol::{CgroupLayout, GuestConfig, GuestEvent};
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

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> VmError {
    let what = what.into();
    move |source| VmError::Io { what, source }
}

const QEMU: &str = "qemu-system-x86_64";
/// A KVM guest prints the kernel banner well within this; silence means KVM cannot boot it.
const KVM_PROBE: Duration = Duration::from_secs(3);

/// The guest kernel: `explicit`, or the newest `/boot/vmlinuz-*`.
pub fn find_kernel(explicit: Option<&Path>) -> Result<PathBuf, VmError> {
    if let Some(path) = explicit {
        return if path.is_file() {
            Ok(path.to_owned())
        } else {
            Err(VmError::NoKernel(format!(
                "{} does not exist",
                path.display()
            )))
        };
    }
    let mut kernels: Vec<PathBuf> = fs::read_dir("/boot")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("vmlinuz-"))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    kernels.sort();
    kernels.pop().ok_or_else(|| {
        VmError::NoKernel(
            "no /boot/vmlinuz-*; install one (`apt-get install linux-image-amd64`) or pass --kernel"
                .to_owned(),
        )
    })
}

/// The kernel release from a bzImage's setup header (so `--kernel` may point anywhere), else from
/// a `vmlinuz-<release>` file name.
pub fn kernel_release(kernel: &Path) -> Option<String> {
    let mut head = vec![0u8; 0x4000];
    let n = File::open(kernel)
        .and_then(|mut f| f.read(&mut head))
        .ok()?;
    head.truncate(n);
    let from_header = (|| {
        if head.get(0x202..0x206)? != b"HdrS" {
            return None;
        }
        let offset = u16::from_le_bytes([*head.get(0x20e)?, *head.get(0x20f)?]) as usize + 0x200;
        let text = head.get(offset..)?;
        let end = text.iter().position(|&b| b == 0 || b == b' ')?;
        String::from_utf8(text[..end].to_vec()).ok()
    })();
    from_header.or_else(|| {
        kernel
            .file_name()?
            .to_string_lossy()
            .strip_prefix("vmlinuz-")
            .map(str::to_owned)
    })
}

/// Extracts the uncompressed ELF kernel from a bzImage, when the kernel can boot it directly (PVH):
/// TCG then skips the emulated decompression, which takes as long as the rest of the boot.
fn extract_vmlinux(kernel: &Path, release: Option<&str>, dir: &Path) -> Option<PathBuf> {
    let config = kernel.parent()?.join(format!("config-{}", release?));
    if !fs::read_to_string(config).ok()?.contains("CONFIG_PVH=y") {
        return None;
    }
    let image = fs::read(kernel).ok()?;
    let formats: [(&[u8], &str); 3] = [
        (b"\xfd7zXZ\x00", "xz"),
        (b"\x28\xb5\x2f\xfd", "zstd"),
        (b"\x1f\x8b\x08\x00", "gzip"),
    ];
    let (start, tool) = formats.iter().find_map(|(magic, tool)| {
        let at = image.windows(magic.len()).position(|w| w == *magic)?;
        Some((at, *tool))
    })?;
    let out = dir.join("vmlinux");
    let file = File::create(&out).ok()?;
    let mut child = Command::new(tool)
        .args(["-dc", "-q"])
        .stdin(Stdio::piped())
        .stdout(file)
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    if let Some(mut stdin) = child.stdin.take() {
        // The payload is followed by the rest of the image: the tool stops at its stream's end and
        // complains about the trailer, so its exit status says nothing; the ELF header does.
        let _ = stdin.write_all(&image[start..]);
    }
    let _ = child.wait();
    let mut magic = [0u8; 4];
    File::open(&out).ok()?.read_exact(&mut magic).ok()?;
    (&magic == b"\x7fELF").then_some(out)
}

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

/// Accumulates bytes into lines.
#[derive(Default)]
struct Lines(Vec<u8>);

impl Lines {
    fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.0.extend_from_slice(bytes);
        let mut lines = Vec::new();
        while let Some(at) = self.0.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.0.drain(..=at).collect();
            lines.push(
                String::from_utf8_lossy(&line)
                    .trim_end_matches(['\r', '\n'])
                    .to_owned(),
            );
        }
        lines
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
        let (Some(mut console), Some(mut results)) = (console.take(), results.take()) else {
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

        let deadline = self.started + self.opts.timeout;
        let mut console_lines = Lines::default();
        let mut result_lines = Lines::default();
        let mut recent_console: std::collections::VecDeque<String> = Default::default();
        let mut kernel_spoke = false;
        let mut booted = None;
        let mut first_result = None;
        let mut results_seen = 0;
        let mut exit: Option<i32> = None;
        let mut exit_seen_at = None;
        let mut failure = None;
        let (mut console_open, mut results_open, mut qemu_alive) = (true, true, true);
        let mut buf = vec![0u8; 64 * 1024];

        loop {
            let now = Instant::now();
            // The soonest moment something must happen without any event.
            let mut wake = deadline;
            if self.probe_kvm && !kernel_spoke {
                wake = wake.min(launched + KVM_PROBE);
            }
            if let Some(at) = exit_seen_at {
                // The guest said it is done; it powers off right after.
                wake = wake.min(at + Duration::from_secs(10));
            }
            if !qemu_alive && !console_open && !results_open {
                break;
            }
            if !qemu_alive && exit_seen_at.is_none() && exit.is_none() {
                // Drain what is left, then stop: read() returns 0 at end of stream.
                wake = wake.min(now + Duration::from_secs(1));
            }
            if now >= wake {
                if self.probe_kvm && !kernel_spoke && now >= launched + KVM_PROBE {
                    return Err(AttemptError::KvmUnusable(format!(
                        "no kernel output within {} s",
                        KVM_PROBE.as_secs()
                    )));
                }
                if now >= deadline {
                    failure = Some(format!(
                        "the guest did not finish within {} s and was killed",
                        self.opts.timeout.as_secs()
                    ));
                }
                break;
            }
            let timeout = PollTimeout::try_from(wake - now).unwrap_or(PollTimeout::MAX);
            let mut fds = Vec::with_capacity(4);
            let mut kinds = Vec::with_capacity(4);
            fn push<'f>(fds: &mut Vec<PollFd<'f>>, kinds: &mut Vec<u8>, fd: BorrowedFd<'f>, k: u8) {
                fds.push(PollFd::new(fd, PollFlags::POLLIN));
                kinds.push(k);
            }
            let (c, r) = (console.as_fd(), results.as_fd());
            if console_open {
                push(&mut fds, &mut kinds, c, b'c');
            }
            if results_open {
                push(&mut fds, &mut kinds, r, b'r');
            }
            push(&mut fds, &mut kinds, self.signal_fd.as_fd(), b's');
            if qemu_alive {
                push(&mut fds, &mut kinds, qemu.pidfd.as_fd(), b'q');
            }
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(io("poll")(e.into()).into()),
            }
            let ready: Vec<u8> = fds
                .iter()
                .zip(&kinds)
                .filter(|(fd, _)| fd.revents().is_some_and(|r| !r.is_empty()))
                .map(|(_, k)| *k)
                .collect();
            drop(fds);
            for kind in ready {
                match kind {
                    b'c' => match console.read(&mut buf) {
                        Ok(0) | Err(_) => console_open = false,
                        Ok(n) => {
                            for line in console_lines.push(&buf[..n]) {
                                if line.contains("Linux version") || line.starts_with('[') {
                                    kernel_spoke = true;
                                }
                                if self.opts.verbose {
                                    println!("guest| {line}");
                                }
                                recent_console.push_back(line);
                                if recent_console.len() > 40 {
                                    recent_console.pop_front();
                                }
                            }
                        }
                    },
                    b'r' => match results.read(&mut buf) {
                        Ok(0) | Err(_) => results_open = false,
                        Ok(n) => {
                            for line in result_lines.push(&buf[..n]) {
                                let Some(event) = GuestEvent::from_line(&line) else {
                                    if self.opts.verbose {
                                        println!("guest? {line}");
                                    }
                                    continue;
                                };
                                match event {
                                    GuestEvent::Booted { uptime, kernel } => {
                                        kernel_spoke = true;
                                        booted = Some(launched.elapsed());
                                        println!(
                                            "palisade: vm: guest init up after {:.1} s (guest kernel {kernel}, {uptime:.1} s since it started)",
                                            launched.elapsed().as_secs_f64()
                                        );
                                    }
                                    GuestEvent::Log { message } => {
                                        if self.opts.verbose {
                                            println!("palisade: vm: guest: {message}");
                                        }
                                    }
                                    GuestEvent::Out { line } => println!("{line}"),
                                    GuestEvent::Result(_) => {
                                        results_seen += 1;
                                        first_result.get_or_insert_with(|| launched.elapsed());
                                    }
                                    GuestEvent::Exit { code, error } => {
                                        if let Some(error) = error {
                                            println!(
                                                "palisade: vm: the guest could not run the suite: {error}"
                                            );
                                        }
                                        exit = Some(code);
                                        exit_seen_at = Some(Instant::now());
                                    }
                                }
                            }
                        }
                    },
                    b's' => {
                        let signal = self
                            .signal_fd
                            .read_signal()
                            .ok()
                            .flatten()
                            .map(|s| s.ssi_signo)
                            .unwrap_or(0);
                        failure = Some(format!("interrupted by signal {signal}; guest killed"));
                        exit = None;
                        break;
                    }
                    b'q' => qemu_alive = false,
                    _ => {}
                }
            }
            if failure.is_some() {
                break;
            }
            let _ = std::io::stdout().flush();
        }
        drop(qemu);

        if exit.is_none() && failure.is_none() {
            failure = Some(
                if recent_console.iter().any(|l| l.contains("Kernel panic")) {
                    "the guest kernel panicked".to_owned()
                } else {
                    "the guest stopped without reporting the suite's exit code".to_owned()
                },
            );
        }
        if let Some(why) = &failure
            && exit.is_none()
        {
            println!("palisade: vm: {why}; last console lines:");
            for line in &recent_console {
                println!("guest| {line}");
            }
            let log = qemu_log();
            if !log.is_empty() {
                println!("palisade: vm: qemu said: {log}");
            }
        }
        Ok(VmReport {
            exit_code: exit.unwrap_or(EXIT_GUEST_LOST),
            failure: if exit.is_some() { None } else { failure },
            accel: self.accel,
            boot: booted,
            first_result,
            total: self.started.elapsed(),
            results: results_seen,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_across_reads() {
        let mut lines = Lines::default();
        assert!(lines.push(b"PALISADE {\"a\"").is_empty());
        assert_eq!(lines.push(b"}\r\nnext\n"), ["PALISADE {\"a\"}", "next"]);
    }

    #[test]
    fn installed_kernels_name_their_release() {
        let Ok(kernel) = find_kernel(None) else {
            eprintln!("skipped: no /boot/vmlinuz-* on this host");
            return;
        };
        let release = kernel_release(&kernel).expect("a bzImage names its release");
        assert!(
            kernel.to_string_lossy().ends_with(&release),
            "{} vs {release}",
            kernel.display()
        );
    }
}
