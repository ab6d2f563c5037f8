//! spec → plan, one section at a time: good input gives the expected part of the plan, bad input
//! an error that names the field.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::sys::resource::Resource;
use nix::sys::stat::SFlag;
use oci_spec::runtime::{Linux, Process, Spec};
use rstest::rstest;
use serde_json::{Value, json};

use super::*;

fn linux(value: Value) -> Linux {
    serde_json::from_value(value).expect("a valid linux section")
}

fn spec(value: Value) -> Spec {
    let mut value = value;
    value["ociVersion"] = json!("1.0.2");
    serde_json::from_value(value).expect("a valid config")
}

/// A process section: `sh` in `/` as root, with `extra` merged in.
fn process_of(extra: Value) -> Process {
    let mut value = json!({"user": {"uid": 0, "gid": 0}, "args": ["sh"], "cwd": "/"});
    for (k, v) in extra.as_object().expect("an object") {
        value[k] = v.clone();
    }
    serde_json::from_value(value).expect("a valid process section")
}

fn message<T: std::fmt::Debug>(result: Result<T, SpecError>) -> String {
    result.expect_err("the input is invalid").to_string()
}

fn ns(flag: CloneFlags) -> NamespacePlan {
    NamespacePlan { flag, path: None }
}

/// A bundle with a `rootfs` directory and the given config.json.
fn bundle(config: &Value) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("rootfs")).expect("mkdir rootfs");
    std::fs::write(dir.path().join("config.json"), config.to_string()).expect("write config");
    dir
}

/// The smallest config this runtime accepts.
fn minimal() -> Value {
    json!({
        "ociVersion": "1.0.2",
        "root": {"path": "rootfs"},
        "process": {"user": {"uid": 0, "gid": 0}, "args": ["true"], "cwd": "/"},
        "linux": {"namespaces": [{"type": "mount"}]}
    })
}

// --- linux.namespaces -------------------------------------------------------------------------

#[rstest]
#[case::mount_only(json!([{"type": "mount"}]), vec![ns(CloneFlags::CLONE_NEWNS)])]
#[case::in_config_order(
    json!([{"type": "pid"}, {"type": "network"}, {"type": "mount"}, {"type": "cgroup"}]),
    vec![ns(CloneFlags::CLONE_NEWPID), ns(CloneFlags::CLONE_NEWNET), ns(CloneFlags::CLONE_NEWNS), ns(CloneFlags::CLONE_NEWCGROUP)]
)]
#[case::joined_by_path(
    json!([{"type": "mount"}, {"type": "network", "path": "/run/netns/x"}]),
    vec![ns(CloneFlags::CLONE_NEWNS), NamespacePlan { flag: CloneFlags::CLONE_NEWNET, path: Some("/run/netns/x".into()) }]
)]
#[case::time_and_ipc_and_uts(
    json!([{"type": "mount"}, {"type": "time"}, {"type": "ipc"}, {"type": "uts"}]),
    vec![ns(CloneFlags::CLONE_NEWNS), ns(CloneFlags::from_bits_retain(0x80)), ns(CloneFlags::CLONE_NEWIPC), ns(CloneFlags::CLONE_NEWUTS)]
)]
fn namespaces_plan(#[case] namespaces: Value, #[case] expected: Vec<NamespacePlan>) {
    let plan = super::namespaces(&linux(json!({"namespaces": namespaces}))).expect("valid");
    assert_eq!(plan, expected);
}

#[rstest]
#[case::twice(json!([{"type": "mount"}, {"type": "pid"}, {"type": "pid"}]), "invalid config: linux.namespaces[2]: namespace pid listed twice")]
fn namespaces_refused(#[case] namespaces: Value, #[case] error: &str) {
    let result = super::namespaces(&linux(json!({"namespaces": namespaces})));
    assert_eq!(message(result), error);
}

#[test]
fn without_a_linux_section_the_default_namespaces_apply() {
    let plan = super::namespaces(&Linux::default()).expect("valid");
    assert!(plan.contains(&ns(CloneFlags::CLONE_NEWNS)));
}

#[test]
fn seccomp_is_compiled_or_refused_by_field() {
    let l = linux(json!({"seccomp": {"defaultAction": "SCMP_ACT_ALLOW"}}));
    assert!(seccomp(&l).expect("compiles").is_some());
    assert!(seccomp(&Linux::default()).expect("none").is_none());
    let bad = linux(json!({"seccomp": {"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO",
                      "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}}));
    assert!(
        message(seccomp(&bad))
            .starts_with("invalid config: linux.seccomp.syscalls[0].args[0].index"),
        "{}",
        message(seccomp(&bad))
    );
}

// --- process ----------------------------------------------------------------------------------

#[test]
fn process_minimal() {
    let plan = process(&process_of(json!({}))).expect("valid");
    assert_eq!(
        plan,
        ProcessPlan {
            args: vec![c"sh".into()],
            env: vec![],
            path_env: DEFAULT_PATH.into(),
            cwd: "/".into(),
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            caps: CapsPlan::default(),
            rlimits: vec![],
            no_new_privileges: false,
            oom_score_adj: None,
            umask: None,
            scheduler: None,
            io_priority: None,
            exec_cpu_affinity: None,
            apparmor_profile: None,
            selinux_label: None,
        }
    );
}

#[test]
fn process_everything() {
    let plan = process(&process_of(json!({
        "args": ["/bin/app", "--flag"],
        "env": ["TERM=xterm", "PATH=/bin:/opt/bin"],
        "cwd": "/work",
        "user": {"uid": 1000, "gid": 100, "additionalGids": [5, 6]},
        "capabilities": {
            "bounding": ["CAP_KILL", "CAP_CHOWN"], "effective": ["CAP_KILL"],
            "permitted": ["CAP_KILL"], "inheritable": [], "ambient": ["CAP_KILL"]
        },
        "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 4096},
                    {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}],
        "noNewPrivileges": true,
        "oomScoreAdj": 500
    })))
    .expect("valid");
    use caps::Capability::{CAP_CHOWN, CAP_KILL};
    assert_eq!(
        plan,
        ProcessPlan {
            args: vec![c"/bin/app".into(), c"--flag".into()],
            env: vec![c"TERM=xterm".into(), c"PATH=/bin:/opt/bin".into()],
            path_env: "/bin:/opt/bin".into(),
            cwd: "/work".into(),
            uid: 1000,
            gid: 100,
            additional_gids: vec![5, 6],
            caps: CapsPlan {
                bounding: [CAP_KILL, CAP_CHOWN].into(),
                effective: [CAP_KILL].into(),
                permitted: [CAP_KILL].into(),
                inheritable: [].into(),
                ambient: [CAP_KILL].into(),
            },
            rlimits: vec![
                (Resource::RLIMIT_NOFILE, 1024, 4096),
                (Resource::RLIMIT_CORE, 0, 0)
            ],
            no_new_privileges: true,
            oom_score_adj: Some(500),
            umask: None,
            scheduler: None,
            io_priority: None,
            exec_cpu_affinity: None,
            apparmor_profile: None,
            selinux_label: None,
        }
    );
}

#[rstest]
#[case::terminal(json!({"terminal": true}), "process.terminal (no --console-socket: run without a terminal) is not supported by palisade-runtime")]
#[case::no_args(json!({"args": []}), "process.args must not be empty")]
#[case::relative_cwd(json!({"cwd": "work"}), "invalid config: process.cwd: must be absolute")]
#[case::nul_in_args(json!({"args": ["a\u{0}b"]}), "invalid config: process.args: contains a NUL byte")]
#[case::nul_in_env(json!({"env": ["A=\u{0}"]}), "invalid config: process.env: contains a NUL byte")]
fn process_refused(#[case] extra: Value, #[case] error: &str) {
    assert_eq!(message(process(&process_of(extra))), error);
}

#[test]
fn every_rlimit_type_of_the_spec_maps_to_a_resource() {
    for name in [
        "AS",
        "CORE",
        "CPU",
        "DATA",
        "FSIZE",
        "LOCKS",
        "MEMLOCK",
        "MSGQUEUE",
        "NICE",
        "NOFILE",
        "NPROC",
        "RSS",
        "RTPRIO",
        "RTTIME",
        "SIGPENDING",
        "STACK",
    ] {
        let name = format!("RLIMIT_{name}");
        let p = process_of(json!({"rlimits": [{"type": name, "soft": 1, "hard": 2}]}));
        let plan = process(&p).expect("valid");
        assert_eq!(plan.rlimits.len(), 1, "{name}");
        assert_eq!(format!("{:?}", plan.rlimits[0].0), name);
    }
    assert!(rlimit_resource("RLIMIT_BOGUS").is_none());
}

// --- hostname ---------------------------------------------------------------------------------

#[rstest]
#[case::set_in_new_uts(json!("box"), vec![ns(CloneFlags::CLONE_NEWUTS)], Some("box"))]
#[case::none_without_uts(Value::Null, vec![], None)]
#[case::empty_is_none(json!(""), vec![], None)]
fn hostname_plan(
    #[case] hostname: Value,
    #[case] namespaces: Vec<NamespacePlan>,
    #[case] expected: Option<&str>,
) {
    let s = spec(json!({"hostname": hostname}));
    assert_eq!(
        super::hostname(&s, &namespaces).expect("valid").as_deref(),
        expected
    );
}

#[test]
fn hostname_without_a_uts_namespace_is_refused() {
    let s = spec(json!({"hostname": "box"}));
    assert_eq!(
        message(super::hostname(&s, &[ns(CloneFlags::CLONE_NEWNS)])),
        "invalid config: hostname: requires a uts namespace"
    );
}

#[test]
fn hostname_in_a_joined_uts_namespace_is_set_there() {
    let s = spec(json!({"hostname": "box"}));
    let joined = NamespacePlan {
        flag: CloneFlags::CLONE_NEWUTS,
        path: Some("/proc/1/ns/uts".into()),
    };
    assert_eq!(
        super::hostname(&s, &[joined]).expect("valid").as_deref(),
        Some("box")
    );
}

// --- mounts -----------------------------------------------------------------------------------

fn mount_plan(
    destination: &str,
    fstype: &str,
    source: Option<&Path>,
    bind: bool,
    flags: MsFlags,
    data: &str,
) -> MountPlan {
    MountPlan {
        destination: destination.into(),
        fstype: fstype.into(),
        source: source.map(Path::to_path_buf),
        bind,
        flags,
        propagation: vec![],
        recursive: None,
        data: data.into(),
        copy_up: false,
    }
}

#[test]
fn mounts_in_config_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = dir.path();
    std::fs::create_dir(b.join("vol")).expect("mkdir");
    // An absolute source of the bundle's own (a minimal system may have no /etc/hosts).
    let hosts = b.join("hosts");
    std::fs::write(&hosts, "").expect("write hosts");
    let s = spec(json!({"mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
        // A relative bind source is relative to the bundle; `rbind` implies type bind.
        {"destination": "/data", "source": "vol", "options": ["rbind", "ro", "rshared"]},
        // Type bind without a bind option is a bind too.
        {"destination": "/etc/hosts", "type": "bind", "source": hosts},
        {"destination": "/mnt", "source": "none"},
        // Recursive attributes are not mount(2) flags nor data.
        {"destination": "/vol", "source": "vol", "options": ["rbind", "rro", "rnosuid", "rnoatime"]}
    ]}));
    let plans = mounts(&s, b).expect("valid");
    let mut data = mount_plan(
        "/data",
        "bind",
        Some(&b.join("vol")),
        true,
        MsFlags::MS_REC | MsFlags::MS_RDONLY,
        "",
    );
    data.propagation = vec![MsFlags::MS_SHARED | MsFlags::MS_REC];
    assert_eq!(
        plans,
        vec![
            mount_plan(
                "/proc",
                "proc",
                Some(Path::new("proc")),
                false,
                MsFlags::empty(),
                ""
            ),
            mount_plan(
                "/dev",
                "tmpfs",
                Some(Path::new("tmpfs")),
                false,
                MsFlags::MS_NOSUID,
                "mode=755"
            ),
            data,
            mount_plan(
                "/etc/hosts",
                "bind",
                Some(&hosts),
                true,
                MsFlags::empty(),
                ""
            ),
            mount_plan(
                "/mnt",
                "none",
                Some(Path::new("none")),
                false,
                MsFlags::empty(),
                ""
            ),
            MountPlan {
                recursive: Some(RecursiveAttr {
                    set: options::attr::RDONLY | options::attr::NOSUID | options::attr::NOATIME,
                    clear: options::attr::ATIME,
                }),
                ..mount_plan(
                    "/vol",
                    "bind",
                    Some(&b.join("vol")),
                    true,
                    MsFlags::MS_REC,
                    ""
                )
            },
        ]
    );
}

#[rstest]
#[case::relative_destination(json!({"destination": "proc", "type": "proc"}), "invalid config: mounts[1].destination: proc must be absolute without ..")]
#[case::dotdot_destination(json!({"destination": "/a/../b", "type": "tmpfs"}), "invalid config: mounts[1].destination: /a/../b must be absolute without ..")]
#[case::missing_bind_source(json!({"destination": "/data", "source": "/no/such/dir", "options": ["bind"]}), "invalid config: mounts[1].source: bind mount source /no/such/dir of /data does not exist")]
#[case::bind_without_source(json!({"destination": "/data", "type": "bind"}), "invalid config: mounts[1].source: bind mount source  of /data does not exist")]
#[case::tmpcopyup_on_a_bind(json!({"destination": "/data", "source": "/", "options": ["rbind", "tmpcopyup"]}), "invalid config: mounts[1].options: tmpcopyup copies into a tmpfs, and this mount is of type bind")]
#[case::tmpcopyup_on_proc(json!({"destination": "/p", "type": "proc", "source": "proc", "options": ["tmpcopyup"]}), "invalid config: mounts[1].options: tmpcopyup copies into a tmpfs, and this mount is of type proc")]
#[case::idmap(json!({"destination": "/data", "source": "/", "options": ["rbind", "idmap"]}), "invalid config: mounts[1].options: idmap: id-mapped mounts (mount_setattr with MOUNT_ATTR_IDMAP) are not implemented by palisade-runtime")]
#[case::ridmap(json!({"destination": "/data", "source": "/", "options": ["ridmap", "rbind"]}), "invalid config: mounts[1].options: ridmap: id-mapped mounts (mount_setattr with MOUNT_ATTR_IDMAP) are not implemented by palisade-runtime")]
#[case::uid_mappings(json!({"destination": "/data", "source": "/", "options": ["rbind"], "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]}), "mounts[1].uidMappings (id-mapped mounts) is not supported by palisade-runtime")]
#[case::gid_mappings(json!({"destination": "/data", "source": "/", "options": ["rbind"], "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]}), "mounts[1].gidMappings (id-mapped mounts) is not supported by palisade-runtime")]
fn mounts_refused(#[case] bad: Value, #[case] error: &str) {
    let s = spec(json!({"mounts": [{"destination": "/proc", "type": "proc"}, bad]}));
    assert_eq!(message(mounts(&s, Path::new("/nonexistent-bundle"))), error);
}

// --- linux.devices ----------------------------------------------------------------------------

#[rstest]
#[case::char_defaults(
    json!({"type": "c", "path": "/dev/fuse", "major": 10, "minor": 229}),
    DevicePlan { path: "/dev/fuse".into(), kind: SFlag::S_IFCHR, major: 10, minor: 229, mode: 0o666, uid: 0, gid: 0 }
)]
#[case::unbuffered_is_char(
    json!({"type": "u", "path": "/dev/x", "major": 1, "minor": 2}),
    DevicePlan { path: "/dev/x".into(), kind: SFlag::S_IFCHR, major: 1, minor: 2, mode: 0o666, uid: 0, gid: 0 }
)]
#[case::block_owned(
    json!({"type": "b", "path": "/dev/loop9", "major": 7, "minor": 9, "fileMode": 0o600, "uid": 5, "gid": 6}),
    DevicePlan { path: "/dev/loop9".into(), kind: SFlag::S_IFBLK, major: 7, minor: 9, mode: 0o600, uid: 5, gid: 6 }
)]
#[case::fifo(
    json!({"type": "p", "path": "/dev/pipe"}),
    DevicePlan { path: "/dev/pipe".into(), kind: SFlag::S_IFIFO, major: 0, minor: 0, mode: 0o666, uid: 0, gid: 0 }
)]
fn device_plan(#[case] device: Value, #[case] expected: DevicePlan) {
    let plans = devices(&linux(json!({"devices": [device]}))).expect("valid");
    assert_eq!(plans, vec![expected]);
}

#[test]
fn device_type_a_is_refused() {
    let l = linux(json!({"devices": [
        {"type": "c", "path": "/dev/null", "major": 1, "minor": 3},
        {"type": "a", "path": "/dev/all"}
    ]}));
    assert_eq!(
        message(devices(&l)),
        "invalid config: linux.devices[1].type: device type 'a' cannot be created"
    );
}

// --- linux.rootfsPropagation ------------------------------------------------------------------

#[rstest]
#[case::default_is_private_under_rslave(None, MsFlags::MS_PRIVATE, MsFlags::MS_SLAVE)]
#[case::empty_is_the_default(Some(""), MsFlags::MS_PRIVATE, MsFlags::MS_SLAVE)]
#[case::private(Some("private"), MsFlags::MS_PRIVATE, MsFlags::MS_PRIVATE)]
#[case::rprivate(Some("rprivate"), MsFlags::MS_PRIVATE, MsFlags::MS_PRIVATE)]
#[case::shared(Some("shared"), MsFlags::MS_SHARED, MsFlags::MS_SHARED)]
#[case::rshared(Some("rshared"), MsFlags::MS_SHARED, MsFlags::MS_SHARED)]
#[case::slave(Some("slave"), MsFlags::MS_SLAVE, MsFlags::MS_SLAVE)]
#[case::rslave(Some("rslave"), MsFlags::MS_SLAVE, MsFlags::MS_SLAVE)]
#[case::unbindable(Some("unbindable"), MsFlags::MS_UNBINDABLE, MsFlags::MS_UNBINDABLE)]
#[case::runbindable(Some("runbindable"), MsFlags::MS_UNBINDABLE, MsFlags::MS_UNBINDABLE)]
fn propagation_plan(#[case] named: Option<&str>, #[case] rootfs: MsFlags, #[case] parent: MsFlags) {
    let l = linux(json!({"rootfsPropagation": named}));
    assert_eq!(
        propagation(&l).expect("valid"),
        Propagation {
            rootfs: rootfs | MsFlags::MS_REC,
            parent: parent | MsFlags::MS_REC
        }
    );
}

#[test]
fn unknown_propagation_is_refused() {
    let l = linux(json!({"rootfsPropagation": "sideways"}));
    assert_eq!(
        message(propagation(&l)),
        "invalid config: linux.rootfsPropagation: unknown value \"sideways\""
    );
}

// --- linux.cgroupsPath and linux.resources ----------------------------------------------------

#[rstest]
// As runc: directly below the root, so there is no parent to leave behind.
#[case::default(Value::Null, "/c1")]
#[case::empty_is_default(json!(""), "/c1")]
#[case::relative_is_below_the_root(json!("a/b"), "/a/b")]
#[case::absolute(json!("/a/b"), "/a/b")]
fn cgroup_path_plan(#[case] path: Value, #[case] expected: &str) {
    let l = linux(json!({"cgroupsPath": path}));
    assert_eq!(
        cgroup_path(&l, "c1").expect("valid"),
        PathBuf::from(expected)
    );
}

#[test]
fn cgroup_path_with_dotdot_is_refused() {
    let l = linux(json!({"cgroupsPath": "/a/../../b"}));
    assert_eq!(
        message(cgroup_path(&l, "c1")),
        "invalid config: linux.cgroupsPath: must not contain .."
    );
}

// linux.resources: spec/resources/tests.rs.

// --- linux.sysctl -----------------------------------------------------------------------------

fn sysctl_plan(
    sysctl: Value,
    namespaces: Vec<NamespacePlan>,
) -> Result<Vec<(String, String)>, SpecError> {
    super::sysctl(&linux(json!({"sysctl": sysctl})), &namespaces)
}

#[rstest]
#[case::net_with_netns(json!({"net.ipv4.ip_forward": "1"}), CloneFlags::CLONE_NEWNET)]
#[case::ipc_key(json!({"kernel.shmmax": "65536"}), CloneFlags::CLONE_NEWIPC)]
#[case::mqueue(json!({"fs.mqueue.msg_max": "20"}), CloneFlags::CLONE_NEWIPC)]
#[case::hostname(json!({"kernel.hostname": "box"}), CloneFlags::CLONE_NEWUTS)]
#[case::domainname(json!({"kernel.domainname": "example"}), CloneFlags::CLONE_NEWUTS)]
fn sysctls_of_owned_namespaces_are_accepted(#[case] sysctl: Value, #[case] ns_flag: CloneFlags) {
    let plan = sysctl_plan(
        sysctl.clone(),
        vec![ns(CloneFlags::CLONE_NEWNS), ns(ns_flag)],
    )
    .expect("owned");
    let (key, value) = sysctl
        .as_object()
        .and_then(|o| o.iter().next())
        .expect("one sysctl");
    assert_eq!(
        plan,
        [(key.clone(), value.as_str().unwrap_or_default().to_owned())]
    );
}

#[test]
fn sysctls_are_sorted_by_key() {
    let plan = sysctl_plan(
        json!({"net.ipv4.ip_forward": "1", "net.core.somaxconn": "512"}),
        vec![ns(CloneFlags::CLONE_NEWNET)],
    )
    .expect("owned");
    let keys: Vec<&str> = plan.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["net.core.somaxconn", "net.ipv4.ip_forward"]);
}

#[test]
fn a_joined_namespace_owns_its_sysctls_unless_it_is_the_runtimes() {
    let joined = |path: &str| NamespacePlan {
        flag: CloneFlags::CLONE_NEWNET,
        path: Some(path.into()),
    };
    // Not the runtime's own network namespace (any other file is, for this check).
    let dir = tempfile::tempdir().expect("tempdir");
    let other = dir.path().join("netns");
    std::fs::write(&other, "").expect("write");
    let sysctl = json!({"net.ipv4.ip_forward": "1"});
    sysctl_plan(sysctl.clone(), vec![joined(&other.display().to_string())]).expect("owned");
    assert_eq!(
        message(sysctl_plan(sysctl, vec![joined("/proc/self/ns/net")])),
        "invalid config: linux.sysctl.\"net.ipv4.ip_forward\": the net namespace joined at \
         /proc/self/ns/net is the runtime's own (the host's)"
    );
}

#[rstest]
#[case::net_without_netns(json!({"net.ipv4.ip_forward": "1"}), CloneFlags::CLONE_NEWIPC, "invalid config: linux.sysctl.\"net.ipv4.ip_forward\": needs a net namespace of the container's own, and it has none")]
#[case::ipc_without_ipcns(json!({"kernel.msgmax": "1"}), CloneFlags::CLONE_NEWNET, "invalid config: linux.sysctl.\"kernel.msgmax\": needs a ipc namespace of the container's own, and it has none")]
#[case::hostname_without_uts(json!({"kernel.hostname": "x"}), CloneFlags::CLONE_NEWNET, "invalid config: linux.sysctl.\"kernel.hostname\": needs a uts namespace of the container's own, and it has none")]
#[case::host_wide(json!({"vm.swappiness": "10"}), CloneFlags::CLONE_NEWNET, "invalid config: linux.sysctl.\"vm.swappiness\": not a sysctl of a namespace the container can own: it would change the host")]
#[case::kernel_not_ipc(json!({"kernel.panic": "1"}), CloneFlags::CLONE_NEWIPC, "invalid config: linux.sysctl.\"kernel.panic\": not a sysctl of a namespace the container can own: it would change the host")]
#[case::slash_traversal(json!({"net/../../vm/swappiness": "1"}), CloneFlags::CLONE_NEWNET, "invalid config: linux.sysctl.\"net/../../vm/swappiness\": not a sysctl name (dot-separated, no empty parts, no /)")]
#[case::dot_traversal(json!({"net...vm": "1"}), CloneFlags::CLONE_NEWNET, "invalid config: linux.sysctl.\"net...vm\": not a sysctl name (dot-separated, no empty parts, no /)")]
#[case::empty(json!({"": "1"}), CloneFlags::CLONE_NEWNET, "invalid config: linux.sysctl.\"\": not a sysctl name (dot-separated, no empty parts, no /)")]
fn sysctls_the_container_does_not_own_are_refused(
    #[case] sysctl: Value,
    #[case] ns_flag: CloneFlags,
    #[case] error: &str,
) {
    assert_eq!(message(sysctl_plan(sysctl, vec![ns(ns_flag)])), error);
}

// --- root, annotations, the whole config ------------------------------------------------------

#[test]
fn root_is_resolved_and_may_be_read_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("rootfs")).expect("mkdir");
    let s = spec(json!({"root": {"path": "rootfs", "readonly": true}}));
    let (rootfs, readonly) = root(&s, dir.path()).expect("valid");
    assert_eq!(
        rootfs,
        dir.path().join("rootfs").canonicalize().expect("canonical")
    );
    assert!(readonly);
}

#[rstest]
#[case::no_root(json!({}), "config has no root.path")]
#[case::missing(json!({"root": {"path": "nope"}}), "rootfs {bundle}/nope does not exist or is not a directory")]
#[case::a_file(json!({"root": {"path": "file"}}), "rootfs {bundle}/file does not exist or is not a directory")]
fn root_refused(#[case] config: Value, #[case] error: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("file"), "").expect("write");
    let expected = error.replace("{bundle}", &dir.path().display().to_string());
    assert_eq!(message(root(&spec(config), dir.path())), expected);
}

#[rstest]
#[case::plain(json!({}), false, PivotMode::default())]
#[case::flag(json!({}), true, PivotMode { no_pivot: true, chroot_only: false })]
#[case::no_pivot_annotation(json!({annotations::NO_PIVOT: "true"}), false, PivotMode { no_pivot: true, chroot_only: false })]
#[case::chroot_annotation(json!({annotations::CHROOT_ONLY: "true"}), false, PivotMode { no_pivot: false, chroot_only: true })]
#[case::only_true_counts(json!({annotations::NO_PIVOT: "yes", annotations::CHROOT_ONLY: "1"}), false, PivotMode::default())]
fn pivot_modes(#[case] annotated: Value, #[case] flag: bool, #[case] expected: PivotMode) {
    let s = spec(json!({"annotations": annotated}));
    assert_eq!(pivot_mode(&annotations(&s), flag), expected);
}

#[test]
fn a_runc_like_config_loads() {
    let mut config = minimal();
    config["hostname"] = json!("box");
    config["linux"] = json!({
        "namespaces": [{"type": "pid"}, {"type": "uts"}, {"type": "mount"}, {"type": "network"}],
        "maskedPaths": ["/proc/kcore"],
        "readonlyPaths": ["/proc/sys"],
        "sysctl": {"net.ipv4.ip_forward": "1"}
    });
    config["annotations"] = json!({"a": "b"});
    let dir = bundle(&config);
    let plan = load(dir.path(), "c1", false).expect("valid");
    assert_eq!(plan.id, "c1");
    assert_eq!(plan.hostname.as_deref(), Some("box"));
    assert_eq!(plan.masked_paths, [PathBuf::from("/proc/kcore")]);
    assert_eq!(plan.readonly_paths, [PathBuf::from("/proc/sys")]);
    assert_eq!(
        plan.sysctl,
        [("net.ipv4.ip_forward".to_owned(), "1".to_owned())]
    );
    assert_eq!(plan.cgroup_path, PathBuf::from("/c1"));
    assert_eq!(plan.oci_version, "1.0.2");
    assert_eq!(plan.annotations.get("a").map(String::as_str), Some("b"));
    assert!(plan.has_new_namespace(CloneFlags::CLONE_NEWPID));
    assert!(plan.has_new_namespace(CloneFlags::CLONE_NEWNET));
    assert!(!plan.has_new_namespace(CloneFlags::CLONE_NEWIPC));
}

#[rstest]
#[case::invalid_json(None, "invalid JSON in")]
#[case::unknown_namespace(Some(json!({"linux": {"namespaces": [{"type": "mount"}, {"type": "bogus"}]}})), "unknown namespace type \"bogus\" (expected one of pid, network,")]
#[case::missing_rootfs(Some(json!({"root": {"path": "no-such-rootfs"}})), "no-such-rootfs does not exist or is not a directory")]
#[case::no_process(Some(json!({"process": null})), "config has no process")]
#[case::wrong_type(Some(json!({"process": {"args": "sh"}})), "invalid config")]
fn bad_configs_are_refused(#[case] change: Option<Value>, #[case] error: &str) {
    let dir = match &change {
        None => {
            let dir = bundle(&minimal());
            std::fs::write(dir.path().join("config.json"), "{not json").expect("write");
            dir
        }
        Some(change) => {
            let mut config = minimal();
            for (k, v) in change.as_object().expect("an object") {
                config[k] = v.clone();
            }
            bundle(&config)
        }
    };
    let text = message(load(dir.path(), "c1", false));
    assert!(text.contains(error), "{text:?} does not contain {error:?}");
}

#[rstest]
#[case::empty("")]
#[case::dot(".")]
#[case::dotdot("..")]
#[case::slash("a/b")]
#[case::space("a b")]
fn invalid_ids_are_refused(#[case] id: &str) {
    let dir = bundle(&minimal());
    assert!(matches!(
        load(dir.path(), id, false),
        Err(SpecError::InvalidId(_))
    ));
}

// --- user namespace: linux.uidMappings / gidMappings ------------------------------------------

/// `minimal()` with a user namespace and the given changes to `linux` and `process`.
fn user_config(linux_extra: Value, process_extra: Value) -> Value {
    let mut c = minimal();
    c["linux"] = json!({
        "namespaces": [{"type": "mount"}, {"type": "user"}, {"type": "pid"}],
        "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]
    });
    for (k, v) in linux_extra.as_object().expect("an object") {
        c["linux"][k] = v.clone();
    }
    for (k, v) in process_extra.as_object().expect("an object") {
        c["process"][k] = v.clone();
    }
    c
}

fn plan_of(config: &Value) -> Result<Plan, SpecError> {
    let dir = bundle(config);
    let spec = spec(config.clone());
    super::plan(&spec, dir.path().to_owned(), "c1", false, Lsm::default())
}

#[test]
fn a_new_user_namespace_with_its_maps() {
    let plan = plan_of(&user_config(
        json!({}),
        json!({"user": {"uid": 1000, "gid": 1000, "additionalGids": [5]}}),
    ))
    .expect("valid");
    assert_eq!(plan.user_namespace(), Some(&ns(CloneFlags::CLONE_NEWUSER)));
    let maps = plan.id_maps.expect("maps");
    assert_eq!(maps.uid, [idmap::IdMap::new(0, 100_000, 65_536)]);
    assert_eq!(maps.gid, [idmap::IdMap::new(0, 100_000, 65_536)]);
}

#[test]
fn a_user_namespace_joined_by_path_may_come_without_maps() {
    let c = user_config(
        json!({"namespaces": [{"type": "mount"}, {"type": "user", "path": "/proc/1/ns/user"}],
               "uidMappings": null, "gidMappings": null}),
        json!({}),
    );
    let plan = plan_of(&c).expect("valid");
    assert_eq!(
        plan.user_namespace().and_then(|n| n.path.clone()),
        Some(PathBuf::from("/proc/1/ns/user"))
    );
    assert_eq!(plan.id_maps, None);
}

#[rstest]
#[case::maps_without_user_ns(
    json!({"namespaces": [{"type": "mount"}]}), json!({}),
    "invalid config: linux.uidMappings: requires a user namespace in linux.namespaces"
)]
#[case::gid_maps_without_user_ns(
    json!({"namespaces": [{"type": "mount"}], "uidMappings": null}), json!({}),
    "invalid config: linux.gidMappings: requires a user namespace in linux.namespaces"
)]
#[case::new_without_uid_maps(
    json!({"uidMappings": null}), json!({}),
    "invalid config: linux.uidMappings: a new user namespace needs it (an unmapped namespace has no root to set it up)"
)]
#[case::new_without_gid_maps(
    json!({"gidMappings": []}), json!({}),
    "invalid config: linux.gidMappings: a new user namespace needs it (an unmapped namespace has no root to set it up)"
)]
#[case::joined_with_one_map_only(
    json!({"namespaces": [{"type": "mount"}, {"type": "user", "path": "/proc/1/ns/user"}], "gidMappings": null}), json!({}),
    "invalid config: linux.gidMappings: must be given together with the other map, or neither"
)]
#[case::overlapping(
    json!({"uidMappings": [{"containerID": 0, "hostID": 100000, "size": 10}, {"containerID": 5, "hostID": 200000, "size": 10}]}), json!({}),
    "invalid config: linux.uidMappings[1]: container ids 5-14 overlap those of linux.uidMappings[0] (0-9)"
)]
#[case::zero_size(
    json!({"gidMappings": [{"containerID": 0, "hostID": 100000}]}), json!({}),
    "invalid config: linux.gidMappings[0].size: must be greater than 0"
)]
#[case::no_root(
    json!({"uidMappings": [{"containerID": 1, "hostID": 100000, "size": 10}]}), json!({}),
    "invalid config: linux.uidMappings: container uid 0 is not mapped (the container is set up by root of its user namespace)"
)]
#[case::no_root_group(
    json!({"gidMappings": [{"containerID": 1, "hostID": 100000, "size": 10}]}), json!({}),
    "invalid config: linux.gidMappings: container gid 0 is not mapped (the container is set up by root of its user namespace)"
)]
#[case::unmapped_user(
    json!({}), json!({"user": {"uid": 70000, "gid": 0}}),
    "invalid config: process.user.uid: 70000 is not mapped by linux.uidMappings"
)]
#[case::unmapped_group(
    json!({}), json!({"user": {"uid": 0, "gid": 70000}}),
    "invalid config: process.user.gid: 70000 is not mapped by linux.gidMappings"
)]
#[case::unmapped_additional_group(
    json!({}), json!({"user": {"uid": 0, "gid": 0, "additionalGids": [5, 70000]}}),
    "invalid config: process.user.additionalGids[1]: 70000 is not mapped by linux.gidMappings"
)]
fn user_namespace_refused(#[case] linux: Value, #[case] process: Value, #[case] error: &str) {
    assert_eq!(message(plan_of(&user_config(linux, process))), error);
}

#[rstest]
#[case::proc_without_pid_ns(
    json!([{"type": "mount"}, {"type": "user"}]),
    json!({"destination": "/proc", "type": "proc", "source": "proc"}),
    "invalid config: mounts[0]: proc cannot be mounted in a user namespace that shares the host's pid namespace: add {\"type\": \"pid\"} to linux.namespaces"
)]
#[case::mqueue_without_ipc_ns(
    json!([{"type": "mount"}, {"type": "user"}]),
    json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue"}),
    "invalid config: mounts[0]: mqueue cannot be mounted in a user namespace that shares the host's ipc namespace: add {\"type\": \"ipc\"} to linux.namespaces"
)]
#[case::devpts_group_unmapped(
    json!([{"type": "mount"}, {"type": "user"}]),
    json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["newinstance", "gid=70000"]}),
    "invalid config: mounts[0].options: gid=70000: not mapped in the container's user namespace"
)]
fn mounts_a_user_namespace_cannot_make(
    #[case] namespaces: Value,
    #[case] mount: Value,
    #[case] error: &str,
) {
    let mut c = user_config(json!({"namespaces": namespaces}), json!({}));
    c["mounts"] = json!([mount]);
    assert_eq!(message(plan_of(&c)), error);
}

#[test]
fn mounts_a_user_namespace_can_make_with_its_own_namespaces() {
    let mut c = user_config(
        json!({"namespaces": [{"type": "mount"}, {"type": "user"}, {"type": "pid"},
                              {"type": "ipc"}, {"type": "cgroup"}]}),
        json!({}),
    );
    c["mounts"] = json!([
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue"},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup"},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["gid=5"]}
    ]);
    plan_of(&c).expect("valid");
}

#[rstest]
// /dev/null: char 1:3, mode 0666, owned by the host's root.
#[case::the_host_node(json!({"path": "/dev/null", "type": "c", "major": 1, "minor": 3}), None)]
#[case::its_mode(json!({"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 438}), None)]
#[case::another_device(
    json!({"path": "/dev/null", "type": "c", "major": 1, "minor": 5}),
    Some("invalid config: linux.devices[0]: in a user namespace devices are bind-mounted from the host, and the host's /dev/null is not a C device 1:5")
)]
#[case::another_mode(
    json!({"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 384}),
    Some("invalid config: linux.devices[0].fileMode: 384 cannot be applied in a user namespace: the node is bind-mounted from the host, where /dev/null has fileMode 666")
)]
#[case::an_owner_the_bind_cannot_show(
    json!({"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "uid": 0}),
    Some("invalid config: linux.devices[0].uid: 0 cannot be applied in a user namespace: the node is bind-mounted from the host, where /dev/null has uid 0 on the host")
)]
#[case::missing_on_the_host(
    json!({"path": "/dev/palisade-no-such-device", "type": "c", "major": 1, "minor": 3}),
    Some("invalid config: linux.devices[0]: in a user namespace devices are bind-mounted from the host, and /dev/palisade-no-such-device cannot be read on the host: No such file or directory (os error 2)")
)]
fn devices_in_a_user_namespace_are_the_host_s(#[case] device: Value, #[case] error: Option<&str>) {
    let c = user_config(json!({"devices": [device]}), json!({}));
    match error {
        None => {
            plan_of(&c).expect("valid");
        }
        Some(error) => assert_eq!(message(plan_of(&c)), error),
    }
}

#[test]
fn subordinate_ids_of_root_bound_the_maps_when_there_are_any() {
    let etc = tempfile::tempdir().expect("tempdir");
    let plan = plan_of(&user_config(json!({}), json!({}))).expect("valid");
    // No /etc/subuid: as runc and crun running as root, any mapping.
    subordinate_ids(&plan, etc.path()).expect("no subordinate ids to respect");
    // Entries for other users only: the same.
    std::fs::write(etc.path().join("subuid"), "alice:100000:65536\n").expect("write");
    subordinate_ids(&plan, etc.path()).expect("none for root");
    std::fs::write(etc.path().join("subuid"), "root:100000:65536\n").expect("write");
    std::fs::write(etc.path().join("subgid"), "root:300000:65536\n").expect("write");
    assert_eq!(
        message(subordinate_ids(&plan, etc.path())),
        format!(
            "invalid config: linux.gidMappings[0]: host ids 100000-165535 are outside the \
             subordinate ids {}/subgid grants to root (300000-365535)",
            etc.path().display()
        )
    );
    std::fs::write(etc.path().join("subgid"), "root:100000:65536\n").expect("write");
    subordinate_ids(&plan, etc.path()).expect("inside both");
}
