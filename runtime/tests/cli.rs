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
