//! `palisade vm` end to end: a small filter in a throwaway cgroup v2 guest, a run that must fail
//! inside and say so through the exit code, and the guest's JSON report written on the host; then
//! stopping it: SIGINT or SIGTERM while booting or running leaves no QEMU and no work directory
//! (exit 130/143), and a SIGKILLed `palisade vm` leaves no QEMU and a directory `palisade cleanup`
//! removes. Ignored, with the reason, where QEMU or a readable guest kernel is missing.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use palisade_common::testkit::{self, Skip, Test, TestResult};
use palisade_harness::run::{RECORD_FILE, RunRecord};
use palisade_harness::vm::cpio::CpioWriter;
use palisade_harness::vm::kernel::{find_kernel, kernel_release};

fn main() -> ExitCode {
    testkit::main(&[
        Test::new(
            "a_scenario_passes_in_a_cgroup_v2_guest_and_a_broken_runtime_fails",
            a_scenario_passes_in_a_cgroup_v2_guest_and_a_broken_runtime_fails,
        ),
        Test::new(
            "sigint_while_booting_exits_130_leaving_nothing",
            sigint_while_booting_exits_130_leaving_nothing,
        ),
        Test::new(
            "sigint_while_running_exits_130_leaving_nothing",
            sigint_while_running_exits_130_leaving_nothing,
        ),
        Test::new(
            "sigterm_exits_143_leaving_nothing",
            sigterm_exits_143_leaving_nothing,
        ),
        // Runs `palisade cleanup`, which is machine-wide.
        Test::serial(
            "a_sigkilled_vm_leaves_no_qemu_and_cleanup_removes_its_dir",
            a_sigkilled_vm_leaves_no_qemu_and_cleanup_removes_its_dir,
        ),
        Test::new(
            "installed_kernels_name_their_release",
            installed_kernels_name_their_release,
        ),
        Test::new("gnu_cpio_lists_our_archive", gnu_cpio_lists_our_archive),
    ])
}

/// How long any one step may take (a TCG boot under a loaded machine included).
const STEP: Duration = Duration::from_secs(180);

/// QEMU and a guest kernel this process can read.
fn require_vm() -> TestResult {
    testkit::require_program("qemu-system-x86_64")?;
    require_kernel().map(drop)
}

/// The newest `/boot/vmlinuz-*`, when this process can read it (Debian's are often root-only).
fn require_kernel() -> Result<PathBuf, Skip> {
    let kernel = find_kernel(None).map_err(|e| Skip(e.to_string()))?;
    fs::File::open(&kernel).map_err(|e| Skip(format!("cannot read {}: {e}", kernel.display())))?;
    Ok(kernel)
}

fn palisade() -> &'static str {
    env!("CARGO_BIN_EXE_palisade")
}

fn palisade_vm(args: &[&str]) -> (i32, String) {
    let out = Command::new(palisade())
        .arg("vm")
        .args(args)
        .output()
        .expect("palisade runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn a_scenario_passes_in_a_cgroup_v2_guest_and_a_broken_runtime_fails() -> TestResult {
    require_vm()?;
    let dir = tempfile::tempdir().expect("tempdir");
    let report = dir.path().join("guest.json");
    let report_arg = format!("json={}", report.display());
    let (code, text) = palisade_vm(&[
        "--cgroup",
        "v2",
        "--with",
        "runc",
        "--report",
        &report_arg,
        "--",
        "run",
        "--runtime",
        "runc",
        "--exact",
        "pid::init_is_pid_1",
    ]);
    println!("{text}");
    assert_eq!(code, 0, "the guest run must pass");
    assert!(
        text.contains("test [runc] pid::init_is_pid_1"),
        "no result line"
    );
    assert!(text.contains("boot to first scenario"), "no timing line");
    assert!(
        text.contains("cgroup v2") && text.contains("1 passed, 0 failed, 0 skipped"),
        "the counts come from the guest's JSON report"
    );
    assert!(
        !text.contains("/run/palisade-vm-report.json"),
        "the guest's report path means nothing on the host"
    );
    let json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&report).expect("the report is written"))
            .expect("the report is JSON");
    assert_eq!(json["host"]["cgroup_mode"], "v2", "{json}");
    assert_eq!(json["host"]["in_vm"], true, "{json}");
    assert_eq!(json["runtimes"][0]["label"], "runc", "{json}");
    assert_eq!(
        json["runtimes"][0]["trials"][0]["name"], "pid::init_is_pid_1",
        "{json}"
    );
    assert_eq!(
        json["runtimes"][0]["trials"][0]["verdict"], "pass",
        "{json}"
    );

    // A runtime that does not exist: the suite fails inside, and the exit code says so outside.
    let (code, text) = palisade_vm(&[
        "--accel",
        "tcg",
        "--with",
        "",
        "--",
        "run",
        "--runtime",
        "/nonexistent",
        "pid::init_is_pid_1",
    ]);
    println!("{text}");
    assert_ne!(code, 0, "a failing suite inside must fail `palisade vm`");
    assert_ne!(code, 3, "the guest must report the suite's own exit code");
    assert!(
        text.contains("palisade: vm: the guest sent no JSON report"),
        "the suite stopped before writing its report, and `palisade vm` says so"
    );
    Ok(())
}

/// A `palisade vm` running in the background, its output collected line by line.
struct Vm {
    child: Child,
    lines: Receiver<String>,
    output: Arc<Mutex<String>>,
    /// The threads collecting stdout and stderr: done once palisade has exited.
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Vm {
    /// A short TCG run of the bundled runtime's `pid::` scenarios (several seconds of suite).
    fn start() -> Vm {
        let mut child = Command::new(palisade())
            .args(["vm", "--accel", "tcg", "--with", "", "--", "run", "pid::"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("palisade runs");
        let output = Arc::new(Mutex::new(String::new()));
        let (send, lines) = channel();
        let stdout = child.stdout.take().expect("stdout");
        let collected = output.clone();
        let out_reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(mut all) = collected.lock() {
                    all.push_str(&line);
                    all.push('\n');
                }
                let _ = send.send(line);
            }
        });
        let mut stderr = child.stderr.take().expect("stderr");
        let collected = output.clone();
        let err_reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            if let Ok(mut all) = collected.lock() {
                all.push_str(&text);
            }
        });
        Vm {
            child,
            lines,
            output,
            readers: vec![out_reader, err_reader],
        }
    }

    fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }

    fn output(&self) -> String {
        self.output.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// Waits until palisade prints a line containing `needle`.
    fn wait_for(&self, needle: &str) {
        let deadline = Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no `{needle}` within {STEP:?}:\n{}", self.output())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("palisade ended before `{needle}`:\n{}", self.output())
                }
            }
        }
    }

    /// The work directory this `palisade vm` recorded itself as the owner of.
    fn work_dir(&self) -> PathBuf {
        let pid = self.child.id() as i32;
        fs::read_dir(std::env::temp_dir())
            .expect("the temp dir")
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().contains("-vm-"))
            .find(|p| {
                fs::read_to_string(p.join(RECORD_FILE))
                    .ok()
                    .and_then(|t| serde_json::from_str::<RunRecord>(&t).ok())
                    .is_some_and(|r| r.owner_pid == pid)
            })
            .unwrap_or_else(|| panic!("no work dir owned by {pid}:\n{}", self.output()))
    }

    /// Sends `signal` and waits for palisade to end (within a step).
    fn stop(&mut self, signal: Signal) -> std::process::ExitStatus {
        kill(self.pid(), signal).expect("signal palisade");
        let pidfd = rustix::process::pidfd_open(
            rustix::process::Pid::from_child(&self.child),
            rustix::process::PidfdFlags::empty(),
        )
        .expect("pidfd");
        assert!(
            exits_within(&pidfd, STEP),
            "palisade did not stop after {signal}:\n{}",
            self.output()
        );
        let status = self.child.wait().expect("wait");
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        status
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        // A failed assertion must not leave a guest running: SIGTERM makes palisade remove its
        // work directory; SIGKILL, if that does not end it, still takes QEMU along.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = kill(self.pid(), Signal::SIGTERM);
            let ended = rustix::process::pidfd_open(
                rustix::process::Pid::from_child(&self.child),
                rustix::process::PidfdFlags::empty(),
            )
            .is_ok_and(|pidfd| exits_within(&pidfd, Duration::from_secs(30)));
            if !ended {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
    }
}

/// Whether the process behind `pidfd` exits within `timeout`.
fn exits_within(pidfd: &std::os::fd::OwnedFd, timeout: Duration) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
        let timespec = Timespec::try_from(left).expect("timespec");
        match poll(&mut fds, Some(&timespec)) {
            Ok(0) => return false,
            Ok(_) => return true,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => panic!("poll: {e}"),
        }
    }
}

/// QEMU processes whose command line names `dir` (their sockets and initramfs live there).
fn qemus_of(dir: &Path) -> Vec<i32> {
    let dir = dir.to_string_lossy().into_owned();
    procfs::process::all_processes()
        .expect("/proc")
        .filter_map(|p| p.ok())
        .filter(|p| {
            p.cmdline()
                .is_ok_and(|args| args.iter().any(|a| a.contains(&dir)))
        })
        .map(|p| p.pid)
        .collect()
}

/// A signal during the guest's boot or its suite: exit 128+signal, one line saying what was
/// interrupted and what was removed, no QEMU and no work directory left.
fn interrupt(signal: Signal, when: &str, phase: &str) -> TestResult {
    require_vm()?;
    let mut vm = Vm::start();
    vm.wait_for(when);
    let dir = vm.work_dir();
    let qemus = qemus_of(&dir);
    assert!(!qemus.is_empty(), "no QEMU runs for {}", dir.display());
    let status = vm.stop(signal);
    let output = vm.output();
    println!("{output}");
    assert_eq!(
        status.code(),
        Some(128 + signal as i32),
        "exit status {status:?}"
    );
    let line = format!(
        "palisade: vm: {} while {phase} (tcg): killed QEMU",
        signal.as_str()
    );
    assert!(output.contains(&line), "no `{line}` line");
    assert!(
        output.contains(&format!("removed {}", dir.display())),
        "the line names the removed directory"
    );
    assert!(!dir.exists(), "{} is left", dir.display());
    assert_eq!(qemus_of(&dir), Vec::<i32>::new(), "QEMU is left");
    Ok(())
}

fn sigint_while_booting_exits_130_leaving_nothing() -> TestResult {
    interrupt(Signal::SIGINT, "booting with tcg", "booting the guest")
}

fn sigint_while_running_exits_130_leaving_nothing() -> TestResult {
    interrupt(
        Signal::SIGINT,
        "running 5 tests",
        "running the suite in the guest",
    )
}

fn sigterm_exits_143_leaving_nothing() -> TestResult {
    interrupt(Signal::SIGTERM, "booting with tcg", "booting the guest")
}

fn a_sigkilled_vm_leaves_no_qemu_and_cleanup_removes_its_dir() -> TestResult {
    require_vm()?;
    let mut vm = Vm::start();
    vm.wait_for("booting with tcg");
    let dir = vm.work_dir();
    let qemus: Vec<_> = qemus_of(&dir)
        .into_iter()
        .filter_map(|pid| {
            let pid = rustix::process::Pid::from_raw(pid)?;
            rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
        })
        .collect();
    assert!(!qemus.is_empty(), "no QEMU runs for {}", dir.display());
    let status = vm.stop(Signal::SIGKILL);
    assert_eq!(status.signal(), Some(Signal::SIGKILL as i32));
    for qemu in &qemus {
        assert!(
            exits_within(qemu, Duration::from_secs(30)),
            "QEMU outlived the SIGKILLed palisade vm"
        );
    }
    assert!(
        dir.exists(),
        "a SIGKILLed palisade vm cannot remove its own directory"
    );

    let cleanup = Command::new(palisade())
        .arg("cleanup")
        .output()
        .expect("cleanup runs");
    let said = String::from_utf8_lossy(&cleanup.stdout);
    assert!(
        cleanup.status.success(),
        "cleanup: {said}{}",
        String::from_utf8_lossy(&cleanup.stderr)
    );
    assert!(!dir.exists(), "{} is still there", dir.display());
    assert!(
        said.contains(&format!("removed directory {}", dir.display())),
        "{said}"
    );
    Ok(())
}

/// The release read from a real bzImage's setup header matches its `vmlinuz-<release>` name.
fn installed_kernels_name_their_release() -> TestResult {
    let kernel = require_kernel()?;
    let release = kernel_release(&kernel).expect("a bzImage names its release");
    assert!(
        kernel.to_string_lossy().ends_with(&release),
        "{} vs {release}",
        kernel.display()
    );
    Ok(())
}

/// The system's `cpio` reads back what our writer wrote.
fn gnu_cpio_lists_our_archive() -> TestResult {
    let cpio = testkit::require_program("cpio")?;
    let mut writer = CpioWriter::new(Vec::new());
    writer.dir("/bin", 0o755).expect("dir");
    writer
        .file("/bin/hello", 0o755, &mut &b"hello\n"[..], 6)
        .expect("file");
    writer.symlink("/init", "bin/hello").expect("symlink");
    let bytes = writer.finish().expect("finish");
    let mut child = Command::new(cpio)
        .args(["-it", "--quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cpio starts");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&bytes).expect("write");
    }
    let out = child.wait_with_output().expect("cpio runs");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "bin\nbin/hello\ninit\n"
    );
    Ok(())
}
