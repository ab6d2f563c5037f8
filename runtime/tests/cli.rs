//! Integration tests of the `palisade-runtime` binary.
//!
//! The binary is built by the palisade-suites package: `cargo build -p palisade-suites --bin
//! palisade-runtime` (or point PALISADE_RUNTIME_BIN at one). Tests that need root, or
//! /bin/busybox for the rootfs, are reported as ignored, with the reason, when those are missing.
//! Config validation that needs neither is unit-tested in the runtime (`spec::tests`).

use std::collections::BTreeMap;
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
        Test::new(
            "features_prints_the_features_document",
            features_prints_the_features_document,
        ),
        Test::new(
            "hooks_run_at_their_lifecycle_points",
            hooks_run_at_their_lifecycle_points,
        ),
        Test::new(
            "a_failing_create_hook_fails_create_and_leaves_nothing",
            a_failing_create_hook_fails_create_and_leaves_nothing,
        ),
        Test::new(
            "a_hook_past_its_timeout_is_killed_and_fails_create",
            a_hook_past_its_timeout_is_killed_and_fails_create,
        ),
        Test::new(
            "a_failing_start_container_hook_fails_start",
            a_failing_start_container_hook_fails_start,
        ),
        Test::new(
            "failing_poststart_and_poststop_hooks_are_logged_not_fatal",
            failing_poststart_and_poststop_hooks_are_logged_not_fatal,
        ),
        Test::new(
            "umask_applies_to_the_container",
            umask_applies_to_the_container,
        ),
        Test::new(
            "time_offsets_are_visible_in_the_new_time_namespace",
            time_offsets_are_visible_in_the_new_time_namespace,
        ),
        Test::new(
            "scheduler_io_priority_and_domainname_apply",
            scheduler_io_priority_and_domainname_apply,
        ),
        Test::new(
            "personality_linux32_makes_uname_say_i686",
            personality_linux32_makes_uname_say_i686,
        ),
        Test::new(
            "a_config_without_a_mount_namespace_runs",
            a_config_without_a_mount_namespace_runs,
        ),
        Test::new(
            "hostname_is_set_in_a_joined_uts_namespace",
            hostname_is_set_in_a_joined_uts_namespace,
        ),
        Test::new("preserve_fds_passes_fd_3", preserve_fds_passes_fd_3),
        Test::new(
            "sysctl_applies_with_a_read_only_proc_sys",
            sysctl_applies_with_a_read_only_proc_sys,
        ),
        Test::new(
            "tmpcopyup_fills_the_tmpfs_with_the_directory",
            tmpcopyup_fills_the_tmpfs_with_the_directory,
        ),
        Test::new(
            "refused_fields_name_themselves",
            refused_fields_name_themselves,
        ),
        Test::new(
            "rro_volume_refuses_writes_in_its_submounts",
            rro_volume_refuses_writes_in_its_submounts,
        ),
        Test::new(
            "memory_fields_reach_the_v1_cgroup_files",
            memory_fields_reach_the_v1_cgroup_files,
        ),
        Test::new(
            "hugepage_limit_is_written_and_a_bad_size_refused",
            hugepage_limit_is_written_and_a_bad_size_refused,
        ),
        Test::new(
            "device_rules_decide_whether_a_device_opens",
            device_rules_decide_whether_a_device_opens,
        ),
        Test::new("symlinked_proc_is_refused", symlinked_proc_is_refused),
        Test::new(
            "default_cgroup_is_the_id_with_no_parent_left",
            default_cgroup_is_the_id_with_no_parent_left,
        ),
        Test::new(
            "sysctl_is_written_before_proc_sys_is_read_only",
            sysctl_is_written_before_proc_sys_is_read_only,
        ),
        Test::new(
            "user_namespace_maps_container_root_to_host_100000",
            user_namespace_maps_container_root_to_host_100000,
        ),
        Test::new(
            "user_namespace_joined_by_path",
            user_namespace_joined_by_path,
        ),
        Test::new(
            "user_namespace_bad_mappings_are_refused",
            user_namespace_bad_mappings_are_refused,
        ),
        Test::new(
            "user_namespace_mappings_outside_subordinate_ids_are_refused",
            user_namespace_mappings_outside_subordinate_ids_are_refused,
        ),
        Test::new(
            "user_namespace_rootfs_unreachable_by_mapped_root",
            user_namespace_rootfs_unreachable_by_mapped_root,
        ),
        Test::new(
            "exec_joins_every_namespace_and_the_cgroup",
            exec_joins_every_namespace_and_the_cgroup,
        ),
        Test::new(
            "exec_keeps_host_descriptors_and_cwd_out",
            exec_keeps_host_descriptors_and_cwd_out,
        ),
        Test::new(
            "exec_applies_user_capabilities_and_no_new_privs",
            exec_applies_user_capabilities_and_no_new_privs,
        ),
        Test::new("exec_refuses_bad_input", exec_refuses_bad_input),
        Test::new(
            "exec_runs_under_the_container_s_seccomp_filter",
            exec_runs_under_the_container_s_seccomp_filter,
        ),
        Test::new(
            "exec_into_a_chrooted_container_lands_in_its_root",
            exec_into_a_chrooted_container_lands_in_its_root,
        ),
        Test::new("ps_lists_init_and_exec", ps_lists_init_and_exec),
        Test::new(
            "pause_freezes_and_resume_thaws",
            pause_freezes_and_resume_thaws,
        ),
        Test::new(
            "paused_container_can_be_killed_and_force_deleted",
            paused_container_can_be_killed_and_force_deleted,
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
    /// Containers created here, force-deleted when the fixture goes (also when a test fails).
    ids: std::cell::RefCell<Vec<String>>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for id in self.ids.borrow().iter() {
            let _ = StdCommand::new(runtime_bin())
                .arg("--root")
                .arg(&self.root)
                .args(["delete", "--force", id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Fixture {
    fn new(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("state");
        let bundle = dir.path().join("bundle");
        let bin = bundle.join("rootfs/bin");
        std::fs::create_dir_all(&bin).expect("mkdir rootfs");
        std::fs::copy("/bin/busybox", bin.join("busybox")).expect("copy busybox");
        for l in [
            "sh", "true", "hostname", "cat", "sleep", "ls", "echo", "readlink", "touch", "uname",
            "stat", "ionice", "id", "grep",
        ] {
            std::os::unix::fs::symlink("busybox", bin.join(l)).expect("symlink");
        }
        let cgroup = format!("/{}", unique("palisade-rt-test"));
        let f = Self {
            _dir: dir,
            root,
            bundle,
            cgroup,
            ids: Default::default(),
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

    /// Deletes container `id` (if it exists) when the fixture is dropped.
    fn track(&self, id: &str) {
        self.ids.borrow_mut().push(id.to_owned());
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
        self.track(id);
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

    /// Force-deletes container `id` when dropped, so a failing test leaves nothing running.
    fn guard(&self, id: &str) -> Guard {
        Guard {
            root: self.root.clone(),
            id: id.to_owned(),
        }
    }

    /// `create` with `args` after the verb (any order the test likes), stdio off pipes.
    fn create_with(&self, args: &[&str]) -> std::process::Output {
        let err_path = self.root.with_file_name("create-with.stderr");
        let err_file = std::fs::File::create(&err_path).expect("stderr file");
        let status = StdCommand::new(runtime_bin())
            .arg("--root")
            .arg(&self.root)
            .arg("create")
            .args(args)
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
    }

    /// The init pid `state` reports.
    fn pid(&self, id: &str) -> i32 {
        let out = self.cmd().args(["state", id]).output().expect("state");
        let v: Value = serde_json::from_slice(&out.stdout).expect("state is JSON");
        v["pid"]
            .as_i64()
            .and_then(|p| i32::try_from(p).ok())
            .expect("a pid")
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
    /// `run`s the container to its end; its stdout and stderr together.
    fn run(&self, id: &str) -> String {
        let out = self
            .cmd()
            .args(["run", "--bundle"])
            .arg(&self.bundle)
            .arg(id)
            .output()
            .expect("run");
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        text
    }

    /// The container's cgroup directory in the v1 hierarchy of `controller`.
    fn v1_cgroup(&self, controller: &str) -> PathBuf {
        Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(self.cgroup.trim_start_matches('/'))
    }
}

struct Guard {
    root: PathBuf,
    id: String,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = StdCommand::new(runtime_bin())
            .arg("--root")
            .arg(&self.root)
            .args(["delete", "--force", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
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
    f.track(&id);
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

// --- features, hooks, process attributes, namespaces, preserved fds --------------------------

fn features_prints_the_features_document() -> TestResult {
    let out = Command::new(runtime_bin())
        .arg("features")
        .output()
        .expect("features");
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("features prints JSON");
    assert_eq!(v["ociVersionMin"], "1.0.0");
    assert!(v["ociVersionMax"].is_string());
    assert_eq!(
        v["hooks"],
        json!([
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop"
        ])
    );
    assert!(
        v["mountOptions"]
            .as_array()
            .is_some_and(|o| o.contains(&json!("rbind")))
    );
    assert!(
        v["linux"]["namespaces"]
            .as_array()
            .is_some_and(|n| n.contains(&json!("time")))
    );
    Ok(())
}

/// An executable shell script.
fn script(path: &Path, body: &str) {
    palisade_common::testkit::write_executable(path, &format!("#!/bin/sh\n{body}\n"))
        .expect("write script");
}

/// Records `kind|mount ns|uts ns|state on stdin` in the log file `$2`.
const RECORD: &str = r#"state=$(cat)
echo "$1|$(readlink /proc/self/ns/mnt)|$(readlink /proc/self/ns/uts)|$state" >> "$2""#;

const HOST_PATH: &str = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";

fn ns_of(pid: &str, kind: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .expect("read a namespace link")
        .display()
        .to_string()
}

fn hooks_run_at_their_lifecycle_points() -> TestResult {
    can_run_containers()?;
    let f = Fixture::new(&["sh", "-c", "echo main >> /markers/log"]);
    let markers = f.root.with_file_name("markers");
    std::fs::create_dir(&markers).expect("mkdir markers");
    let log = markers.join("log");
    let host_hook = f.root.with_file_name("record");
    script(&host_hook, RECORD);
    script(&f.bundle.join("rootfs/bin/record"), RECORD);
    let host = |kind: &str| json!({"path": host_hook, "args": ["record", kind, log], "env": [HOST_PATH], "timeout": 30});
    let mut config = f.config(&["sh", "-c", "echo main >> /markers/log"]);
    config["mounts"]
        .as_array_mut()
        .expect("mounts")
        .push(json!({"destination": "/markers", "type": "bind", "source": markers, "options": ["rbind", "rw"]}));
    config["hooks"] = json!({
        "prestart": [host("prestart")],
        "createRuntime": [host("createRuntime")],
        "createContainer": [host("createContainer")],
        "startContainer": [{"path": "/bin/record", "args": ["record", "startContainer", "/markers/log"], "env": ["PATH=/bin"]}],
        "poststart": [host("poststart")],
        "poststop": [host("poststop")]
    });
    f.write_config(&config);
    let id = unique("hooks");
    let _guard = f.guard(&id);
    // The id before --bundle, as some callers write it.
    let out = f.create_with(&[&id, "--bundle", f.bundle.to_str().expect("utf-8")]);
    assert!(out.status.success(), "create failed: {out:?}");
    let pid = f.pid(&id).to_string();
    let (container_mnt, container_uts) = (ns_of(&pid, "mnt"), ns_of(&pid, "uts"));
    let (host_mnt, host_uts) = (ns_of("self", "mnt"), ns_of("self", "uts"));
    assert_ne!(container_mnt, host_mnt);
    f.cmd().args(["start", &id]).assert().success();
    f.wait_stopped(&id);
    f.cmd().args(["delete", &id]).assert().success();
    f.assert_nothing_left(&id);

    let text = std::fs::read_to_string(&log).expect("the hooks' log");
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.splitn(4, '|').collect()).collect();
    let kinds: Vec<&str> = lines.iter().map(|l| l[0]).collect();
    let at = |kind: &str| {
        kinds
            .iter()
            .position(|k| *k == kind)
            .unwrap_or_else(|| panic!("{kind} did not run: {text}"))
    };
    assert_eq!(
        kinds[..4],
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer"
        ],
        "{text}"
    );
    // poststart runs after the process was executed; the process only after startContainer.
    assert!(at("startContainer") < at("main") && at("startContainer") < at("poststart"));
    assert_eq!(kinds.last(), Some(&"poststop"), "{text}");
    assert_eq!(kinds.len(), 7, "{text}");
    for line in lines.iter().filter(|l| l[0] != "main") {
        let (kind, mnt, uts) = (line[0], line[1], line[2]);
        let state: Value = serde_json::from_str(line[3]).expect("the state is JSON");
        let in_container = matches!(kind, "createContainer" | "startContainer");
        let (want_mnt, want_uts) = if in_container {
            (&container_mnt, &container_uts)
        } else {
            (&host_mnt, &host_uts)
        };
        assert_eq!(mnt, want_mnt, "{kind} ran in the wrong mount namespace");
        assert_eq!(uts, want_uts, "{kind} ran in the wrong uts namespace");
        let status = match kind {
            "prestart" | "createRuntime" | "createContainer" => "creating",
            "startContainer" => "created",
            "poststart" => "running",
            _ => "stopped",
        };
        assert_eq!(state["status"], status, "{kind}: {state}");
        assert_eq!(state["id"], id.as_str());
        assert_eq!(state["bundle"], f.bundle.to_str().expect("utf-8"));
        if kind == "poststop" {
            assert!(state.get("pid").is_none(), "{state}");
        } else {
            assert_eq!(state["pid"].to_string(), pid, "{kind}: {state}");
        }
    }
    Ok(())
}

fn a_failing_create_hook_fails_create_and_leaves_nothing() -> TestResult {
    can_run_containers()?;
    for kind in ["prestart", "createRuntime", "createContainer"] {
        let f = Fixture::new(&["sleep", "100"]);
        let state_file = f.root.with_file_name("state.json");
        let hook = f.root.with_file_name("fail");
        script(
            &hook,
            &format!("cat > {}\necho no-good >&2\nexit 3", state_file.display()),
        );
        let poststop_state = f.root.with_file_name("poststop.json");
        let poststop = f.root.with_file_name("poststop");
        script(&poststop, &format!("cat > {}", poststop_state.display()));
        let mut config = f.config(&["sleep", "100"]);
        config["hooks"] = json!({
            kind: [{"path": hook, "env": [HOST_PATH]}],
            "poststop": [{"path": poststop, "env": [HOST_PATH]}]
        });
        f.write_config(&config);
        let id = unique("failhook");
        let _guard = f.guard(&id);
        f.create(&id).failure().stderr(contains(format!(
            "{kind} hook {} failed: exit status: 3; output: no-good",
            hook.display()
        )));
        f.assert_nothing_left(&id);
        let state: Value =
            serde_json::from_slice(&std::fs::read(&state_file).expect("the hook saw the state"))
                .expect("JSON");
        let pid = state["pid"].as_i64().expect("the init's pid");
        assert_dead(pid);
        // The lifecycle goes on with the container's destruction and its poststop hooks.
        let stopped: Value =
            serde_json::from_slice(&std::fs::read(&poststop_state).expect("the poststop hook ran"))
                .expect("JSON");
        assert_eq!(stopped["status"], "stopped", "{stopped}");
        assert_eq!(stopped["id"], id.as_str());
    }
    Ok(())
}

/// No such process, or only its zombie (its reaper may not have run yet).
fn assert_dead(pid: i64) {
    let Ok(pid) = i32::try_from(pid) else {
        panic!("{pid} is not a pid")
    };
    if let Ok(stat) = procfs::process::Process::new(pid).and_then(|p| p.stat()) {
        assert!(
            matches!(stat.state, 'Z' | 'X'),
            "pid {pid} is alive: {stat:?}"
        );
    }
}

fn a_hook_past_its_timeout_is_killed_and_fails_create() -> TestResult {
    can_run_containers()?;
    let f = Fixture::new(&["sleep", "100"]);
    let pid_file = f.root.with_file_name("hook.pid");
    let hook = f.root.with_file_name("slow");
    script(
        &hook,
        &format!("echo $$ > {}\nexec sleep 60", pid_file.display()),
    );
    let mut config = f.config(&["sleep", "100"]);
    config["hooks"] = json!({"createRuntime": [{"path": hook, "env": [HOST_PATH], "timeout": 1}]});
    f.write_config(&config);
    let id = unique("slowhook");
    let _guard = f.guard(&id);
    let started = std::time::Instant::now();
    f.create(&id).failure().stderr(contains(format!(
        "createRuntime hook {} did not finish within its timeout of 1 s and was killed",
        hook.display()
    )));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    f.assert_nothing_left(&id);
    let pid: i64 = std::fs::read_to_string(&pid_file)
        .expect("the hook started")
        .trim()
        .parse()
        .expect("a pid");
    assert_dead(pid);
    Ok(())
}

fn a_failing_start_container_hook_fails_start() -> TestResult {
    can_run_containers()?;
    let f = Fixture::new(&["sleep", "100"]);
    script(
        &f.bundle.join("rootfs/bin/fail"),
        "echo start-hook-broke >&2\nexit 4",
    );
    let mut config = f.config(&["sleep", "100"]);
    config["hooks"] = json!({"startContainer": [{"path": "/bin/fail", "env": ["PATH=/bin"]}]});
    f.write_config(&config);
    let id = unique("starthook");
    let _guard = f.guard(&id);
    f.create(&id).success();
    f.cmd()
        .args(["start", &id])
        .assert()
        .failure()
        .stderr(contains(format!("container \"{id}\" failed to start")))
        .stderr(contains(
            "startContainer hook /bin/fail failed: exit status: 4; output: start-hook-broke",
        ));
    // The container stopped (its process never ran); delete cleans up as usual.
    f.wait_stopped(&id);
    f.cmd().args(["delete", &id]).assert().success();
    f.assert_nothing_left(&id);
    Ok(())
}

fn failing_poststart_and_poststop_hooks_are_logged_not_fatal() -> TestResult {
    can_run_containers()?;
    let f = Fixture::new(&["sleep", "100"]);
    let hook = f.root.with_file_name("fail");
    script(&hook, "echo $1 broke >&2\nexit 1");
    let mut config = f.config(&["sleep", "100"]);
    config["hooks"] = json!({
        "poststart": [{"path": hook, "args": ["fail", "poststart"], "env": [HOST_PATH]}],
        "poststop": [{"path": hook, "args": ["fail", "poststop"], "env": [HOST_PATH]},
                     {"path": hook, "args": ["fail", "second-poststop"], "env": [HOST_PATH]}]
    });
    f.write_config(&config);
    let id = unique("posthook");
    let _guard = f.guard(&id);
    let log = f.root.with_file_name("runtime.log");
    f.create(&id).success();
    f.cmd()
        .arg("--log")
        .arg(&log)
        .args(["--log-format", "json", "start", &id])
        .assert()
        .success()
        .stderr(contains(format!(
            "palisade-runtime: warning: poststart hook {} failed: exit status: 1; output: poststart broke",
            hook.display()
        )));
    assert_eq!(f.status(&id), "running");
    f.cmd()
        .arg("--log")
        .arg(&log)
        .args(["--log-format", "json", "delete", "--force", &id])
        .assert()
        .success()
        .stderr(contains("warning: poststop hook"))
        .stderr(contains("output: poststop broke"))
        // A failing poststop hook does not stop the next one.
        .stderr(contains("output: second-poststop broke"));
    f.assert_nothing_left(&id);
    let lines: Vec<Value> = std::fs::read_to_string(&log)
        .expect("the log file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON log line"))
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines.iter().all(|l| l["level"] == "warning"), "{lines:?}");
    Ok(())
}

fn umask_applies_to_the_container() -> TestResult {
    can_run_containers()?;
    let f = Fixture::new(&["touch", "/markers/file"]);
    let markers = f.root.with_file_name("markers");
    std::fs::create_dir(&markers).expect("mkdir markers");
    let mut config = f.config(&["touch", "/markers/file"]);
    config["process"]["user"]["umask"] = json!(0o002);
    config["mounts"]
        .as_array_mut()
        .expect("mounts")
        .push(json!({"destination": "/markers", "type": "bind", "source": markers, "options": ["rbind", "rw"]}));
    f.write_config(&config);
    let id = unique("umask");
    let _guard = f.guard(&id);
    f.cmd()
        .args(["run", "--bundle"])
        .arg(&f.bundle)
        .arg(&id)
        .assert()
        .success();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(markers.join("file"))
        .expect("the container made the file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o664, "mode {mode:o}");
    f.assert_nothing_left(&id);
    Ok(())
}

fn time_offsets_are_visible_in_the_new_time_namespace() -> TestResult {
    can_run_containers()?;
    require(
        Path::new("/proc/self/timens_offsets").exists(),
        "this kernel has no time namespaces",
    )?;
    let f = Fixture::new(&["cat", "/proc/self/timens_offsets"]);
    let mut config = f.config(&["cat", "/proc/self/timens_offsets"]);
    config["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces")
        .push(json!({"type": "time"}));
    config["linux"]["timeOffsets"] = json!({
        "monotonic": {"secs": 86400},
        "boottime": {"secs": 172800, "nanosecs": 5}
    });
    f.write_config(&config);
    let id = unique("timens");
    let _guard = f.guard(&id);
    let out = f
        .cmd()
        .args(["run", "--bundle"])
        .arg(&f.bundle)
        .arg(&id)
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    let mut seen: Vec<Vec<String>> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ["boottime", "172800", "5"].map(String::from).to_vec(),
            ["monotonic", "86400", "0"].map(String::from).to_vec()
        ]
    );
    f.assert_nothing_left(&id);
    Ok(())
}

fn scheduler_io_priority_and_domainname_apply() -> TestResult {
    can_run_containers()?;
    let args = [
        "sh",
        "-c",
        "cat /proc/self/stat; ionice; cat /proc/sys/kernel/domainname",
    ];
    let f = Fixture::new(&args);
    let mut config = f.config(&args);
    config["process"]["scheduler"] = json!({"policy": "SCHED_BATCH", "nice": 5});
    config["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 6});
    config["domainname"] = json!("example.org");
    f.write_config(&config);
    let id = unique("sched");
    let _guard = f.guard(&id);
    let out = f
        .cmd()
        .args(["run", "--bundle"])
        .arg(&f.bundle)
        .arg(&id)
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let line = lines.next().expect("/proc/self/stat");
    let stat = <procfs::process::Stat as procfs::FromRead>::from_read(line.as_bytes())
        .expect("the container's /proc/self/stat");
    assert_eq!(stat.nice, 5, "nice: {line}");
    assert_eq!(stat.policy, Some(3), "policy (SCHED_BATCH): {line}");
    assert_eq!(lines.next(), Some("best-effort: prio 6"), "{text}");
    assert_eq!(lines.next(), Some("example.org"), "{text}");
    f.assert_nothing_left(&id);
    Ok(())
}

fn personality_linux32_makes_uname_say_i686() -> TestResult {
    can_run_containers()?;
    require(
        std::env::consts::ARCH == "x86_64",
        "LINUX32 reads as i686 only on x86_64",
    )?;
    let f = Fixture::new(&["uname", "-m"]);
    let mut config = f.config(&["uname", "-m"]);
    config["linux"]["personality"] = json!({"domain": "LINUX32"});
    f.write_config(&config);
    let id = unique("persona");
    let _guard = f.guard(&id);
    f.cmd()
        .args(["run", "--bundle"])
        .arg(&f.bundle)
        .arg(&id)
        .assert()
        .success()
        .stdout("i686\n");
    f.assert_nothing_left(&id);
    Ok(())
}

fn a_config_without_a_mount_namespace_runs() -> TestResult {
    can_run_containers()?;
    let args = [
        "sh",
        "-c",
        "ls / > /ls.txt; hostname > /hostname.txt; exec sleep 100",
    ];
    let f = Fixture::new(&args);
    let mut config = f.config(&args);
    config["mounts"] = json!([]);
    config["root"]["readonly"] = json!(false);
    config["linux"]["namespaces"] =
        json!([{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "network"}]);
    config["linux"]["maskedPaths"] = json!([]);
    config["linux"]["readonlyPaths"] = json!([]);
    f.write_config(&config);
    let id = unique("nomntns");
    let _guard = f.guard(&id);
    let host_mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    f.create(&id).success();
    let pid = f.pid(&id).to_string();
    // The host's mount namespace, and its mounts untouched; the root is the rootfs.
    assert_eq!(ns_of(&pid, "mnt"), ns_of("self", "mnt"));
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/root")).expect("root link"),
        f.bundle.join("rootfs").canonicalize().expect("rootfs")
    );
    f.cmd().args(["start", &id]).assert().success();
    f.cmd().args(["delete", "--force", &id]).assert().success();
    f.assert_nothing_left(&id);
    assert_eq!(
        std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo"),
        host_mounts,
        "the host's mounts changed"
    );
    let rootfs = f.bundle.join("rootfs");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("ls.txt")).expect("the container ran"),
        "bin\nls.txt\n"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("hostname.txt")).expect("the container ran"),
        "palisade-test\n"
    );
    Ok(())
}

fn hostname_is_set_in_a_joined_uts_namespace() -> TestResult {
    can_run_containers()?;
    let host_name = nix::unistd::gethostname().expect("gethostname");
    let first = Fixture::new(&["sleep", "100"]);
    let first_id = unique("utsowner");
    let _first_guard = first.guard(&first_id);
    first.create(&first_id).success();
    let owner = first.pid(&first_id);

    let second = Fixture::new(&["hostname"]);
    let mut config = second.config(&["hostname"]);
    config["hostname"] = json!("joined-name");
    config["linux"]["namespaces"] = json!([
        {"type": "pid"}, {"type": "ipc"}, {"type": "mount"}, {"type": "network"},
        {"type": "uts", "path": format!("/proc/{owner}/ns/uts")}
    ]);
    second.write_config(&config);
    let id = unique("utsjoin");
    let _guard = second.guard(&id);
    second
        .cmd()
        .args(["run", "--bundle"])
        .arg(&second.bundle)
        .arg(&id)
        .assert()
        .success()
        .stdout("joined-name\n");
    second.assert_nothing_left(&id);
    // Set in the joined namespace (the first container's), not on the host.
    assert_eq!(nix::unistd::gethostname().expect("gethostname"), host_name);
    first
        .cmd()
        .args(["delete", "--force", &first_id])
        .assert()
        .success();
    first.assert_nothing_left(&first_id);
    Ok(())
}

fn preserve_fds_passes_fd_3() -> TestResult {
    can_run_containers()?;
    let args = ["sh", "-c", "echo via-fd-3 >&3"];
    let f = Fixture::new(&args);
    let out = f.root.with_file_name("fd3.out");
    // The shell opens fd 3 for the runtime, as a caller passing a socket would.
    let run = |preserve: &[&str], id: &str| {
        StdCommand::new("/bin/sh")
            .arg("-c")
            .arg(r#"bin=$1; shift; exec "$bin" "$@" 3>>"$OUT""#)
            .arg("sh")
            .arg(runtime_bin())
            .arg("--root")
            .arg(&f.root)
            .arg("run")
            .args(preserve)
            .arg("--bundle")
            .arg(&f.bundle)
            .arg(id)
            .env("OUT", &out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run the runtime")
    };
    let id = unique("fds");
    let _guard = f.guard(&id);
    assert!(run(&["--preserve-fds", "1"], &id).success());
    assert_eq!(
        std::fs::read_to_string(&out).expect("fd 3's file"),
        "via-fd-3\n"
    );
    f.assert_nothing_left(&id);
    // Without the flag the descriptor is not the container's.
    let id = unique("fds");
    let _guard = f.guard(&id);
    assert!(!run(&[], &id).success());
    assert_eq!(
        std::fs::read_to_string(&out).expect("fd 3's file"),
        "via-fd-3\n"
    );
    f.assert_nothing_left(&id);
    Ok(())
}

fn sysctl_applies_with_a_read_only_proc_sys() -> TestResult {
    can_run_containers()?;
    let args = ["cat", "/proc/sys/net/ipv4/ip_forward"];
    let f = Fixture::new(&args);
    let mut config = f.config(&args);
    // The fixture, like runc's default config, has /proc/sys read-only and a new network ns.
    assert_eq!(config["linux"]["readonlyPaths"], json!(["/proc/sys"]));
    config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    f.write_config(&config);
    let id = unique("sysctl");
    let _guard = f.guard(&id);
    f.cmd()
        .args(["run", "--bundle"])
        .arg(&f.bundle)
        .arg(&id)
        .assert()
        .success()
        .stdout("1\n");
    f.assert_nothing_left(&id);
    Ok(())
}

/// `tmpcopyup` (podman's `--read-only` asks for it on /run, /tmp and /var/tmp): the tmpfs starts
/// with a copy of the image's directory, modes kept; writes land in the tmpfs, never in the
/// rootfs; with `ro` too, the copy is there and the tmpfs refuses writes.
fn tmpcopyup_fills_the_tmpfs_with_the_directory() -> TestResult {
    can_run_containers()?;
    use std::os::unix::fs::PermissionsExt;
    let script = "cat /run/seed/file; stat -c %a /run/seed /run/seed/file; \
                  (echo x > /run/new) 2>/dev/null && echo wrote || echo refused";
    for (read_only, write) in [(false, "wrote"), (true, "refused")] {
        let f = Fixture::new(&["sh", "-c", script]);
        let seed = f.bundle.join("rootfs/run/seed");
        std::fs::create_dir_all(&seed).expect("mkdir run/seed");
        std::fs::write(seed.join("file"), "from the image\n").expect("write seed");
        std::fs::set_permissions(seed.join("file"), std::fs::Permissions::from_mode(0o640))
            .expect("chmod");
        std::fs::set_permissions(&seed, std::fs::Permissions::from_mode(0o750)).expect("chmod");
        let mut config = f.config(&["sh", "-c", script]);
        let mut options = vec!["tmpcopyup", "nosuid", "mode=755"];
        if read_only {
            options.push("ro");
        }
        config["mounts"].as_array_mut().expect("mounts").push(
            json!({"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": options}),
        );
        f.write_config(&config);
        let id = unique("copyup");
        let _guard = f.guard(&id);
        let out = f.run(&id);
        assert_eq!(
            out,
            format!("from the image\n750\n640\n{write}\n"),
            "ro: {read_only}"
        );
        assert!(
            !f.bundle.join("rootfs/run/new").exists(),
            "a write reached the rootfs below the tmpfs"
        );
        f.assert_nothing_left(&id);
    }
    Ok(())
}

fn refused_fields_name_themselves() -> TestResult {
    can_run_containers()?;
    let f = Fixture::new(&["true"]);
    let mut cases = vec![
        (
            json!({"linux": {"intelRdt": {"closID": "x"}}}),
            "linux.intelRdt",
        ),
        (
            json!({"process": {"scheduler": {"policy": "SCHED_ISO"}}}),
            "process.scheduler.policy: SCHED_ISO",
        ),
        (
            json!({"hooks": {"poststop": [{"path": "relative"}]}}),
            "hooks.poststop[0].path: relative must be absolute",
        ),
    ];
    if !Path::new("/sys/module/apparmor/parameters/enabled").exists() {
        cases.push((
            json!({"process": {"apparmorProfile": "palisade"}}),
            "process.apparmorProfile: AppArmor is not enabled on this host",
        ));
    }
    for (change, error) in cases {
        let mut config = f.config(&["true"]);
        merge(&mut config, &change);
        f.write_config(&config);
        let id = unique("refused");
        let _guard = f.guard(&id);
        f.create(&id).failure().stderr(contains(error));
        f.assert_nothing_left(&id);
    }
    Ok(())
}

fn merge(into: &mut Value, patch: &Value) {
    match (into, patch) {
        (Value::Object(into), Value::Object(patch)) => {
            for (k, v) in patch {
                merge(into.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (into, patch) => *into = patch.clone(),
    }
}

/// Skips unless this host has cgroup v1 with `controller`.
fn require_v1(controller: &str) -> TestResult {
    require(
        Path::new("/sys/fs/cgroup")
            .join(controller)
            .join("cgroup.procs")
            .exists(),
        format!("a cgroup v1 {controller} hierarchy (this host is not cgroup v1)"),
    )
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_owned()
}

/// `rbind,ro` makes only the top of a volume read-only; `rbind,rro` (mount_setattr with
/// AT_RECURSIVE) every mount it carries too. The submount is a tmpfs mounted on the volume in a
/// private mount namespace of the test's (`unshare`), so nothing reaches the host and it goes
/// away with that namespace.
fn rro_volume_refuses_writes_in_its_submounts() -> TestResult {
    can_run_containers()?;
    require(
        Path::new("/usr/bin/unshare").exists(),
        "/usr/bin/unshare (util-linux) makes the private mount namespace",
    )?;
    let script = "(echo x > /data/sub/f) 2>/dev/null; echo sub=$?; \
                  (echo x > /data/f) 2>/dev/null; echo top=$?";
    for (option, sub_writable) in [("ro", true), ("rro", false)] {
        let f = Fixture::new(&["sh", "-c", script]);
        let vol = f.bundle.with_file_name("vol");
        std::fs::create_dir_all(vol.join("sub")).expect("mkdir vol/sub");
        let mut config = f.config(&["sh", "-c", script]);
        config["mounts"].as_array_mut().expect("mounts").push(
            json!({"destination": "/data", "type": "bind", "source": vol,
                         "options": ["rbind", option]}),
        );
        f.write_config(&config);
        let id = unique(option);
        let out = Command::new("/usr/bin/unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(r#"mount -t tmpfs palisade-rt-test "$1/sub" && exec "$2" --root "$3" run --bundle "$4" "$5""#)
            .arg("sh")
            .arg(&vol)
            .arg(runtime_bin())
            .arg(&f.root)
            .arg(&f.bundle)
            .arg(&id)
            .timeout(Duration::from_secs(30))
            .output()
            .expect("run in a private mount namespace");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{option}: {out:?}");
        let expected_sub = if sub_writable { "sub=0" } else { "sub=1" };
        assert!(
            text.contains(expected_sub) && text.contains("top=1"),
            "rbind,{option}: expected {expected_sub} and top=1, saw {text:?}"
        );
        // Nothing was written through to the host's directory either.
        assert!(!vol.join("f").exists());
        f.assert_nothing_left(&id);
    }
    Ok(())
}

fn memory_fields_reach_the_v1_cgroup_files() -> TestResult {
    can_run_containers()?;
    require_v1("memory")?;
    let f = Fixture::new(&["sleep", "100"]);
    let mut config = f.config(&["sleep", "100"]);
    let swap_accounted = Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists();
    let mut memory = json!({
        "limit": 67108864, "reservation": 33554432, "swappiness": 10,
        "disableOOMKiller": true, "useHierarchy": true
    });
    if swap_accounted {
        memory["swap"] = json!(134217728);
    }
    config["linux"]["resources"]["memory"] = memory;
    f.write_config(&config);
    let id = unique("memory");
    f.create(&id).success();
    let dir = f.v1_cgroup("memory");
    let checks = [
        ("memory.limit_in_bytes", "67108864"),
        ("memory.soft_limit_in_bytes", "33554432"),
        ("memory.swappiness", "10"),
        ("memory.use_hierarchy", "1"),
    ];
    for (file, value) in checks {
        assert_eq!(read(&dir.join(file)), value, "{file}");
    }
    if swap_accounted {
        assert_eq!(read(&dir.join("memory.memsw.limit_in_bytes")), "134217728");
    }
    assert!(
        read(&dir.join("memory.oom_control")).contains("oom_kill_disable 1"),
        "the OOM killer is still enabled"
    );
    f.cmd().args(["delete", &id]).assert().success();
    f.assert_nothing_left(&id);

    // A swap limit below the memory limit is refused before anything is made.
    config["linux"]["resources"]["memory"] = json!({"limit": 67108864, "swap": 33554432});
    f.write_config(&config);
    let id = unique("memory");
    f.create(&id).failure().stderr(contains(
        "linux.resources.memory.swap: 33554432 is less than memory.limit 67108864",
    ));
    f.assert_nothing_left(&id);
    Ok(())
}

fn hugepage_limit_is_written_and_a_bad_size_refused() -> TestResult {
    can_run_containers()?;
    let f = Fixture::new(&["sleep", "100"]);
    let mut config = f.config(&["sleep", "100"]);
    // A size no kernel has: refused by name before anything is made.
    config["linux"]["resources"]["hugepageLimits"] = json!([{"pageSize": "3MB", "limit": 4194304}]);
    f.write_config(&config);
    let id = unique("hugetlb");
    f.create(&id).failure().stderr(contains(
        "invalid config: linux.resources.hugepageLimits[0].pageSize: \"3MB\" is not a huge page size of this kernel",
    ));
    f.assert_nothing_left(&id);

    require_v1("hugetlb")?;
    require(
        Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists(),
        "2 MB huge pages",
    )?;
    config["linux"]["resources"]["hugepageLimits"] = json!([{"pageSize": "2MB", "limit": 4194304}]);
    f.write_config(&config);
    let id = unique("hugetlb");
    f.create(&id).success();
    let dir = f.v1_cgroup("hugetlb");
    assert_eq!(read(&dir.join("hugetlb.2MB.limit_in_bytes")), "4194304");
    if dir.join("hugetlb.2MB.rsvd.limit_in_bytes").exists() {
        assert_eq!(
            read(&dir.join("hugetlb.2MB.rsvd.limit_in_bytes")),
            "4194304"
        );
    }
    f.cmd().args(["delete", &id]).assert().success();
    f.assert_nothing_left(&id);
    Ok(())
}

/// /dev/loop-control (c 10:237) is made in the container by linux.devices; the device cgroup
/// decides whether it opens: not under deny-all, yes with a rule for it.
fn device_rules_decide_whether_a_device_opens() -> TestResult {
    can_run_containers()?;
    require(
        Path::new("/dev/loop-control").exists(),
        "the loop driver (/dev/loop-control) on this host",
    )?;
    let script = "(exec 3</dev/loop-control) 2>&1 && echo opened || echo refused";
    let deny_all = json!({"allow": false, "access": "rwm"});
    let allow = json!({"allow": true, "type": "c", "major": 10, "minor": 237, "access": "rw"});
    for (rules, expected) in [
        (json!([deny_all]), "refused"),
        (json!([deny_all, allow]), "opened"),
        // No rules at all: deny everything but the default devices.
        (json!([]), "refused"),
    ] {
        let f = Fixture::new(&["sh", "-c", script]);
        let mut config = f.config(&["sh", "-c", script]);
        config["linux"]["devices"] = json!([{"path": "/dev/loop-control", "type": "c",
                                             "major": 10, "minor": 237, "fileMode": 0o600}]);
        config["linux"]["resources"]["devices"] = rules.clone();
        f.write_config(&config);
        let id = unique("devices");
        let out = f.run(&id);
        assert!(
            out.contains(expected),
            "rules {rules}: expected {expected}, saw {out:?}"
        );
        if expected == "refused" {
            assert!(out.contains("Operation not permitted"), "{out:?}");
        }
        // The default devices open whatever the rules.
        f.assert_nothing_left(&id);
    }
    Ok(())
}

fn symlinked_proc_is_refused() -> TestResult {
    can_run_containers()?;
    let f = Fixture::new(&["true"]);
    // A hostile image: /proc leads to the root of the rootfs.
    std::os::unix::fs::symlink("/", f.bundle.join("rootfs/proc")).expect("symlink");
    let id = unique("symproc");
    f.create(&id).failure().stderr(contains(
        "mounts[0]: proc must be mounted on an ordinary directory, and /proc is reached through \
         a symlink in the rootfs (to /)",
    ));
    f.assert_nothing_left(&id);
    Ok(())
}

/// Without cgroupsPath the container's cgroup is `/<id>` (runc's), with nothing made above it.
fn default_cgroup_is_the_id_with_no_parent_left() -> TestResult {
    can_run_containers()?;
    let mut f = Fixture::new(&["sleep", "100"]);
    let id = unique("defcg");
    let mut config = f.config(&["sleep", "100"]);
    if let Some(linux) = config["linux"].as_object_mut() {
        linux.remove("cgroupsPath");
    }
    f.write_config(&config);
    f.cgroup = format!("/{id}");
    f.create(&id).success();
    let st: Value =
        serde_json::from_slice(&f.cmd().args(["state", &id]).output().expect("state").stdout)
            .expect("state is JSON");
    let pid = st["pid"].as_i64().expect("a pid");
    let cgroups = read(Path::new(&format!("/proc/{pid}/cgroup")));
    // Every hierarchy places it at /<id> (v1: "N:controllers:/<id>", v2: "0::/<id>").
    for line in cgroups.lines() {
        assert!(
            line.ends_with(&format!(":/{id}")),
            "expected /{id} in every hierarchy, saw {cgroups}"
        );
    }
    for entry in std::fs::read_dir("/sys/fs/cgroup").expect("read").flatten() {
        assert!(
            !entry.path().join("palisade-runtime").join(&id).exists(),
            "the old default parent was used"
        );
    }
    f.cmd().args(["delete", &id]).assert().success();
    f.assert_nothing_left(&id);
    Ok(())
}

/// A sysctl of the container's network namespace, with /proc/sys read-only as by default.
fn sysctl_is_written_before_proc_sys_is_read_only() -> TestResult {
    can_run_containers()?;
    let script = "cat /proc/sys/net/ipv4/ip_forward; (echo 0 > /proc/sys/net/ipv4/ip_forward) 2>/dev/null && echo writable || echo read-only";
    let f = Fixture::new(&["sh", "-c", script]);
    let mut config = f.config(&["sh", "-c", script]);
    config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    f.write_config(&config);
    let id = unique("sysctl");
    let out = f.run(&id);
    assert_eq!(out.trim(), "1\nread-only", "{out:?}");
    f.assert_nothing_left(&id);

    // One of the host's (vm.*): refused by name, nothing made.
    config["linux"]["sysctl"] = json!({"vm.swappiness": "10"});
    f.write_config(&config);
    let id = unique("sysctl");
    f.create(&id).failure().stderr(contains(
        "invalid config: linux.sysctl.\"vm.swappiness\": not a sysctl of a namespace the container can own",
    ));
    f.assert_nothing_left(&id);
    Ok(())
}

// --- user namespaces, exec, ps, pause/resume ---------------------------------------------------

/// Namespace files of /proc/<pid>/ns.
const NAMESPACES: [&str; 8] = ["user", "ipc", "uts", "net", "pid", "cgroup", "time", "mnt"];

/// (device, inode) of a file, following symlinks (so /proc/<pid>/ns/* names the namespace).
fn file_id(path: impl AsRef<Path>) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

fn ns_id(pid: &str, name: &str) -> Option<(u64, u64)> {
    file_id(format!("/proc/{pid}/ns/{name}"))
}

/// `lchown -R`.
fn chown_tree(path: &Path, id: u32) {
    std::os::unix::fs::lchown(path, Some(id), Some(id)).expect("chown");
    if path.is_dir() && !path.is_symlink() {
        for entry in std::fs::read_dir(path).expect("read dir").flatten() {
            chown_tree(&entry.path(), id);
        }
    }
}

impl Fixture {
    /// The directory holding the bundle and the state (a temporary directory).
    fn dir(&self) -> &Path {
        self.root
            .parent()
            .expect("the state is in the temporary directory")
    }

    /// Makes the rootfs usable by root of a user namespace mapped to host `host`: owned by it,
    /// below directories it can search (runc, too, changes no owner for it).
    fn prepare_for_mapped_root(&self, host: u32) {
        use std::os::unix::fs::PermissionsExt;
        for dir in [self.dir(), self.bundle.as_path()] {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        chown_tree(&self.bundle.join("rootfs"), host);
    }

    fn create_and_start(&self, id: &str) {
        self.create(id).success();
        self.cmd().args(["start", id]).assert().success();
    }

    /// `exec --detach --pid-file` with the process's stdio on /dev/null or a file (a pipe would
    /// stay open as long as the process); the process's host pid.
    fn exec_detached(&self, id: &str, args: &[&str]) -> i32 {
        let name = unique("exec");
        let pid_file = self.dir().join(format!("{name}.pid"));
        let err_path = self.dir().join(format!("{name}.stderr"));
        let err_file = std::fs::File::create(&err_path).expect("stderr file");
        let status = StdCommand::new(runtime_bin())
            .arg("--root")
            .arg(&self.root)
            .args(["exec", "--detach", "--pid-file"])
            .arg(&pid_file)
            .arg(id)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err_file)
            .status()
            .expect("run exec");
        let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
        assert!(status.success(), "exec failed: {status}: {stderr}");
        std::fs::read_to_string(&pid_file)
            .expect("pid file")
            .trim()
            .parse()
            .expect("a pid")
    }

    /// `exec` (waiting), its stdout; fails the test unless it exits 0.
    fn exec_output(&self, args: &[&str]) -> String {
        let out = self.cmd().arg("exec").args(args).output().expect("exec");
        assert!(out.status.success(), "exec {args:?} failed: {out:?}");
        String::from_utf8(out.stdout).expect("UTF-8")
    }

    fn delete_force(&self, id: &str) {
        self.cmd()
            .args(["delete", "--force", id])
            .assert()
            .success();
        self.assert_nothing_left(id);
    }
}

/// The fixture's config with a user namespace mapping 0-65535 to `host`-(`host`+65535).
fn with_user_namespace(config: &mut Value, host: u32) {
    config["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces")
        .push(json!({"type": "user"}));
    let map = json!([{"containerID": 0, "hostID": host, "size": 65536}]);
    config["linux"]["uidMappings"] = map.clone();
    config["linux"]["gidMappings"] = map;
}

fn words(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

fn user_namespace_maps_container_root_to_host_100000() -> TestResult {
    can_run_containers()?;
    let args = [
        "sh",
        "-c",
        "cat /proc/self/uid_map /proc/self/gid_map; id -u; touch /created",
    ];
    let f = Fixture::new(&args);
    let mut c = f.config(&args);
    c["root"]["readonly"] = json!(false);
    with_user_namespace(&mut c, 100_000);
    f.write_config(&c);
    f.prepare_for_mapped_root(100_000);
    let id = unique("userns");
    f.track(&id);
    let out = f
        .cmd()
        .args(["run", "--bundle"])
        .arg(&f.bundle)
        .arg(&id)
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        words(&String::from_utf8_lossy(&out.stdout)),
        ["0 100000 65536", "0 100000 65536", "0"]
    );
    // Root in the container made it; on the host it belongs to 100000.
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(f.bundle.join("rootfs/created")).expect("created by the container");
    assert_eq!((md.uid(), md.gid()), (100_000, 100_000));
    f.assert_nothing_left(&id);

    // And its processes are 100000 for the host.
    let mut c = f.config(&["sleep", "100"]);
    with_user_namespace(&mut c, 100_000);
    f.write_config(&c);
    let id = unique("userns");
    f.create_and_start(&id);
    let status = std::fs::read_to_string(format!("/proc/{}/status", f.pid(&id))).expect("status");
    let uids = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .expect("a Uid line");
    assert_eq!(words(uids), ["100000 100000 100000 100000"]);
    assert_ne!(
        ns_id(&f.pid(&id).to_string(), "user"),
        ns_id("self", "user")
    );
    f.delete_force(&id);
    Ok(())
}

fn user_namespace_joined_by_path() -> TestResult {
    can_run_containers()?;
    let a = Fixture::new(&["sleep", "100"]);
    let mut c = a.config(&["sleep", "100"]);
    with_user_namespace(&mut c, 100_000);
    a.write_config(&c);
    a.prepare_for_mapped_root(100_000);
    let a_id = unique("userns-a");
    a.create_and_start(&a_id);
    let user_ns = format!("/proc/{}/ns/user", a.pid(&a_id));

    let args = ["sh", "-c", "readlink /proc/self/ns/user; id -u"];
    let b = Fixture::new(&args);
    b.prepare_for_mapped_root(100_000);
    let mut c = b.config(&args);
    c["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces")
        .push(json!({"type": "user", "path": user_ns}));
    b.write_config(&c);
    let run = |id: &str| {
        b.cmd()
            .args(["run", "--bundle"])
            .arg(&b.bundle)
            .arg(id)
            .output()
            .expect("run")
    };
    let id = unique("userns-b");
    let out = run(&id);
    assert!(out.status.success(), "{out:?}");
    let expected = std::fs::read_link(&user_ns).expect("readlink");
    assert_eq!(
        words(&String::from_utf8_lossy(&out.stdout)),
        [expected.display().to_string(), "0".into()]
    );
    b.assert_nothing_left(&id);

    // Mappings given with the path must be the namespace's.
    with_user_namespace(&mut c, 200_000);
    let ns = c["linux"]["namespaces"].as_array_mut().expect("namespaces");
    ns.pop();
    b.write_config(&c);
    let id = unique("userns-b");
    b.cmd()
        .args(["run", "--bundle"])
        .arg(&b.bundle)
        .arg(&id)
        .assert()
        .failure()
        .stderr(contains(format!(
            "linux.uidMappings: the user namespace {user_ns} maps \"0 100000 65536\", not \"0 200000 65536\""
        )));
    b.assert_nothing_left(&id);
    with_user_namespace(&mut c, 100_000);
    c["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces")
        .pop();
    b.write_config(&c);
    let id = unique("userns-b");
    assert!(run(&id).status.success());
    b.assert_nothing_left(&id);

    a.delete_force(&a_id);
    Ok(())
}

fn user_namespace_bad_mappings_are_refused() -> TestResult {
    can_run_containers()?;
    let f = Fixture::new(&["true"]);
    let map = |c: u64, h: u64, s: u64| json!([{"containerID": c, "hostID": h, "size": s}]);
    let cases: [(&str, Value, &str); 6] = [
        (
            "uidMappings",
            json!([{"containerID": 0, "hostID": 100000, "size": 65536},
                   {"containerID": 1000, "hostID": 300000, "size": 1}]),
            "invalid config: linux.uidMappings[1]: container ids 1000-1000 overlap those of linux.uidMappings[0] (0-65535)",
        ),
        (
            "gidMappings",
            json!([{"containerID": 0, "hostID": 100000, "size": 65536},
                   {"containerID": 70000, "hostID": 165535, "size": 1}]),
            "invalid config: linux.gidMappings[1]: host ids 165535-165535 overlap those of linux.gidMappings[0] (100000-165535)",
        ),
        (
            "uidMappings",
            map(0, 100_000, 0),
            "invalid config: linux.uidMappings[0].size: must be greater than 0",
        ),
        (
            "uidMappings",
            map(0, 4_294_000_000, 1_000_000),
            "invalid config: linux.uidMappings[0]: hostID 4294000000 + size 1000000 goes beyond the last id, 4294967294",
        ),
        (
            "gidMappings",
            map(1, 100_000, 65536),
            "invalid config: linux.gidMappings: container gid 0 is not mapped",
        ),
        (
            "uidMappings",
            map(0, 100_000, 10),
            "invalid config: process.user.uid: 0 is not mapped",
        ),
    ];
    for (i, (field, value, error)) in cases.into_iter().enumerate() {
        let mut c = f.config(&["true"]);
        with_user_namespace(&mut c, 100_000);
        c["linux"][field] = value;
        if i == 5 {
            c["process"]["user"]["uid"] = json!(10);
        }
        f.write_config(&c);
        let id = unique("badmap");
        f.create(&id).failure().stderr(contains(error.replace(
            "process.user.uid: 0 is not mapped",
            "process.user.uid: 10 is not mapped by linux.uidMappings",
        )));
        f.assert_nothing_left(&id);
    }
    // Mappings without a user namespace to apply them to.
    let mut c = f.config(&["true"]);
    c["linux"]["uidMappings"] = map(0, 100_000, 65536);
    f.write_config(&c);
    let id = unique("badmap");
    f.create(&id).failure().stderr(contains(
        "invalid config: linux.uidMappings: requires a user namespace in linux.namespaces",
    ));
    f.assert_nothing_left(&id);
    Ok(())
}

/// `create` run in a private mount namespace whose /etc is `etc`.
fn create_with_etc(f: &Fixture, etc: &Path, id: &str) -> std::process::Output {
    f.track(id);
    // stderr in a file: a created container keeps it open.
    let err_path = f.dir().join(format!("{id}.stderr"));
    let err_file = std::fs::File::create(&err_path).expect("stderr file");
    let status = StdCommand::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg("mount --bind \"$0\" /etc && exec \"$@\"")
        .arg(etc)
        .arg(runtime_bin())
        .arg("--root")
        .arg(&f.root)
        .args(["create", "--bundle"])
        .arg(&f.bundle)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err_file)
        .status()
        .expect("run unshare");
    std::process::Output {
        status,
        stdout: Vec::new(),
        stderr: std::fs::read(&err_path).expect("read stderr"),
    }
}

fn user_namespace_mappings_outside_subordinate_ids_are_refused() -> TestResult {
    can_run_containers()?;
    testkit::require_program("unshare")?;
    let etc = tempfile::tempdir().expect("tempdir");
    for file in ["subuid", "subgid"] {
        std::fs::write(
            etc.path().join(file),
            "someone:100000:65536\nroot:200000:65536\n",
        )
        .expect("write");
    }
    let f = Fixture::new(&["sleep", "100"]);
    let mut c = f.config(&["sleep", "100"]);
    with_user_namespace(&mut c, 100_000);
    f.write_config(&c);
    f.prepare_for_mapped_root(100_000);
    let id = unique("subid");
    let out = create_with_etc(&f, etc.path(), &id);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "invalid config: linux.uidMappings[0]: host ids 100000-165535 are outside the \
             subordinate ids /etc/subuid grants to root (200000-265535)"
        ),
        "{stderr}"
    );
    f.assert_nothing_left(&id);

    // Inside them, the same container is created.
    let mut c = f.config(&["sleep", "100"]);
    with_user_namespace(&mut c, 200_000);
    f.write_config(&c);
    f.prepare_for_mapped_root(200_000);
    let id = unique("subid");
    let out = create_with_etc(&f, etc.path(), &id);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(f.status(&id), "created");
    f.delete_force(&id);
    Ok(())
}

fn user_namespace_rootfs_unreachable_by_mapped_root() -> TestResult {
    can_run_containers()?;
    let f = Fixture::new(&["true"]);
    let mut c = f.config(&["true"]);
    with_user_namespace(&mut c, 100_000);
    f.write_config(&c);
    // Owned by the mapped root, but below a directory only the host's root may search.
    chown_tree(&f.bundle.join("rootfs"), 100_000);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(f.dir(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let id = unique("unreachable");
    f.create(&id).failure().stderr(contains(format!(
        "rootfs {} is not reachable by root of the container's user namespace (host uid 100000)",
        f.bundle
            .join("rootfs")
            .canonicalize()
            .expect("rootfs")
            .display()
    )));
    f.assert_nothing_left(&id);
    Ok(())
}

fn exec_joins_every_namespace_and_the_cgroup() -> TestResult {
    can_run_containers()?;
    let f = Fixture::new(&["sleep", "100"]);
    let mut c = f.config(&["sleep", "100"]);
    for ns in ["cgroup", "time"] {
        c["linux"]["namespaces"]
            .as_array_mut()
            .expect("namespaces")
            .push(json!({"type": ns}));
    }
    with_user_namespace(&mut c, 100_000);
    f.write_config(&c);
    f.prepare_for_mapped_root(100_000);
    let id = unique("exec");
    f.create_and_start(&id);
    let init = f.pid(&id).to_string();
    let pid = f.exec_detached(&id, &["sleep", "100"]).to_string();
    for ns in NAMESPACES {
        let theirs = ns_id(&init, ns);
        assert!(theirs.is_some(), "no {ns} namespace file");
        // The container's own (not the host's), and the exec'd process is in it.
        assert_ne!(theirs, ns_id("self", ns), "{ns}");
        assert_eq!(ns_id(&pid, ns), theirs, "{ns}");
    }
    // In the container's cgroup, in every hierarchy.
    let cgroups = |p: &str| std::fs::read_to_string(format!("/proc/{p}/cgroup")).expect("cgroup");
    assert_eq!(cgroups(&pid), cgroups(&init));
    for line in cgroups(&pid).lines() {
        assert!(line.ends_with(&f.cgroup), "{line}");
    }
    // No descriptor but stdio, and the container's root as its root and cwd.
    let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fds")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    fds.sort();
    assert_eq!(fds, ["0", "1", "2"]);
    let rootfs = file_id(f.bundle.join("rootfs"));
    assert_eq!(file_id(format!("/proc/{pid}/cwd")), rootfs);
    assert_eq!(file_id(format!("/proc/{pid}/root")), rootfs);

    // Seen from inside: not pid 1, the init is, and the container's host name.
    let out = f.exec_output(&[&id, "sh", "-c", "echo $$; hostname; cat /proc/1/cmdline"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_ne!(lines[0], "1");
    assert_eq!(lines[1..], ["palisade-test", "sleep\x00100\x00"]);
    // Its user must exist in the container's user namespace.
    f.cmd()
        .args(["exec", "--user", "70000", &id, "true"])
        .assert()
        .failure()
        .stderr(contains(
            "process.user.uid: 70000 is not mapped in the container's user namespace",
        ));
    f.delete_force(&id);
    Ok(())
}

fn exec_keeps_host_descriptors_and_cwd_out() -> TestResult {
    can_run_containers()?;
    let f = Fixture::new(&["sleep", "100"]);
    let id = unique("cve");
    f.create_and_start(&id);
    // The runtime started with descriptors set up by a shell: $0 runtime, $1 root, $2 id.
    // Its stderr goes to a file: a detached process keeps it open.
    let exec_with = |redirects: &str, exec_args: &str| {
        let err_path = f.dir().join(format!("{}.stderr", unique("cve")));
        let err_file = std::fs::File::create(&err_path).expect("stderr file");
        let status = StdCommand::new("sh")
            .arg("-c")
            .arg(format!(
                "exec {redirects}; exec \"$0\" --root \"$1\" exec {exec_args}"
            ))
            .arg(runtime_bin())
            .arg(&f.root)
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err_file)
            .status()
            .expect("run sh");
        std::process::Output {
            status,
            stdout: Vec::new(),
            stderr: std::fs::read(&err_path).expect("read stderr"),
        }
    };
    // A host directory leaked into the runtime cannot become the process's cwd...
    let out = exec_with("5</", "--cwd /proc/self/fd/5 \"$2\" true");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("chdir /proc/self/fd/5"), "{stderr}");
    // ... nor one passed on explicitly: the cwd check catches it.
    let out = exec_with("3</", "--preserve-fds 1 --cwd /proc/self/fd/3 \"$2\" true");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the working directory is outside the container's root"),
        "{stderr}"
    );
    // Only what is preserved reaches the process.
    let file = f.dir().join("passed");
    std::fs::write(&file, "x").expect("write");
    let pid_file = f.dir().join("cve.pid");
    let out = exec_with(
        &format!("3<{} 4</ 7</tmp", file.display()),
        &format!(
            "--detach --pid-file {} --preserve-fds 1 \"$2\" sleep 100",
            pid_file.display()
        ),
    );
    assert!(out.status.success(), "{out:?}");
    let pid = std::fs::read_to_string(&pid_file).expect("pid file");
    let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", pid.trim()))
        .expect("fds")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    fds.sort();
    assert_eq!(fds, ["0", "1", "2", "3"]);
    assert_eq!(
        std::fs::read_link(format!("/proc/{}/fd/3", pid.trim())).expect("readlink"),
        file
    );
    assert_eq!(
        file_id(format!("/proc/{}/cwd", pid.trim())),
        file_id(f.bundle.join("rootfs"))
    );
    // A descriptor to preserve that is not open is an error, not a leak of something else.
    let out = exec_with("3</", "--preserve-fds 2 \"$2\" true");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("--preserve-fds 2: file descriptor 4 is not open"),
        "{out:?}"
    );
    f.delete_force(&id);
    Ok(())
}

/// The lines of /proc/self/status the exec'd process sees, by name.
fn status_lines(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn exec_applies_user_capabilities_and_no_new_privs() -> TestResult {
    can_run_containers()?;
    let f = Fixture::new(&["sleep", "100"]);
    let mut c = f.config(&["sleep", "100"]);
    c["process"]["noNewPrivileges"] = json!(false);
    f.write_config(&c);
    let id = unique("execproc");
    f.create_and_start(&id);
    let show = "grep -E '^(Uid|Gid|Groups|CapEff|CapPrm|CapBnd|NoNewPrivs):' /proc/self/status";
    // The config's process (CAP_KILL only, root, no no_new_privs).
    let s = status_lines(&f.exec_output(&[&id, "sh", "-c", show]));
    assert_eq!(s["CapEff"], "0000000000000020");
    assert_eq!(s["CapBnd"], "0000000000000020");
    assert_eq!(s["NoNewPrivs"], "0");
    assert_eq!(words(&s["Uid"]), ["0 0 0 0"]);
    // --cap adds to bounding, effective and permitted; --no-new-privs sets it.
    let s = status_lines(&f.exec_output(&[
        "--cap",
        "CAP_NET_ADMIN",
        "--no-new-privs",
        "--user",
        "0:0",
        &id,
        "sh",
        "-c",
        show,
    ]));
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(s[set], "0000000000001020", "{set}");
    }
    assert_eq!(s["NoNewPrivs"], "1");
    // --user and --additional-gids.
    let s =
        status_lines(&f.exec_output(&["--user", "1000:1001", "-g", "5", &id, "sh", "-c", show]));
    assert_eq!(words(&s["Uid"]), ["1000 1000 1000 1000"]);
    assert_eq!(words(&s["Gid"]), ["1001 1001 1001 1001"]);
    assert_eq!(s["Groups"], "5");
    assert_eq!(s["CapEff"], "0000000000000000");
    // --process: the file's process, whole.
    let process = f.dir().join("process.json");
    std::fs::write(
        &process,
        json!({
            "args": ["sh", "-c", format!("{show}; pwd; echo X=$X")],
            "cwd": "/dev", "env": ["PATH=/bin", "X=y"],
            "user": {"uid": 7, "gid": 8},
            "capabilities": {"bounding": ["CAP_CHOWN"]},
            "noNewPrivileges": true
        })
        .to_string(),
    )
    .expect("write process.json");
    let out = f.exec_output(&["--process", process.to_str().expect("UTF-8"), &id]);
    let s = status_lines(&out);
    assert_eq!(words(&s["Uid"]), ["7 7 7 7"]);
    assert_eq!(words(&s["Gid"]), ["8 8 8 8"]);
    assert_eq!(s["CapBnd"], "0000000000000001");
    assert_eq!(s["CapEff"], "0000000000000000");
    assert_eq!(s["NoNewPrivs"], "1");
    assert!(out.contains("\n/dev\nX=y\n"), "{out}");
    // The exit code is the process's.
    f.cmd()
        .args(["exec", &id, "sh", "-c", "exit 3"])
        .assert()
        .code(3);
    f.delete_force(&id);
    Ok(())
}

fn exec_refuses_bad_input() -> TestResult {
    can_run_containers()?;
    let f = Fixture::new(&["sleep", "100"]);
    f.cmd()
        .args(["exec", "no-such-container", "true"])
        .assert()
        .failure()
        .stderr(contains("container \"no-such-container\" does not exist"));
    let id = unique("execbad");
    f.create_and_start(&id);
    let bad = f.dir().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"args": ["id"], "cwd": "/", "user": {"uid": "root"}}"#,
    )
    .expect("write");
    let refused: [(&[&str], String); 7] = [
        (
            &["--process", bad.to_str().expect("UTF-8"), &id],
            format!(
                "invalid process {}: process.user.uid: invalid type: string \"root\", expected u32",
                bad.display()
            ),
        ),
        (
            &["--process", "/nonexistent/process.json", &id],
            "cannot read /nonexistent/process.json".into(),
        ),
        (
            &["--cwd", "tmp", &id, "true"],
            "--cwd tmp: must be absolute".into(),
        ),
        (&[&id], "exec needs a command after the container id".into()),
        (
            &["--tty", &id, "true"],
            "--tty is not supported by palisade-runtime".into(),
        ),
        (
            &["--cap", "CAP_BOGUS", &id, "true"],
            "--cap CAP_BOGUS: unknown capability".into(),
        ),
        (
            &[&id, "no-such-binary"],
            "exec failed: exec: \"no-such-binary\": executable file not found in $PATH".into(),
        ),
    ];
    for (args, error) in refused {
        f.cmd()
            .arg("exec")
            .args(args)
            .assert()
            .failure()
            .stderr(contains(error));
    }
    // A stopped container has nothing to exec into.
    f.cmd().args(["kill", &id, "KILL"]).assert().success();
    f.wait_stopped(&id);
    f.cmd()
        .args(["exec", &id, "true"])
        .assert()
        .failure()
        .stderr(contains(format!(
            "cannot exec in container \"{id}\": it is stopped"
        )));
    f.cmd().args(["delete", &id]).assert().success();
    f.assert_nothing_left(&id);
    Ok(())
}

fn ps_lists_init_and_exec() -> TestResult {
    can_run_containers()?;
    let f = Fixture::new(&["sleep", "100"]);
    let id = unique("ps");
    f.create_and_start(&id);
    let init = f.pid(&id);
    let pid = f.exec_detached(&id, &["sleep", "100"]);
    let out = f
        .cmd()
        .args(["ps", "--format", "json", &id])
        .output()
        .expect("ps");
    assert!(out.status.success(), "{out:?}");
    let mut pids: Vec<i32> = serde_json::from_slice(&out.stdout).expect("a JSON array");
    pids.sort();
    let mut expected = vec![init, pid];
    expected.sort();
    assert_eq!(pids, expected);
    let out = f.cmd().args(["ps", &id]).output().expect("ps");
    assert!(out.status.success(), "{out:?}");
    let table = String::from_utf8_lossy(&out.stdout);
    let mut lines = table.lines();
    assert!(lines.next().is_some_and(|h| h.contains("PID")), "{table}");
    let listed: Vec<String> = lines
        .map(|l| l.split_whitespace().nth(1).unwrap_or_default().to_owned())
        .collect();
    assert_eq!(listed.len(), 2, "{table}");
    assert!(listed.contains(&init.to_string()) && listed.contains(&pid.to_string()));
    f.cmd()
        .args(["ps", "--format", "json", &id, "-o", "pid"])
        .assert()
        .failure()
        .stderr(contains("ps options are only accepted with --format table"));
    f.delete_force(&id);
    f.cmd()
        .args(["ps", &id])
        .assert()
        .failure()
        .stderr(contains("does not exist"));
    Ok(())
}

/// Waits up to `ms` for `fd` to be readable.
fn readable_within(fd: &impl std::os::fd::AsFd, ms: i64) -> bool {
    let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
    let timeout = rustix::event::Timespec {
        tv_sec: ms / 1000,
        tv_nsec: (ms % 1000) * 1_000_000,
    };
    rustix::event::poll(&mut fds, Some(&timeout)).expect("poll") > 0
}

fn pause_freezes_and_resume_thaws() -> TestResult {
    use std::io::{BufRead, BufReader, Write};
    can_run_containers()?;
    // `cat` echoes a line only while it runs.
    let f = Fixture::new(&["cat"]);
    let id = unique("pause");
    f.track(&id);
    let mut create = StdCommand::new(runtime_bin())
        .arg("--root")
        .arg(&f.root)
        .args(["create", "--bundle"])
        .arg(&f.bundle)
        .arg(&id)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn create");
    let mut stdin = create.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(create.stdout.take().expect("stdout"));
    assert!(create.wait().expect("wait create").success());
    f.cmd().args(["start", &id]).assert().success();
    let mut line = String::new();
    stdin.write_all(b"one\n").expect("write");
    assert!(readable_within(stdout.get_ref(), 10_000));
    stdout.read_line(&mut line).expect("read");
    assert_eq!(line, "one\n");

    f.cmd().args(["pause", &id]).assert().success();
    assert_eq!(f.status(&id), "paused");
    // Frozen: the line waits.
    stdin.write_all(b"two\n").expect("write");
    assert!(
        !readable_within(stdout.get_ref(), 300),
        "a paused container echoed"
    );
    f.cmd()
        .args(["pause", &id])
        .assert()
        .failure()
        .stderr(contains("it is paused"));
    f.cmd()
        .args(["exec", &id, "true"])
        .assert()
        .failure()
        .stderr(contains(format!(
            "cannot exec in container \"{id}\": it is paused"
        )));
    f.cmd()
        .args(["start", &id])
        .assert()
        .failure()
        .stderr(contains("it is paused"));

    f.cmd().args(["resume", &id]).assert().success();
    assert_eq!(f.status(&id), "running");
    assert!(
        readable_within(stdout.get_ref(), 10_000),
        "no echo after resume"
    );
    line.clear();
    stdout.read_line(&mut line).expect("read");
    assert_eq!(line, "two\n");
    f.cmd()
        .args(["resume", &id])
        .assert()
        .failure()
        .stderr(contains("it is running, not paused"));

    drop(stdin);
    f.wait_stopped(&id);
    f.cmd()
        .args(["pause", &id])
        .assert()
        .failure()
        .stderr(contains("it is stopped"));
    f.cmd().args(["delete", &id]).assert().success();
    f.assert_nothing_left(&id);
    Ok(())
}

fn paused_container_can_be_killed_and_force_deleted() -> TestResult {
    can_run_containers()?;
    let f = Fixture::new(&["sleep", "100"]);
    let id = unique("pkill");
    f.create_and_start(&id);
    f.cmd().args(["pause", &id]).assert().success();
    f.cmd().args(["kill", &id, "KILL"]).assert().success();
    f.wait_stopped(&id);
    f.cmd().args(["delete", &id]).assert().success();
    f.assert_nothing_left(&id);

    let id = unique("pdelete");
    f.create_and_start(&id);
    let pid = f.exec_detached(&id, &["sleep", "100"]);
    f.cmd().args(["pause", &id]).assert().success();
    f.cmd()
        .args(["delete", &id])
        .assert()
        .failure()
        .stderr(contains("it is paused"));
    f.delete_force(&id);
    // The exec'd process went with it (gone, or a zombie its new parent has yet to reap).
    let state = procfs::process::Process::new(pid).and_then(|p| p.stat());
    assert!(state.as_ref().map_or(true, |s| s.state == 'Z'), "{state:?}");
    Ok(())
}

fn exec_into_a_chrooted_container_lands_in_its_root() -> TestResult {
    can_run_containers()?;
    let f = Fixture::new(&["sleep", "100"]);
    let rootfs = file_id(f.bundle.join("rootfs"));
    // Without a mount namespace (the init only chroots), and in the test-only chroot mode: the
    // exec'd process takes the init's root, not the mount namespace's (the host's).
    let mut no_mnt = f.config(&["sleep", "100"]);
    no_mnt["mounts"] = json!([]);
    no_mnt["root"]["readonly"] = json!(false);
    no_mnt["linux"]["namespaces"] =
        json!([{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "network"}]);
    no_mnt["linux"]["maskedPaths"] = json!([]);
    no_mnt["linux"]["readonlyPaths"] = json!([]);
    let mut chroot_only = f.config(&["sleep", "100"]);
    chroot_only["annotations"] = json!({palisade_common::annotations::CHROOT_ONLY: "true"});
    for config in [no_mnt, chroot_only] {
        f.write_config(&config);
        let id = unique("chrooted");
        f.create_and_start(&id);
        let pid = f.exec_detached(&id, &["sleep", "100"]);
        assert_eq!(file_id(format!("/proc/{pid}/root")), rootfs);
        assert_eq!(file_id(format!("/proc/{pid}/cwd")), rootfs);
        let out = f.exec_output(&[&id, "ls", "/"]);
        assert!(out.lines().any(|l| l == "bin"), "{out}");
        assert!(!out.lines().any(|l| l == "etc" || l == "usr"), "{out}");
        f.delete_force(&id);
    }
    Ok(())
}

fn exec_runs_under_the_container_s_seccomp_filter() -> TestResult {
    can_run_containers()?;
    let f = Fixture::new(&["sleep", "100"]);
    let mut c = f.config(&["sleep", "100"]);
    c["root"]["readonly"] = json!(false);
    c["process"]["noNewPrivileges"] = json!(false);
    c["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    });
    f.write_config(&c);
    let id = unique("execseccomp");
    f.create_and_start(&id);
    let probe = "grep Seccomp: /proc/self/status; mkdir /made && echo made || echo refused";
    // Loaded before the capabilities go (no no_new_privs), and last with --no-new-privs.
    for nnp in [&[][..], &["--no-new-privs"][..]] {
        let mut args: Vec<&str> = nnp.to_vec();
        args.extend([id.as_str(), "sh", "-c", probe]);
        let out = f.exec_output(&args);
        assert_eq!(words(&out), ["Seccomp: 2", "refused"], "{nnp:?}");
    }
    assert!(!f.bundle.join("rootfs/made").exists());
    f.delete_force(&id);
    Ok(())
}
