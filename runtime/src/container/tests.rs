//! The init's system calls, in order and with their arguments, recorded without root.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use caps::Capability::{CAP_KILL, CAP_NET_BIND_SERVICE, CAP_SYS_ADMIN};
use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::resource::Resource;
use nix::sys::stat::{SFlag, makedev};
use nix::sys::statvfs::FsFlags;
use serde_json::{Value, json};

use super::init::{self, CgroupGate};
use super::{Message, Receiver, Sender};
use crate::cgroups::{Hierarchy, Layout};
use crate::mountinfo::parse;
use crate::spec::{self, Plan};
use crate::syscall::recording::{Call, Recorder};

const NONE: MsFlags = MsFlags::empty();

/// A bundle (rootfs, a `vol` directory to bind) and the plan of its config.
struct Bundle {
    _dir: tempfile::TempDir,
    path: PathBuf,
    plan: Plan,
}

fn config() -> Value {
    json!({
        "ociVersion": "1.0.2",
        "root": {"path": "rootfs"},
        "hostname": "box",
        "process": {
            "user": {"uid": 1000, "gid": 100, "additionalGids": [5]},
            "args": ["true"], "cwd": "/work",
            "capabilities": {
                "bounding": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_KILL"], "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "inheritable": ["CAP_KILL"], "ambient": ["CAP_KILL", "CAP_NET_BIND_SERVICE"]
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}],
            "noNewPrivileges": true
        },
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/data", "source": "vol", "options": ["rbind", "ro", "rshared"]}
        ],
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"},
                           {"type": "network"}],
            "sysctl": {"net.ipv4.ip_forward": "1"}
        }
    })
}

impl Bundle {
    fn new(config: &Value) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().canonicalize().expect("canonical tempdir");
        std::fs::create_dir_all(path.join("rootfs")).expect("mkdir rootfs");
        std::fs::create_dir_all(path.join("vol")).expect("mkdir vol");
        std::fs::write(path.join("config.json"), config.to_string()).expect("write config");
        let plan = spec::load(&path, "c1", false).expect("a valid config");
        Self {
            _dir: dir,
            path,
            plan,
        }
    }

    fn recorder(&self) -> Recorder {
        Recorder::new(&self.plan.rootfs)
    }
}

/// A gate that `create` has already opened.
fn open_gate(plan: &Plan) -> CgroupGate {
    let (rx, tx) = nix::unistd::pipe().expect("pipe");
    Sender::new(tx)
        .send(&Message::CgroupJoined { pid: 4242 })
        .expect("send CgroupJoined");
    CgroupGate::new(Receiver::new(rx), plan)
}

fn mount(
    source: Option<&str>,
    target: &str,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Call {
    Call::mount(source, target, fstype, flags, data)
}

fn position(sys: &Recorder, call: &Call) -> usize {
    sys.position(call)
        .unwrap_or_else(|| panic!("{call:?} was not made; calls: {:#?}", sys.calls()))
}

#[test]
fn prepare_rootfs_makes_root_rslave_first_then_binds_the_rootfs_then_mounts_in_order() {
    let b = Bundle::new(&config());
    let sys = b.recorder();
    let mut gate = open_gate(&b.plan);
    init::prepare_rootfs(&sys, &b.plan, &Layout::V2, &mut gate).expect("prepared");
    let vol = b.path.join("vol").display().to_string();
    let mounts = sys.mounts();
    let rbind_self = mount(
        Some("$ROOTFS"),
        "$ROOTFS",
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    );
    assert_eq!(
        mounts[..7],
        [
            mount(None, "/", None, MsFlags::MS_SLAVE | MsFlags::MS_REC, None),
            rbind_self,
            // Each entry through the file opened for it, with its own flags and data.
            mount(Some("proc"), "fd:$ROOTFS/proc", Some("proc"), NONE, None),
            mount(
                Some("tmpfs"),
                "fd:$ROOTFS/dev",
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
                Some("mode=755,size=65536k")
            ),
            mount(
                Some(&vol),
                "fd:$ROOTFS/data",
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None
            ),
            // `ro` takes effect on a bind only through a remount.
            mount(
                None,
                "fd:$ROOTFS/data",
                None,
                MsFlags::MS_RDONLY | MsFlags::MS_BIND | MsFlags::MS_REMOUNT,
                None
            ),
            mount(
                None,
                "fd:$ROOTFS/data",
                None,
                MsFlags::MS_SHARED | MsFlags::MS_REC,
                None
            ),
        ]
    );
    // Then the default devices, bound from the host's.
    for (i, name) in ["null", "zero", "full", "random", "urandom", "tty"]
        .iter()
        .enumerate()
    {
        let host = format!("/dev/{name}");
        let target = format!("fd:$ROOTFS/dev/{name}");
        assert_eq!(
            mounts[7 + i],
            mount(Some(&host), &target, None, MsFlags::MS_BIND, None)
        );
    }
    assert_eq!(mounts.len(), 13);
    for (target, link) in [
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
        ("pts/ptmx", "ptmx"),
    ] {
        position(
            &sys,
            &Call::Symlink {
                target: target.into(),
                link: format!("$ROOTFS/dev/{link}"),
            },
        );
    }
}

#[test]
fn a_shared_parent_mount_is_made_private_before_the_rootfs_bind() {
    let b = Bundle::new(&config());
    let sys = b
        .recorder()
        .with_mounts(vec![parse("1 0 8:1 / / rw shared:1 - ext4 /dev/sda1 rw")]);
    let mut gate = open_gate(&b.plan);
    init::prepare_rootfs(&sys, &b.plan, &Layout::V2, &mut gate).expect("prepared");
    assert_eq!(
        sys.mounts()[..3],
        [
            mount(None, "/", None, MsFlags::MS_SLAVE | MsFlags::MS_REC, None),
            mount(None, "/", None, MsFlags::MS_PRIVATE, None),
            mount(
                Some("$ROOTFS"),
                "$ROOTFS",
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None
            ),
        ]
    );
}

#[test]
fn a_configured_rootfs_propagation_applies_to_root_first() {
    let mut c = config();
    c["linux"]["rootfsPropagation"] = json!("shared");
    let b = Bundle::new(&c);
    let sys = b.recorder();
    let mut gate = open_gate(&b.plan);
    init::prepare_rootfs(&sys, &b.plan, &Layout::V2, &mut gate).expect("prepared");
    assert_eq!(
        sys.mounts()[0],
        mount(None, "/", None, MsFlags::MS_SHARED | MsFlags::MS_REC, None)
    );
}

#[test]
fn a_symlinked_destination_that_escapes_is_mounted_inside_the_rootfs() {
    let mut c = config();
    c["mounts"] = json!([{"destination": "/evil/x", "type": "tmpfs", "source": "tmpfs"}]);
    let b = Bundle::new(&c);
    // A hostile rootfs: /evil leads, by relative `..`, above the rootfs.
    symlink("../../../../../..", b.plan.rootfs.join("evil")).expect("symlink");
    let sys = b.recorder();
    let mut gate = open_gate(&b.plan);
    init::prepare_rootfs(&sys, &b.plan, &Layout::V2, &mut gate).expect("prepared");
    assert_eq!(
        sys.mounts()[2],
        mount(Some("tmpfs"), "fd:$ROOTFS/x", Some("tmpfs"), NONE, None)
    );
    assert!(b.plan.rootfs.join("x").is_dir());
}

#[test]
fn sysfs_refused_by_the_kernel_becomes_a_read_only_bind_of_the_hosts() {
    let mut c = config();
    c["mounts"] = json!([{"destination": "/sys", "type": "sysfs", "source": "sysfs",
                          "options": ["nosuid", "noexec", "nodev", "ro"]}]);
    let b = Bundle::new(&c);
    let sys = b.recorder().failing(|call| match call {
        Call::Mount {
            fstype: Some(t), ..
        } if t == "sysfs" => Some(Errno::EPERM),
        _ => None,
    });
    let mut gate = open_gate(&b.plan);
    init::prepare_rootfs(&sys, &b.plan, &Layout::V2, &mut gate).expect("prepared");
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV | MsFlags::MS_RDONLY;
    assert_eq!(
        sys.mounts()[2..5],
        [
            mount(Some("sysfs"), "fd:$ROOTFS/sys", Some("sysfs"), flags, None),
            mount(
                Some("/sys"),
                "fd:$ROOTFS/sys",
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None
            ),
            mount(
                None,
                "fd:$ROOTFS/sys",
                None,
                flags | MsFlags::MS_BIND | MsFlags::MS_REMOUNT,
                None
            ),
        ]
    );
}

#[test]
fn another_mount_error_fails_with_the_mount_named() {
    let b = Bundle::new(&config());
    let sys = b.recorder().failing(|call| match call {
        Call::Mount {
            fstype: Some(t), ..
        } if t == "proc" => Some(Errno::EBUSY),
        _ => None,
    });
    let mut gate = open_gate(&b.plan);
    let err = init::prepare_rootfs(&sys, &b.plan, &Layout::V2, &mut gate)
        .expect_err("the proc mount fails");
    let text = err.to_string();
    assert!(
        text.contains("mount proc on") && text.contains("/rootfs/proc (type proc"),
        "{text}"
    );
    assert!(text.ends_with("EBUSY: Device or resource busy"), "{text}");
}

#[test]
fn cgroup_mounts_wait_for_the_cgroup_namespace_and_build_the_v1_tree() {
    let mut c = config();
    c["mounts"] = json!([{"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                          "options": ["nosuid", "ro"]}]);
    let b = Bundle::new(&c);
    let sys = b.recorder();
    let mut gate = open_gate(&b.plan);
    let layout = Layout::V1 {
        hierarchies: vec![
            Hierarchy {
                mountpoint: "/sys/fs/cgroup/cpu,cpuacct".into(),
                options: vec!["cpu".into(), "cpuacct".into()],
            },
            Hierarchy {
                mountpoint: "/sys/fs/cgroup/systemd".into(),
                options: vec!["name=systemd".into()],
            },
        ],
        unified: Some("/sys/fs/cgroup/unified".into()),
    };
    init::prepare_rootfs(&sys, &b.plan, &layout, &mut gate).expect("prepared");
    let calls = sys.calls();
    let unshare = position(&sys, &Call::Unshare(CloneFlags::CLONE_NEWCGROUP));
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_RDONLY;
    let tmpfs = mount(
        Some("tmpfs"),
        "fd:$ROOTFS/sys/fs/cgroup",
        Some("tmpfs"),
        MsFlags::MS_NOSUID,
        Some("mode=755"),
    );
    assert!(unshare < position(&sys, &tmpfs));
    let at = position(&sys, &tmpfs);
    assert_eq!(
        calls[at..at + 5],
        [
            tmpfs.clone(),
            mount(
                Some("cgroup"),
                "fd:$ROOTFS/sys/fs/cgroup/cpu,cpuacct",
                Some("cgroup"),
                flags,
                Some("cpu,cpuacct")
            ),
            mount(
                Some("cgroup"),
                "fd:$ROOTFS/sys/fs/cgroup/systemd",
                Some("cgroup"),
                flags,
                Some("none,name=systemd")
            ),
            mount(
                Some("cgroup2"),
                "fd:$ROOTFS/sys/fs/cgroup/unified",
                Some("cgroup2"),
                flags,
                None
            ),
            // The remount reaches the tmpfs, not the directory below it.
            mount(
                None,
                "fd:$ROOTFS/sys/fs/cgroup",
                None,
                flags | MsFlags::MS_REMOUNT,
                None
            ),
        ]
    );
}

#[test]
fn config_devices_are_made_and_owned_and_replace_default_ones() {
    let mut c = config();
    c["linux"]["devices"] = json!([
        {"type": "c", "path": "/dev/fuse", "major": 10, "minor": 229, "fileMode": 0o640, "uid": 5, "gid": 6},
        {"type": "c", "path": "/dev/null", "major": 1, "minor": 3}
    ]);
    let b = Bundle::new(&c);
    let sys = b.recorder();
    let mut gate = open_gate(&b.plan);
    init::prepare_rootfs(&sys, &b.plan, &Layout::V2, &mut gate).expect("prepared");
    let mknod = position(
        &sys,
        &Call::Mknod {
            path: "$ROOTFS/dev/fuse".into(),
            kind: SFlag::S_IFCHR,
            perm: 0o640,
            dev: makedev(10, 229),
        },
    );
    let chmod = position(&sys, &Call::Chmod("fd:$ROOTFS/dev/fuse".into(), 0o640));
    let chown = position(&sys, &Call::Chown("fd:$ROOTFS/dev/fuse".into(), 5, 6));
    assert!(mknod < chmod && chmod < chown);
    position(
        &sys,
        &Call::Mknod {
            path: "$ROOTFS/dev/null".into(),
            kind: SFlag::S_IFCHR,
            perm: 0o666,
            dev: makedev(1, 3),
        },
    );
    // /dev/null comes from the config, not from the host.
    assert!(!sys.mounts().iter().any(|m| matches!(
        m,
        Call::Mount { source: Some(s), .. } if s == "/dev/null"
    )));
}

#[test]
fn pivot_root_stacks_the_old_root_makes_it_a_slave_and_detaches_it() {
    let b = Bundle::new(&config());
    let sys = b.recorder();
    init::pivot_into_rootfs(&sys, &b.plan).expect("pivoted");
    assert_eq!(
        sys.calls(),
        [
            Call::Chdir("$ROOTFS".into()),
            Call::PivotRoot(".".into(), ".".into()),
            Call::Fchdir("/".into()),
            mount(None, ".", None, MsFlags::MS_SLAVE | MsFlags::MS_REC, None),
            Call::Umount2(".".into(), MntFlags::MNT_DETACH),
            Call::Chdir("/".into()),
            mount(None, "/", None, MsFlags::MS_PRIVATE | MsFlags::MS_REC, None),
        ]
    );
}

#[test]
fn no_pivot_moves_the_rootfs_and_chroots() {
    let mut c = config();
    c["annotations"] = json!({palisade_common::annotations::NO_PIVOT: "true"});
    let b = Bundle::new(&c);
    let sys = b.recorder();
    init::pivot_into_rootfs(&sys, &b.plan).expect("pivoted");
    assert_eq!(
        sys.calls(),
        [
            Call::Chdir("$ROOTFS".into()),
            mount(Some("$ROOTFS"), "/", None, MsFlags::MS_MOVE, None),
            Call::Chroot(".".into()),
            Call::Chdir("/".into()),
            mount(None, "/", None, MsFlags::MS_PRIVATE | MsFlags::MS_REC, None),
        ]
    );
}

#[test]
fn chroot_only_is_a_bare_chroot() {
    let mut c = config();
    c["annotations"] = json!({palisade_common::annotations::CHROOT_ONLY: "true"});
    let b = Bundle::new(&c);
    let sys = b.recorder();
    init::pivot_into_rootfs(&sys, &b.plan).expect("pivoted");
    assert_eq!(
        sys.calls(),
        [
            Call::Chdir("$ROOTFS".into()),
            Call::Chroot(".".into()),
            Call::Chdir("/".into()),
            mount(None, "/", None, MsFlags::MS_PRIVATE | MsFlags::MS_REC, None),
        ]
    );
}

/// The whole setup, with a rootfs holding the masked and read-only paths.
fn run_setup(c: &Value, sys: impl FnOnce(&Bundle) -> Recorder) -> (Bundle, Recorder) {
    let b = Bundle::new(c);
    for dir in ["proc/acpi", "proc/sys", "work"] {
        std::fs::create_dir_all(b.plan.rootfs.join(dir)).expect("mkdir");
    }
    std::fs::write(b.plan.rootfs.join("proc/kcore"), "").expect("write");
    let sys = sys(&b);
    let mut gate = open_gate(&b.plan);
    let (_rx, tx) = nix::unistd::pipe().expect("pipe");
    init::setup(
        &sys,
        &b.plan,
        &Layout::V2,
        &mut gate,
        &mut Sender::new(tx),
        None,
    )
    .expect("set up");
    (b, sys)
}

#[test]
fn masked_files_get_dev_null_masked_directories_a_read_only_tmpfs() {
    let mut c = config();
    c["root"]["readonly"] = json!(true);
    c["linux"]["maskedPaths"] = json!(["/proc/kcore", "/proc/acpi", "/proc/missing"]);
    c["linux"]["readonlyPaths"] = json!(["/proc/sys", "/proc/none"]);
    let (_b, sys) = run_setup(&c, |b| {
        b.recorder()
            .with_statvfs(FsFlags::ST_NOSUID | FsFlags::ST_NODEV)
    });
    let calls = sys.calls();
    let after_pivot = position(&sys, &Call::PivotRoot(".".into(), ".".into()));
    let keep = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let ro_remount = keep | MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    let masked = position(
        &sys,
        &mount(
            Some("/dev/null"),
            "/proc/kcore",
            None,
            MsFlags::MS_BIND,
            None,
        ),
    );
    assert!(masked > after_pivot);
    assert_eq!(
        calls[masked..masked + 5],
        [
            mount(
                Some("/dev/null"),
                "/proc/kcore",
                None,
                MsFlags::MS_BIND,
                None
            ),
            mount(
                Some("tmpfs"),
                "/proc/acpi",
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None
            ),
            // Missing paths are skipped.
            mount(
                Some("/proc/sys"),
                "/proc/sys",
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None
            ),
            // The remount repeats the flags the mount has, or the kernel would clear them.
            mount(None, "/proc/sys", None, ro_remount, None),
            mount(None, "/", None, ro_remount, None),
        ]
    );
}

#[test]
fn privileges_are_dropped_in_an_order_the_kernel_accepts() {
    let (_b, sys) = run_setup(&config(), Bundle::recorder);
    let calls = sys.calls();
    let at = |call: Call| position(&sys, &call);
    assert_eq!(calls[0], Call::Sethostname("box".into()));
    // Kernel settings while still privileged, in the new cgroup namespace.
    let cgroup_ns = at(Call::Unshare(CloneFlags::CLONE_NEWCGROUP));
    let rlimit = at(Call::Setrlimit(Resource::RLIMIT_NOFILE, 100, 200));
    // The bounding set while CAP_SETPCAP is still there, everything but the configured set.
    let drop_sys_admin = at(Call::DropCap("bounding", CAP_SYS_ADMIN));
    assert!(!calls.contains(&Call::DropCap("bounding", CAP_KILL)));
    assert!(!calls.contains(&Call::DropCap("bounding", CAP_NET_BIND_SERVICE)));
    let last_drop = calls
        .iter()
        .rposition(|c| matches!(c, Call::DropCap("bounding", _)))
        .expect("drops");
    let keep = at(Call::Keepcaps(true));
    let groups = at(Call::Setgroups(vec![5]));
    let gid = at(Call::Setresgid(100));
    let uid = at(Call::Setresuid(1000));
    let unkeep = at(Call::Keepcaps(false));
    let names = |caps: &[caps::Capability]| caps.iter().map(ToString::to_string).collect();
    let inheritable = at(Call::SetCaps("inheritable", names(&[CAP_KILL])));
    let effective = at(Call::SetCaps("effective", names(&[CAP_KILL])));
    let permitted = at(Call::SetCaps(
        "permitted",
        names(&[CAP_KILL, CAP_NET_BIND_SERVICE]),
    ));
    let clear_ambient = at(Call::ClearCaps("ambient"));
    // Ambient only what is both permitted and inheritable.
    let ambient = at(Call::RaiseCap("ambient", CAP_KILL));
    assert!(!calls.contains(&Call::RaiseCap("ambient", CAP_NET_BIND_SERVICE)));
    let nnp = at(Call::NoNewPrivs);
    let cwd = at(Call::Chdir("/work".into()));
    let order = [
        cgroup_ns,
        rlimit,
        drop_sys_admin,
        last_drop,
        keep,
        groups,
        gid,
        uid,
        unkeep,
        inheritable,
        effective,
        permitted,
        clear_ambient,
        ambient,
        nnp,
        cwd,
    ];
    assert!(
        order.windows(2).all(|w| w[0] <= w[1]),
        "out of order: {order:?}\n{calls:#?}"
    );
    assert_eq!(cwd, calls.len() - 1);
}

#[test]
fn only_what_the_bounding_set_holds_beyond_the_config_is_dropped() {
    let (_b, sys) = run_setup(&config(), |b| {
        b.recorder().with_bounding([CAP_KILL, CAP_SYS_ADMIN].into())
    });
    let drops: Vec<Call> = sys
        .calls()
        .into_iter()
        .filter(|c| matches!(c, Call::DropCap(..)))
        .collect();
    assert_eq!(drops, [Call::DropCap("bounding", CAP_SYS_ADMIN)]);
}

#[test]
fn without_no_new_privileges_the_flag_is_left_alone() {
    let mut c = config();
    c["process"]["noNewPrivileges"] = json!(false);
    let (_b, sys) = run_setup(&c, Bundle::recorder);
    assert!(!sys.calls().contains(&Call::NoNewPrivs));
}

#[test]
fn namespaces_are_joined_by_path_before_the_new_ones_are_unshared() {
    let mut c = config();
    c["linux"]["namespaces"] = json!([
        {"type": "pid"}, {"type": "mount"}, {"type": "cgroup"},
        {"type": "network", "path": "/proc/self/ns/net"},
        {"type": "ipc", "path": "/proc/self/ns/ipc"}
    ]);
    c["hostname"] = Value::Null;
    // The runtime's own network namespace owns no sysctl of the container's.
    c["linux"]["sysctl"] = Value::Null;
    c["process"]["oomScoreAdj"] = json!(100);
    let b = Bundle::new(&c);
    let sys = b.recorder();
    init::join_namespaces(&sys, &b.plan, &mut || Ok(())).expect("joined");
    let calls = sys.calls();
    assert_eq!(calls.len(), 3);
    // In runc's order (ipc before net), whatever the config's.
    assert!(
        matches!(&calls[0], Call::Setns(ns, f) if ns.starts_with("ipc:[") && *f == CloneFlags::CLONE_NEWIPC)
    );
    assert!(
        matches!(&calls[1], Call::Setns(ns, f) if ns.starts_with("net:[") && *f == CloneFlags::CLONE_NEWNET)
    );
    // The cgroup namespace waits for the init to be in its cgroup.
    assert_eq!(
        calls[2],
        Call::Unshare(CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS)
    );
}

#[test]
fn a_namespace_path_that_cannot_be_opened_fails_before_any_setns() {
    let mut c = config();
    c["linux"]["namespaces"] = json!([
        {"type": "mount"},
        {"type": "network", "path": "/proc/self/ns/net"},
        {"type": "ipc", "path": "/nonexistent/ns/ipc"}
    ]);
    c["hostname"] = Value::Null;
    c["linux"]["sysctl"] = Value::Null;
    let b = Bundle::new(&c);
    let sys = b.recorder();
    let err = init::join_namespaces(&sys, &b.plan, &mut || Ok(())).expect_err("cannot open");
    assert!(
        err.to_string()
            .contains("open namespace /nonexistent/ns/ipc")
    );
    assert_eq!(sys.calls(), []);
}

#[test]
fn the_mount_target_of_a_file_bind_is_a_file() {
    let mut c = config();
    c["mounts"] = json!([{"destination": "/etc/hostname", "type": "bind",
                          "source": "hostname", "options": ["bind"]}]);
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = dir.path().canonicalize().expect("canonical");
    std::fs::create_dir(bundle.join("rootfs")).expect("mkdir");
    std::fs::write(bundle.join("hostname"), "box\n").expect("write");
    std::fs::write(bundle.join("config.json"), c.to_string()).expect("write");
    let plan = spec::load(&bundle, "c1", false).expect("valid");
    let sys = Recorder::new(&plan.rootfs);
    let mut gate = open_gate(&plan);
    init::prepare_rootfs(&sys, &plan, &Layout::V2, &mut gate).expect("prepared");
    let source = bundle.join("hostname").display().to_string();
    assert_eq!(
        sys.mounts()[2],
        mount(
            Some(&source),
            "fd:$ROOTFS/etc/hostname",
            None,
            MsFlags::MS_BIND,
            None
        )
    );
    assert!(Path::new(&plan.rootfs.join("etc/hostname")).is_file());
}

// --- user namespaces --------------------------------------------------------------------------

fn user_ns_config(namespaces: Value, maps: bool) -> Value {
    let mut c = config();
    c["linux"]["namespaces"] = namespaces;
    c["hostname"] = Value::Null;
    c["linux"]["sysctl"] = Value::Null;
    if maps {
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    }
    c
}

#[test]
fn a_new_user_namespace_is_unshared_mapped_and_entered_as_root_before_the_others() {
    let c = user_ns_config(
        json!([{"type": "pid"}, {"type": "mount"}, {"type": "user"}, {"type": "cgroup"},
               {"type": "network", "path": "/proc/self/ns/net"}]),
        true,
    );
    let b = Bundle::new(&c);
    let sys = b.recorder();
    let mut mapped_at = None;
    init::join_namespaces(&sys, &b.plan, &mut || {
        mapped_at = Some(sys.calls().len());
        Ok(())
    })
    .expect("joined");
    let calls = sys.calls();
    assert_eq!(calls.len(), 6, "{calls:#?}");
    assert_eq!(calls[0], Call::Setgroups(vec![]));
    // A namespace given by path is joined with the host's privileges, before the new user
    // namespace takes them away.
    assert!(
        matches!(&calls[1], Call::Setns(ns, f) if ns.starts_with("net:[") && *f == CloneFlags::CLONE_NEWNET)
    );
    assert_eq!(calls[2], Call::Unshare(CloneFlags::CLONE_NEWUSER));
    // create writes the maps right after the unshare.
    assert_eq!(mapped_at, Some(3));
    assert_eq!(calls[3], Call::Setresgid(0));
    assert_eq!(calls[4], Call::Setresuid(0));
    // The other new namespaces come after, so that the user namespace owns them.
    assert_eq!(
        calls[5],
        Call::Unshare(CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS)
    );
}

#[test]
fn a_user_namespace_joined_by_path_comes_before_the_namespaces_it_owns() {
    let c = user_ns_config(
        json!([{"type": "mount"}, {"type": "network", "path": "/proc/self/ns/net"},
               {"type": "user", "path": "/proc/self/ns/user"}, {"type": "pid"}]),
        false,
    );
    let b = Bundle::new(&c);
    let sys = b.recorder();
    let mut called = 0;
    init::join_namespaces(&sys, &b.plan, &mut || {
        called += 1;
        Ok(())
    })
    .expect("joined");
    // Nothing to map in a joined namespace.
    assert_eq!(called, 0);
    let calls = sys.calls();
    assert_eq!(calls.len(), 6, "{calls:#?}");
    assert_eq!(calls[0], Call::Setgroups(vec![]));
    assert!(
        matches!(&calls[1], Call::Setns(ns, f) if ns.starts_with("user:[") && *f == CloneFlags::CLONE_NEWUSER)
    );
    assert_eq!(calls[2], Call::Setresgid(0));
    assert_eq!(calls[3], Call::Setresuid(0));
    // This test's own network namespace is owned by its user namespace: after it.
    assert!(
        matches!(&calls[4], Call::Setns(ns, f) if ns.starts_with("net:[") && *f == CloneFlags::CLONE_NEWNET)
    );
    assert_eq!(
        calls[5],
        Call::Unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID)
    );
}

#[test]
fn the_maps_of_a_joined_user_namespace_must_be_the_configured_ones() {
    // The test's own user namespace: the initial one maps everything to itself.
    let own = std::fs::read_to_string("/proc/self/uid_map").expect("read uid_map");
    let mut c = user_ns_config(
        json!([{"type": "mount"}, {"type": "user", "path": "/proc/self/ns/user"}, {"type": "pid"}]),
        true,
    );
    let b = Bundle::new(&c);
    let err = init::join_namespaces(&b.recorder(), &b.plan, &mut || Ok(()))
        .expect_err("other maps")
        .to_string();
    assert!(
        err.starts_with("linux.uidMappings: the user namespace /proc/self/ns/user maps"),
        "{err}"
    );
    let lines = spec::idmap::parse_proc(&own).expect("a uid map");
    let own: Vec<Value> = lines
        .iter()
        .map(|m| json!({"containerID": m.container, "hostID": m.host, "size": m.size}))
        .collect();
    let gid = std::fs::read_to_string("/proc/self/gid_map").expect("read gid_map");
    let gid: Vec<Value> = spec::idmap::parse_proc(&gid)
        .expect("a gid map")
        .iter()
        .map(|m| json!({"containerID": m.container, "hostID": m.host, "size": m.size}))
        .collect();
    c["linux"]["uidMappings"] = json!(own);
    c["linux"]["gidMappings"] = json!(gid);
    if lines.iter().any(|m| m.container == 0) {
        let b = Bundle::new(&c);
        init::join_namespaces(&b.recorder(), &b.plan, &mut || Ok(())).expect("the same maps");
    }
}

#[test]
fn config_devices_in_a_user_namespace_are_bound_from_the_host() {
    let mut c = user_ns_config(
        json!([{"type": "mount"}, {"type": "user"}, {"type": "pid"}]),
        true,
    );
    c["mounts"] = json!([]);
    c["linux"]["devices"] = json!([{"path": "/dev/null", "type": "c", "major": 1, "minor": 3}]);
    let b = Bundle::new(&c);
    let sys = b.recorder();
    let mut gate = open_gate(&b.plan);
    init::prepare_rootfs(&sys, &b.plan, &Layout::V2, &mut gate).expect("prepared");
    assert!(sys.calls().contains(&mount(
        Some("/dev/null"),
        "fd:$ROOTFS/dev/null",
        None,
        MsFlags::MS_BIND,
        None
    )));
    // No node is made, and the host's node is neither chmod'ed nor chown'ed through the bind.
    assert!(
        !sys.calls()
            .iter()
            .any(|c| matches!(c, Call::Mknod { .. } | Call::Chmod(..) | Call::Chown(..)))
    );
}
#[test]
fn sysctls_are_written_after_the_pivot_and_before_proc_sys_is_made_read_only() {
    let mut c = config();
    c["linux"]["readonlyPaths"] = json!(["/proc/sys"]);
    let (_b, sys) = run_setup(&c, Bundle::recorder);
    let pivot = position(&sys, &Call::PivotRoot(".".into(), ".".into()));
    let sysctl = position(
        &sys,
        &Call::Write("/proc/sys/net/ipv4/ip_forward".into(), "1".into()),
    );
    let readonly = position(
        &sys,
        &mount(
            Some("/proc/sys"),
            "/proc/sys",
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        ),
    );
    assert!(
        pivot < sysctl && sysctl < readonly,
        "pivot {pivot}, sysctl {sysctl}, read-only /proc/sys {readonly}"
    );
}

#[test]
fn recursive_options_are_set_on_the_whole_tree_after_the_mount() {
    use crate::spec::RecursiveAttr;
    let mut c = config();
    c["mounts"] = json!([{"destination": "/data", "source": "vol",
                          "options": ["rbind", "rro", "rnosuid", "rprivate"]}]);
    let b = Bundle::new(&c);
    assert_eq!(
        b.plan.mounts[0].recursive,
        Some(RecursiveAttr {
            set: 0x1 | 0x2,
            clear: 0
        })
    );
    let sys = b.recorder();
    let mut gate = open_gate(&b.plan);
    init::prepare_rootfs(&sys, &b.plan, &Layout::V2, &mut gate).expect("prepared");
    let vol = b.path.join("vol").display().to_string();
    let calls = sys.calls();
    let bind = position(
        &sys,
        &mount(
            Some(&vol),
            "fd:$ROOTFS/data",
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        ),
    );
    assert_eq!(
        calls[bind + 1..bind + 3],
        [
            mount(
                None,
                "fd:$ROOTFS/data",
                None,
                MsFlags::MS_PRIVATE | MsFlags::MS_REC,
                None
            ),
            Call::MountSetattr {
                target: "fd:$ROOTFS/data".into(),
                recursive: true,
                set: 0x1 | 0x2,
                clear: 0,
            },
        ]
    );
}

#[test]
fn recursive_options_on_a_kernel_without_mount_setattr_fail_clearly() {
    let mut c = config();
    c["mounts"] = json!([{"destination": "/data", "source": "vol", "options": ["rbind", "rro"]}]);
    let b = Bundle::new(&c);
    let sys = b.recorder().failing(|call| match call {
        Call::MountSetattr { .. } => Some(Errno::ENOSYS),
        _ => None,
    });
    let mut gate = open_gate(&b.plan);
    let err =
        init::prepare_rootfs(&sys, &b.plan, &Layout::V2, &mut gate).expect_err("no mount_setattr");
    assert_eq!(
        err.to_string(),
        "mounts[0] (/data): recursive mount options (rro, rnosuid, …) need mount_setattr(2), \
         Linux 5.12 or later, and this kernel does not have it"
    );
}

/// A rootfs entry made before the mounts: a directory, or a symlink to the target.
enum Made {
    Dir(&'static str),
    Link(&'static str, &'static str),
}

#[rstest::rstest]
#[case::proc_to_the_root(&[Made::Link("proc", "/")], json!({"destination": "/proc", "type": "proc", "source": "proc"}),
    "mounts[0]: proc must be mounted on an ordinary directory, and /proc is reached through a symlink in the rootfs (to /); refused, as runc does")]
#[case::proc_elsewhere(&[Made::Dir("tmp"), Made::Link("proc", "tmp")], json!({"destination": "/proc", "type": "proc", "source": "proc"}),
    "mounts[0]: proc must be mounted on an ordinary directory, and /proc is reached through a symlink in the rootfs (to /tmp); refused, as runc does")]
#[case::sys_escaping(&[Made::Link("sys", "../../../etc")], json!({"destination": "/sys", "type": "sysfs", "source": "sysfs"}),
    "mounts[0]: sysfs must be mounted on an ordinary directory, and /sys is reached through a symlink in the rootfs (to /etc); refused, as runc does")]
#[case::symlink_in_a_parent(&[Made::Dir("real/fs"), Made::Link("sys", "real")], json!({"destination": "/sys/fs", "type": "sysfs", "source": "sysfs"}),
    "mounts[0]: sysfs must be mounted on an ordinary directory, and /sys/fs is reached through a symlink in the rootfs (to /real/fs); refused, as runc does")]
#[case::volume_into_proc_sys(&[Made::Dir("proc/sys"), Made::Link("data", "/proc/sys")], json!({"destination": "/data", "source": "vol", "options": ["rbind"]}),
    "mounts[0]: /data (through a symlink, it is /proc/sys in the rootfs) is inside /proc, where nothing but lxcfs's files (/proc/cpuinfo, /proc/diskstats, /proc/meminfo, /proc/stat, /proc/swaps, /proc/uptime, /proc/loadavg, /proc/slabinfo, /proc/net/dev, /proc/sys/kernel/ns_last_pid) may be mounted")]
#[case::tmpfs_over_proc(&[], json!({"destination": "/proc", "type": "tmpfs", "source": "tmpfs"}),
    "mounts[0]: /proc is /proc, where only procfs may be mounted")]
#[case::volume_onto_proc_through_a_symlink(&[Made::Dir("proc"), Made::Link("data", "proc")], json!({"destination": "/data", "source": "vol", "options": ["rbind"]}),
    "mounts[0]: /data (through a symlink, it is /proc in the rootfs) is /proc, where only procfs may be mounted")]
fn unsafe_destinations_are_refused(
    #[case] made: &[Made],
    #[case] entry: Value,
    #[case] error: &str,
) {
    let mut c = config();
    c["mounts"] = json!([entry]);
    let b = Bundle::new(&c);
    for m in made {
        match m {
            Made::Dir(p) => std::fs::create_dir_all(b.plan.rootfs.join(p)).expect("mkdir"),
            Made::Link(p, to) => symlink(to, b.plan.rootfs.join(p)).expect("symlink"),
        }
    }
    let sys = b.recorder();
    let mut gate = open_gate(&b.plan);
    let err = init::prepare_rootfs(&sys, &b.plan, &Layout::V2, &mut gate).expect_err("refused");
    assert_eq!(err.to_string(), error);
    // Refused before anything was mounted there.
    assert_eq!(sys.mounts().len(), 2, "{:#?}", sys.mounts());
}

#[rstest::rstest]
#[case::proc_on_a_directory(&[Made::Dir("proc")], json!({"destination": "/proc", "type": "proc", "source": "proc"}))]
#[case::proc_made_missing(&[], json!({"destination": "/proc", "type": "proc", "source": "proc"}))]
#[case::lxcfs_file(&[Made::Dir("proc")], json!({"destination": "/proc/meminfo", "source": "vol", "options": ["bind"]}))]
#[case::symlinked_volume_elsewhere(&[Made::Dir("srv"), Made::Link("data", "/srv")], json!({"destination": "/data", "source": "vol", "options": ["rbind"]}))]
#[case::sysfs_below_a_directory(&[Made::Dir("sys")], json!({"destination": "/sys", "type": "sysfs", "source": "sysfs"}))]
fn safe_destinations_are_mounted(#[case] made: &[Made], #[case] entry: Value) {
    let mut c = config();
    c["mounts"] = json!([entry]);
    let b = Bundle::new(&c);
    for m in made {
        match m {
            Made::Dir(p) => std::fs::create_dir_all(b.plan.rootfs.join(p)).expect("mkdir"),
            Made::Link(p, to) => symlink(to, b.plan.rootfs.join(p)).expect("symlink"),
        }
    }
    let sys = b.recorder();
    let mut gate = open_gate(&b.plan);
    init::prepare_rootfs(&sys, &b.plan, &Layout::V2, &mut gate).expect("mounted");
}

/// With no_new_privs the filter is loaded last, after the capabilities; without it, before the
/// user and capabilities change (the kernel wants CAP_SYS_ADMIN then), as runc does.
#[rstest::rstest]
#[case::with_no_new_privs(true)]
#[case::without(false)]
fn seccomp_is_loaded_where_the_kernel_allows_it(#[case] no_new_privs: bool) {
    let mut c = config();
    c["process"]["noNewPrivileges"] = json!(no_new_privs);
    c["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}]});
    let (_b, sys) = run_setup(&c, Bundle::recorder);
    let calls = sys.calls();
    let at = |wanted: &dyn Fn(&Call) -> bool| calls.iter().position(wanted);
    let seccomp = at(&|c| matches!(c, Call::Seccomp(_))).expect("the filter is loaded");
    assert_eq!(
        calls
            .iter()
            .filter(|c| matches!(c, Call::Seccomp(_)))
            .count(),
        1,
        "loaded once"
    );
    let setuid = at(&|c| matches!(c, Call::Setresuid(_))).expect("setresuid");
    if no_new_privs {
        let nnp = at(&|c| matches!(c, Call::NoNewPrivs)).expect("no_new_privs");
        assert!(seccomp > nnp && seccomp > setuid, "{calls:#?}");
    } else {
        assert!(seccomp < setuid, "{calls:#?}");
    }
}

#[test]
fn cgroups_in_a_user_namespace_without_a_cgroup_namespace_are_the_container_s_bound() {
    let mut c = user_ns_config(
        json!([{"type": "mount"}, {"type": "user"}, {"type": "pid"}]),
        true,
    );
    c["mounts"] = json!([{"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                          "options": ["nosuid", "ro"]}]);
    c["linux"]["cgroupsPath"] = json!("/pal/c1");
    let b = Bundle::new(&c);
    let layout = Layout::V1 {
        hierarchies: vec![Hierarchy {
            mountpoint: "/sys/fs/cgroup/cpu".into(),
            options: vec!["cpu".into()],
        }],
        unified: Some("/sys/fs/cgroup/unified".into()),
    };
    // Under the bind's remount the kernel refuses to drop the host mount's locked flags once.
    let sys = b
        .recorder()
        .failing(|call| match call {
            Call::Mount { flags, .. }
                if flags.contains(MsFlags::MS_REMOUNT | MsFlags::MS_BIND)
                    && !flags.contains(MsFlags::MS_NODEV) =>
            {
                Some(Errno::EPERM)
            }
            _ => None,
        })
        .with_statvfs(FsFlags::ST_NODEV | FsFlags::ST_NOEXEC);
    let mut gate = open_gate(&b.plan);
    init::prepare_rootfs(&sys, &b.plan, &layout, &mut gate).expect("prepared");
    let mounts = sys.mounts();
    let ro = MsFlags::MS_NOSUID | MsFlags::MS_RDONLY;
    let locked = MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let remount = MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
    assert_eq!(
        mounts[2..10],
        [
            mount(
                Some("tmpfs"),
                "fd:$ROOTFS/sys/fs/cgroup",
                Some("tmpfs"),
                MsFlags::MS_NOSUID,
                Some("mode=755")
            ),
            // No cgroupfs: the container's own directory of each hierarchy.
            mount(
                Some("/sys/fs/cgroup/cpu/pal/c1"),
                "fd:$ROOTFS/sys/fs/cgroup/cpu",
                None,
                MsFlags::MS_BIND,
                None
            ),
            mount(
                None,
                "fd:$ROOTFS/sys/fs/cgroup/cpu",
                None,
                ro | remount,
                None
            ),
            mount(
                None,
                "fd:$ROOTFS/sys/fs/cgroup/cpu",
                None,
                ro | remount | locked,
                None
            ),
            mount(
                Some("/sys/fs/cgroup/unified/pal/c1"),
                "fd:$ROOTFS/sys/fs/cgroup/unified",
                None,
                MsFlags::MS_BIND,
                None
            ),
            mount(
                None,
                "fd:$ROOTFS/sys/fs/cgroup/unified",
                None,
                ro | remount,
                None
            ),
            mount(
                None,
                "fd:$ROOTFS/sys/fs/cgroup/unified",
                None,
                ro | remount | locked,
                None
            ),
            mount(
                None,
                "fd:$ROOTFS/sys/fs/cgroup",
                None,
                ro | MsFlags::MS_REMOUNT,
                None
            ),
        ]
    );
    assert!(
        !mounts
            .iter()
            .any(|m| matches!(m, Call::Mount { fstype: Some(t), .. } if t.starts_with("cgroup")))
    );

    // Pure cgroup v2: the one directory.
    let sys = b.recorder();
    let mut gate = open_gate(&b.plan);
    init::prepare_rootfs(&sys, &b.plan, &Layout::V2, &mut gate).expect("prepared");
    assert_eq!(
        sys.mounts()[2..4],
        [
            mount(
                Some("/sys/fs/cgroup/pal/c1"),
                "fd:$ROOTFS/sys/fs/cgroup",
                None,
                MsFlags::MS_BIND,
                None
            ),
            mount(None, "fd:$ROOTFS/sys/fs/cgroup", None, ro | remount, None),
        ]
    );
}

#[test]
fn tmpcopyup_mounts_writable_copies_the_directory_below_then_remounts_read_only() {
    let mut c = config();
    c["mounts"] = json!([
        {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
         "options": ["tmpcopyup", "nosuid", "ro", "mode=755"]}
    ]);
    let b = Bundle::new(&c);
    let sys = b.recorder();
    let mut gate = open_gate(&b.plan);
    init::prepare_rootfs(&sys, &b.plan, &Layout::V2, &mut gate).expect("prepared");
    let writable = mount(
        Some("tmpfs"),
        "fd:$ROOTFS/run",
        Some("tmpfs"),
        MsFlags::MS_NOSUID,
        Some("mode=755"),
    );
    // The recorder mounts nothing, so both descriptors name the same directory here; in a real
    // mount namespace the second reaches the new tmpfs.
    let copy = Call::CopyTree("fd:$ROOTFS/run".into(), "fd:$ROOTFS/run".into());
    let read_only = mount(
        None,
        "fd:$ROOTFS/run",
        None,
        MsFlags::MS_NOSUID | MsFlags::MS_RDONLY | MsFlags::MS_REMOUNT,
        None,
    );
    let (w, c, r) = (
        position(&sys, &writable),
        position(&sys, &copy),
        position(&sys, &read_only),
    );
    assert!(w < c && c < r, "{:#?}", sys.calls());
}
