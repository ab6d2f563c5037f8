//! Integration tests of the `palisade-runtime` binary.
//!
//! The binary is built by the palisade-suites package: `cargo build -p palisade-suites --bin
//! palisade-runtime` (or point PALISADE_RUNTIME_BIN at one). Tests that need root, or
//! /bin/busybox for the rootfs, print why and return when those are missing.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use assert_cmd::Command;
use assert_cmd::assert::OutputAssertExt;
use predicates::str::contains;
use serde_json::{Value, json};
use tempfile::TempDir;

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

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Skips (returns false) unless the test can create containers here.
fn can_run_containers(test: &str) -> bool {
    if !is_root() {
        eprintln!("skipping {test}: needs root");
        return false;
    }
    if !Path::new("/bin/busybox").exists() {
        eprintln!("skipping {test}: /bin/busybox (static) is needed for the test rootfs");
        return false;
    }
    true
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

#[test]
fn version() {
    Command::new(runtime_bin())
        .arg("--version")
        .assert()
        .success()
        .stdout(contains("palisade-runtime version"))
        .stdout(contains("spec: 1.0.2"));
}

#[test]
fn unsupported_runc_flags_are_refused() {
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
}

#[test]
fn invalid_json_is_rejected() {
    if !can_run_containers("invalid_json_is_rejected") {
        return;
    }
    let f = Fixture::new(&["true"]);
    std::fs::write(f.bundle.join("config.json"), "{not json").expect("write");
    let id = unique("badjson");
    f.create(&id)
        .failure()
        .stderr(contains("palisade-runtime: error: invalid JSON in"));
    f.assert_nothing_left(&id);
}

#[test]
fn missing_rootfs_is_rejected() {
    if !can_run_containers("missing_rootfs_is_rejected") {
        return;
    }
    let f = Fixture::new(&["true"]);
    let mut config = f.config(&["true"]);
    config["root"]["path"] = json!("no-such-rootfs");
    f.write_config(&config);
    let id = unique("norootfs");
    f.create(&id)
        .failure()
        .stderr(contains("does not exist or is not a directory"));
    f.assert_nothing_left(&id);
}

#[test]
fn unknown_namespace_is_rejected() {
    if !can_run_containers("unknown_namespace_is_rejected") {
        return;
    }
    let f = Fixture::new(&["true"]);
    let mut config = f.config(&["true"]);
    config["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces")
        .push(json!({"type": "bogus"}));
    f.write_config(&config);
    let id = unique("badns");
    f.create(&id)
        .failure()
        .stderr(contains("unknown namespace type \"bogus\""));
    f.assert_nothing_left(&id);
}

#[test]
fn missing_executable_fails_create_and_cleans_up() {
    if !can_run_containers("missing_executable_fails_create_and_cleans_up") {
        return;
    }
    let f = Fixture::new(&["no-such-binary"]);
    let id = unique("noexe");
    f.create(&id)
        .failure()
        .stderr(contains("\"no-such-binary\": executable file not found"));
    f.assert_nothing_left(&id);
}

#[test]
fn id_in_use_is_rejected() {
    if !can_run_containers("id_in_use_is_rejected") {
        return;
    }
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
}

#[test]
fn start_on_stopped_container_is_rejected() {
    if !can_run_containers("start_on_stopped_container_is_rejected") {
        return;
    }
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
}

#[test]
fn lifecycle_with_stdout_pipe() {
    if !can_run_containers("lifecycle_with_stdout_pipe") {
        return;
    }
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
}

#[test]
fn kill_and_force_delete() {
    if !can_run_containers("kill_and_force_delete") {
        return;
    }
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
}

#[test]
fn run_exits_with_container_exit_code() {
    if !can_run_containers("run_exits_with_container_exit_code") {
        return;
    }
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
}
