//! Integration tests of the `palisade-runtime` binary.
//!
//! The binary is built by the palisade-suites package: `cargo build -p palisade-suites --bin
//! palisade-runtime` (or point PALISADE_RUNTIME_BIN at one). Tests that need root, or
//! /bin/busybox for the rootfs, are reported as ignored, with the reason, when those are missing.
//! Config validation that needs neither is unit-tested in the runtime (`spec::tests`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, ExitCode, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use assert_cmd::Command;
use assert_cmd::assert::OutputAssertExt;
use palisade_common::testkit::{self, Test, TestResult, require, require_root};
use predicates::str::contains;
use serde_json::{Value, json};
use tempfile::TempDir;

fn main() -> ExitCode {
    testkit::main(&[
        Test::new("version", version),
        Test::new(
            "unsupported_runc_flags_are_refused",
            unsupported_runc_flags_are_refused,
        ),
        Test::new(
            "missing_executable_fails_create_and_cleans_up",
            missing_executable_fails_create_and_cleans_up,
        ),
        Test::new("id_in_use_is_rejected", id_in_use_is_rejected),
        Test::new(
            "start_on_stopped_container_is_rejected",
            start_on_stopped_container_is_rejected,
        ),
        Test::new("lifecycle_with_stdout_pipe", lifecycle_with_stdout_pipe),
        Test::new("kill_and_force_delete", kill_and_force_delete),
        Test::new(
            "run_exits_with_container_exit_code",
            run_exits_with_container_exit_code,
        ),
    ])
}

fn runtime_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PALISADE_RUNTIME_BIN") {
        return PathBuf::from(p);
    }
    // <target>/<triple>/debug/deps/cli-<hash> → <target>/<triple>/debug/palisade-runtime
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in <target>/debug/deps");
    let bin = dir.join("palisade-runtime");
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build -p palisade-suites --bin palisade-runtime` \
         (or set PALISADE_RUNTIME_BIN)",
        bin.display()
    );
    bin
}

/// Skips unless the test can create containers here.
fn can_run_containers() -> TestResult {
    require_root()?;
    require(
        Path::new("/bin/busybox").exists(),
        "/bin/busybox (static) is needed for the test rootfs",
    )
}

/// A unique name per test invocation (several tests run in parallel).
fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

struct Fixture {
    _dir: TempDir,
    root: PathBuf,
    bundle: PathBuf,
    cgroup: String,
}

impl Fixture {
    fn new(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("state");
        let bundle = dir.path().join("bundle");
        let bin = bundle.join("rootfs/bin");
        std::fs::create_dir_all(&bin).expect("mkdir rootfs");
        std::fs::copy("/bin/busybox", bin.join("busybox")).expect("copy busybox");
        for l in ["sh", "true", "hostname", "cat", "sleep", "ls", "echo"] {
            std::os::unix::fs::symlink("busybox", bin.join(l)).expect("symlink");
        }
        let cgroup = format!("/{}", unique("palisade-rt-test"));
        let f = Self {
            _dir: dir,
            root,
            bundle,
            cgroup,
        };
        f.write_config(&f.config(args));
        f
    }

    /// A config like `runc spec`'s, without a terminal.
    fn config(&self, args: &[&str]) -> Value {
        json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": args,
                "env": ["PATH=/bin", "TERM=xterm"],
                "cwd": "/",
                "capabilities": {
                    "bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]
                },
                "noNewPrivileges": true
            },
            "root": {"path": "rootfs", "readonly": true},
            "hostname": "palisade-test",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                 "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                 "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs",
                 "options": ["nosuid", "noexec", "nodev", "ro"]}
            ],
            "linux": {
                "cgroupsPath": self.cgroup,
                "resources": {"pids": {"limit": 64}},
                "namespaces": [
                    {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
                    {"type": "network"}
                ],
                "maskedPaths": ["/proc/kcore"],
                "readonlyPaths": ["/proc/sys"]
            }
        })
    }

    fn write_config(&self, config: &Value) {
        std::fs::write(self.bundle.join("config.json"), config.to_string()).expect("write config");
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(runtime_bin());
        c.arg("--root").arg(&self.root);
        c.timeout(Duration::from_secs(30));
        c
    }

    /// `create` with stdout/stderr not on pipes: a successful create leaves its stdio with the
    /// container, so reading a pipe to EOF would wait for the container to exit.
    fn create(&self, id: &str) -> assert_cmd::assert::Assert {
        let err_path = self.root.with_file_name(format!("{id}.stderr"));
        let err_file = std::fs::File::create(&err_path).expect("stderr file");
        let status = StdCommand::new(runtime_bin())
            .arg("--root")
            .arg(&self.root)
            .args(["create", "--bundle"])
            .arg(&self.bundle)
            .arg(id)
            .stdout(Stdio::null())
            .stderr(err_file)
            .status()
            .expect("run create");
        let stderr = std::fs::read(&err_path).expect("read stderr");
        std::process::Output {
            status,
            stdout: Vec::new(),
            stderr,
        }
        .assert()
    }

    fn status(&self, id: &str) -> String {
        let out = self.cmd().args(["state", id]).output().expect("state");
        assert!(out.status.success(), "state failed: {out:?}");
        let v: Value = serde_json::from_slice(&out.stdout).expect("state is JSON");
        v["status"].as_str().unwrap_or_default().to_owned()
    }

    /// Waits (pidfd, no polling) for the container's init to exit, then checks `state` says so.
    fn wait_stopped(&self, id: &str) {
        let out = self.cmd().args(["state", id]).output().expect("state");
        let v: Value = serde_json::from_slice(&out.stdout).expect("state is JSON");
        let pid = v["pid"]
            .as_i64()
            .and_then(|p| rustix::process::Pid::from_raw(p as i32));
        // No pid, or no such process any more: it has already exited.
        if let Some(pid) = pid
            && let Ok(fd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
        {
            let mut fds = [rustix::event::PollFd::new(
                &fd,
                rustix::event::PollFlags::IN,
            )];
            let ten_s = rustix::event::Timespec {
                tv_sec: 10,
                tv_nsec: 0,
            };
            let ready = rustix::event::poll(&mut fds, Some(&ten_s)).expect("poll the pidfd");
            assert_eq!(ready, 1, "{id}'s init did not exit within 10 s");
        }
        assert_eq!(self.status(id), "stopped");
    }

    /// Asserts that neither state nor any cgroup directory of the container remains.
    fn assert_nothing_left(&self, id: &str) {
        assert!(
            !self.root.join(id).exists(),
            "state dir of {id} left behind"
        );
        for entry in std::fs::read_dir("/sys/fs/cgroup")
            .expect("read /sys/fs/cgroup")
            .flatten()
        {
            let dir = entry.path().join(self.cgroup.trim_start_matches('/'));
            assert!(!dir.exists(), "cgroup {} left behind", dir.display());
        }
        let v2 = Path::new("/sys/fs/cgroup").join(self.cgroup.trim_start_matches('/'));
        assert!(!v2.exists(), "cgroup {} left behind", v2.display());
    }
}

fn version() -> TestResult {
    Command::new(runtime_bin())
        .arg("--version")
        .assert()
        .success()
        .stdout(contains("palisade-runtime version"))
        .stdout(contains("spec: 1.0.2"));
    Ok(())
}

fn unsupported_runc_flags_are_refused() -> TestResult {
    let root = tempfile::tempdir().expect("tempdir");
    Command::new(runtime_bin())
        .arg("--root")
        .arg(root.path())
        .args(["--systemd-cgroup", "create", "x"])
        .assert()
        .failure()
        .stderr(contains(
            "palisade-runtime: error: --systemd-cgroup is not supported",
        ));
    Command::new(runtime_bin())
        .arg("--root")
        .arg(root.path())
        .args(["create", "--console-socket", "/tmp/sock", "x"])
        .assert()
        .failure()
        .stderr(contains("--console-socket is not supported"));
    Ok(())
}

fn missing_executable_fails_create_and_cleans_up() -> TestResult {
    can_run_containers()?;
    let f = Fixture::new(&["no-such-binary"]);
    let id = unique("noexe");
    f.create(&id)
        .failure()
        .stderr(contains("\"no-such-binary\": executable file not found"));
    f.assert_nothing_left(&id);
    Ok(())
}

fn id_in_use_is_rejected() -> TestResult {
    can_run_containers()?;
    let f = Fixture::new(&["sleep", "100"]);
    let id = unique("dup");
    f.create(&id).success();
    f.create(&id)
        .failure()
        .stderr(contains(format!("container \"{id}\" already exists")));
    // The failed second create must not have damaged the first container.
    assert_eq!(f.status(&id), "created");
    f.cmd().args(["delete", &id]).assert().success();
    f.assert_nothing_left(&id);
    Ok(())
}

fn start_on_stopped_container_is_rejected() -> TestResult {
    can_run_containers()?;
    let f = Fixture::new(&["true"]);
    let id = unique("stopped");
    f.create(&id).success();
    f.cmd().args(["start", &id]).assert().success();
    f.wait_stopped(&id);
    f.cmd()
        .args(["start", &id])
        .assert()
        .failure()
        .stderr(contains("it is stopped"));
    f.cmd().args(["delete", &id]).assert().success();
    f.assert_nothing_left(&id);
    Ok(())
}

fn lifecycle_with_stdout_pipe() -> TestResult {
    can_run_containers()?;
    let f = Fixture::new(&["sh", "-c", "echo pid=$$ host=$(hostname); sleep 1"]);
    let id = unique("life");
    let pid_file = f.root.with_file_name("pid");
    // create gets a pipe as stdout, like a harness would pass; it must exit while the
    // container's init keeps the pipe.
    let mut create = StdCommand::new(runtime_bin())
        .arg("--root")
        .arg(&f.root)
        .args(["create", "--bundle"])
        .arg(&f.bundle)
        .arg("--pid-file")
        .arg(&pid_file)
        .arg(&id)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn create");
    let mut stdout = create.stdout.take().expect("stdout pipe");
    assert!(create.wait().expect("wait create").success());
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(f.status(&id), "created");

    f.cmd().args(["start", &id]).assert().success();
    let status = f.status(&id);
    assert!(
        status == "running" || status == "stopped",
        "status {status}"
    );
    let mut out = String::new();
    stdout
        .read_to_string(&mut out)
        .expect("read container stdout");
    assert_eq!(out.trim(), "pid=1 host=palisade-test");
    f.wait_stopped(&id);
    f.cmd()
        .args(["kill", &id, "KILL"])
        .assert()
        .failure()
        .stderr(contains("is not running"));
    f.cmd().args(["delete", &id]).assert().success();
    f.assert_nothing_left(&id);
    Ok(())
}

fn kill_and_force_delete() -> TestResult {
    can_run_containers()?;
    let f = Fixture::new(&["sleep", "100"]);
    let id = unique("kill");
    f.create(&id).success();
    f.cmd().args(["start", &id]).assert().success();
    assert_eq!(f.status(&id), "running");
    f.cmd()
        .args(["delete", &id])
        .assert()
        .failure()
        .stderr(contains("is running"));
    f.cmd().args(["delete", "--force", &id]).assert().success();
    f.assert_nothing_left(&id);

    let id = unique("kill");
    f.create(&id).success();
    f.cmd().args(["start", &id]).assert().success();
    f.cmd().args(["kill", &id, "9"]).assert().success();
    f.wait_stopped(&id);
    f.cmd().args(["delete", &id]).assert().success();
    f.assert_nothing_left(&id);
    Ok(())
}

fn run_exits_with_container_exit_code() -> TestResult {
    can_run_containers()?;
    let f = Fixture::new(&["sh", "-c", "echo out; exit 7"]);
    let id = unique("run");
    f.cmd()
        .args(["run", "--bundle"])
        .arg(&f.bundle)
        .arg(&id)
        .assert()
        .code(7)
        .stdout("out\n");
    f.assert_nothing_left(&id);
    Ok(())
}
