//! Where the init runs hooks and applies the process attributes, recorded without root.

use std::io::Read;

use serde_json::{Value, json};

use super::init::{self, CgroupGate, InitError};
use super::{Message, Receiver, Sender};
use crate::cgroups::Layout;
use crate::spec::{self, Plan, SchedAttr};
use crate::syscall::recording::{Call, Recorder};

struct Bundle {
    _dir: tempfile::TempDir,
    plan: Plan,
}

impl Bundle {
    fn new(config: &Value) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().canonicalize().expect("canonical tempdir");
        std::fs::create_dir_all(path.join("rootfs/work")).expect("mkdir rootfs");
        std::fs::write(path.join("config.json"), config.to_string()).expect("write config");
        let plan = spec::load(&path, "c1", false).expect("a valid config");
        Self { _dir: dir, plan }
    }
}

fn config() -> Value {
    json!({
        "ociVersion": "1.0.2",
        "root": {"path": "rootfs"},
        "hostname": "box",
        "domainname": "example.org",
        "process": {
            "user": {"uid": 1000, "gid": 100, "umask": 2},
            "args": ["true"], "cwd": "/work",
            "scheduler": {"policy": "SCHED_BATCH", "nice": 5},
            "ioPriority": {"class": "IOPRIO_CLASS_IDLE", "priority": 0}
        },
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        "hooks": {
            "prestart": [{"path": "/hooks/prestart"}],
            "createContainer": [{"path": "/hooks/create-container"}],
            "startContainer": [{"path": "/hooks/start-container"}]
        },
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "uts"}, {"type": "mount"}, {"type": "time"}],
            "timeOffsets": {"monotonic": {"secs": 100}, "boottime": {"secs": 200, "nanosecs": 3}},
            "personality": {"domain": "LINUX32"},
            "maskedPaths": [], "readonlyPaths": []
        }
    })
}

/// A channel from `create` holding `messages`, and one to it whose far end the test reads.
fn channels(messages: &[Message]) -> (Receiver, std::fs::File, Sender) {
    let (rx, tx) = nix::unistd::pipe().expect("pipe");
    let mut from_create = Sender::new(tx);
    for m in messages {
        from_create.send(m).expect("queue");
    }
    drop(from_create);
    let (to_create_rx, to_create_tx) = nix::unistd::pipe().expect("pipe");
    (
        Receiver::new(rx),
        std::fs::File::from(to_create_rx),
        Sender::new(to_create_tx),
    )
}

fn setup(b: &Bundle, sys: &Recorder, messages: &[Message]) -> (Result<(), InitError>, String) {
    let (rx, mut sent, mut tx) = channels(messages);
    let mut gate = CgroupGate::new(rx, &b.plan);
    let result = init::setup(sys, &b.plan, &Layout::V2, &mut gate, &mut tx, None);
    drop(tx);
    let mut text = String::new();
    sent.read_to_string(&mut text)
        .expect("read what the init sent");
    (result, text)
}

fn position(sys: &Recorder, pred: impl Fn(&Call) -> bool) -> usize {
    sys.calls()
        .iter()
        .position(pred)
        .unwrap_or_else(|| panic!("not made; calls: {:#?}", sys.calls()))
}

fn hook_state(call: &Call) -> Value {
    match call {
        Call::Hook(_, _, state) => serde_json::from_str(state).expect("state JSON"),
        other => panic!("not a hook: {other:?}"),
    }
}

#[test]
fn the_runtime_hooks_then_create_container_run_after_the_mounts_and_before_the_pivot() {
    let b = Bundle::new(&config());
    let sys = Recorder::new(&b.plan.rootfs);
    let (result, sent) = setup(
        &b,
        &sys,
        &[
            Message::CgroupJoined { pid: 4242 },
            Message::RuntimeHooksDone,
        ],
    );
    result.expect("set up");
    // The init asked `create` for the prestart/createRuntime hooks, once.
    assert_eq!(sent.trim(), r#"{"type":"runtime_hooks"}"#);
    let calls = sys.calls();
    let hook = position(&sys, |c| matches!(c, Call::Hook("createContainer", ..)));
    let last_mount = calls.iter().rposition(|c| {
        matches!(c, Call::Mount { target, .. } if target.starts_with("fd:") || target.starts_with("$ROOTFS"))
    });
    let pivot = position(&sys, |c| matches!(c, Call::PivotRoot(..)));
    assert!(last_mount.is_some_and(|m| m < hook), "{calls:#?}");
    assert!(hook < pivot, "{calls:#?}");
    assert!(
        matches!(&calls[hook], Call::Hook(_, path, _) if path == "/hooks/create-container"),
        "{calls:#?}"
    );
    let state = hook_state(&calls[hook]);
    assert_eq!(state["status"], "creating");
    assert_eq!(state["pid"], 4242);
    assert_eq!(state["id"], "c1");
    // startContainer hooks do not run during setup.
    assert!(
        !calls
            .iter()
            .any(|c| matches!(c, Call::Hook("startContainer", ..)))
    );
}

#[test]
fn without_an_answer_to_the_runtime_hooks_nothing_more_happens() {
    let b = Bundle::new(&config());
    let sys = Recorder::new(&b.plan.rootfs);
    // `create` placed the init in its cgroup, then went away (its hook failed, it kills the init).
    let (result, _) = setup(&b, &sys, &[Message::CgroupJoined { pid: 7 }]);
    assert!(
        matches!(result, Err(InitError::RuntimeHooksNotRun)),
        "{result:?}"
    );
    let calls = sys.calls();
    assert!(!calls.iter().any(|c| matches!(c, Call::Hook(..))));
    assert!(!calls.iter().any(|c| matches!(c, Call::PivotRoot(..))));
}

#[test]
fn without_runtime_hooks_create_is_not_asked() {
    let mut c = config();
    c["hooks"] = json!({"createContainer": [{"path": "/h"}]});
    let b = Bundle::new(&c);
    let sys = Recorder::new(&b.plan.rootfs);
    let (result, sent) = setup(&b, &sys, &[Message::CgroupJoined { pid: 7 }]);
    result.expect("set up");
    assert_eq!(sent, "");
    position(&sys, |c| matches!(c, Call::Hook("createContainer", ..)));
}

#[test]
fn a_failing_create_container_hook_stops_before_the_pivot() {
    let b = Bundle::new(&config());
    let sys = Recorder::new(&b.plan.rootfs).failing(|c| {
        matches!(c, Call::Hook("createContainer", ..)).then_some(nix::errno::Errno::ENOENT)
    });
    let (result, _) = setup(
        &b,
        &sys,
        &[Message::CgroupJoined { pid: 7 }, Message::RuntimeHooksDone],
    );
    let err = result.expect_err("the hook fails");
    assert!(
        err.to_string()
            .starts_with("createContainer hook /hooks/create-container: cannot run it"),
        "{err}"
    );
    assert!(!sys.calls().iter().any(|c| matches!(c, Call::PivotRoot(..))));
}

#[test]
fn hooks_of_the_init_without_an_env_get_the_container_processs() {
    let mut c = config();
    c["process"]["env"] = json!(["PATH=/bin", "APP=1"]);
    c["hooks"]["startContainer"] = json!([{"path": "/a"}, {"path": "/b", "env": ["OWN=1"]}]);
    let b = Bundle::new(&c);
    let envs: Vec<_> = b
        .plan
        .hooks
        .start_container
        .iter()
        .map(|hook| init::with_process_env(hook, &b.plan).env)
        .collect();
    assert_eq!(
        envs,
        [
            Some(vec!["PATH=/bin".to_owned(), "APP=1".to_owned()]),
            Some(vec!["OWN=1".to_owned()])
        ]
    );
}

#[test]
fn start_container_hooks_get_the_created_state() {
    let b = Bundle::new(&config());
    let sys = Recorder::new(&b.plan.rootfs);
    init::run_start_container_hooks(&sys, &b.plan, Some(99)).expect("ran");
    let calls = sys.calls();
    assert_eq!(calls.len(), 1);
    assert!(
        matches!(&calls[0], Call::Hook("startContainer", path, _) if path == "/hooks/start-container")
    );
    let state = hook_state(&calls[0]);
    assert_eq!(state["status"], "created");
    assert_eq!(state["pid"], 99);
}

#[test]
fn process_attributes_are_applied_in_an_order_the_kernel_accepts() {
    let b = Bundle::new(&config());
    let sys = Recorder::new(&b.plan.rootfs);
    let (result, _) = setup(
        &b,
        &sys,
        &[Message::CgroupJoined { pid: 1 }, Message::RuntimeHooksDone],
    );
    result.expect("set up");
    let calls = sys.calls();
    let at = |call: Call| position(&sys, |c| *c == call);
    let hostname = at(Call::Sethostname("box".into()));
    let domainname = at(Call::Setdomainname("example.org".into()));
    let sched = at(Call::SchedSetattr(SchedAttr {
        policy: 3,
        nice: 5,
        ..SchedAttr::default()
    }));
    let ioprio = at(Call::IoprioSet(3 << 13));
    let setuid = at(Call::Setresuid(1000));
    let cwd = at(Call::Chdir("/work".into()));
    let umask = at(Call::Umask(0o002));
    // PER_LINUX32.
    let personality = at(Call::Personality(0x0008));
    assert!(hostname < domainname);
    // Real-time classes need CAP_SYS_NICE / CAP_SYS_ADMIN: before the user switch.
    assert!(sched < setuid && ioprio < setuid, "{calls:#?}");
    // Files the runtime creates are not subject to the container's umask.
    assert!(cwd < umask);
    assert_eq!(personality, calls.len() - 1, "personality comes last");
}

#[test]
fn time_offsets_are_written_for_the_new_time_namespace() {
    let b = Bundle::new(&config());
    let sys = Recorder::new(&b.plan.rootfs);
    init::set_time_offsets(&sys, &b.plan).expect("written");
    assert_eq!(
        sys.calls(),
        [Call::Write(
            "/proc/self/timens_offsets".into(),
            "boottime 200 3\nmonotonic 100 0\n".into()
        )]
    );
}

#[test]
fn without_a_mount_namespace_nothing_is_mounted_and_the_root_is_a_chroot() {
    let c = json!({
        "ociVersion": "1.0.2",
        "root": {"path": "rootfs"},
        "process": {"user": {"uid": 0, "gid": 0}, "args": ["true"], "cwd": "/"},
        "linux": {"namespaces": [{"type": "pid"}, {"type": "uts"}], "maskedPaths": [], "readonlyPaths": []}
    });
    let b = Bundle::new(&c);
    assert!(!b.plan.has_mount_namespace());
    let sys = Recorder::new(&b.plan.rootfs);
    let (result, _) = setup(&b, &sys, &[Message::CgroupJoined { pid: 1 }]);
    result.expect("set up");
    let calls = sys.calls();
    assert!(!calls.iter().any(Call::is_mount), "{calls:#?}");
    assert!(!calls.iter().any(|c| matches!(c, Call::PivotRoot(..))));
    let chroot = position(&sys, |c| matches!(c, Call::Chroot(p) if p == "."));
    assert_eq!(calls[chroot - 1], Call::Chdir("$ROOTFS".into()));
    assert_eq!(calls[chroot + 1], Call::Chdir("/".into()));
}

#[test]
fn lsm_labels_are_written_for_the_exec_before_the_user_switch() {
    let mut b = Bundle::new(&config());
    // The plan only carries labels on a host with the LSM; this one may have none.
    b.plan.process.apparmor_profile = Some("palisade-test".into());
    b.plan.process.selinux_label = Some("system_u:system_r:container_t:s0".into());
    let sys = Recorder::new(&b.plan.rootfs);
    let (result, _) = setup(
        &b,
        &sys,
        &[Message::CgroupJoined { pid: 1 }, Message::RuntimeHooksDone],
    );
    result.expect("set up");
    let apparmor = position(
        &sys,
        |c| matches!(c, Call::Write(p, v) if p.starts_with("/proc/thread-self/attr/") && v == "exec palisade-test"),
    );
    let selinux = position(&sys, |c| {
        *c == Call::Write(
            "/proc/thread-self/attr/exec".into(),
            "system_u:system_r:container_t:s0".into(),
        )
    });
    let setuid = position(&sys, |c| *c == Call::Setresuid(1000));
    assert!(apparmor < setuid && selinux < setuid);
}

#[test]
fn sysctl_is_written_before_proc_sys_is_made_read_only() {
    let mut c = config();
    c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    c["linux"]["readonlyPaths"] = json!(["/proc/sys"]);
    // A net sysctl needs a network namespace of the container's own.
    c["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces")
        .push(json!({"type": "network"}));
    let b = Bundle::new(&c);
    std::fs::create_dir_all(b.plan.rootfs.join("proc/sys")).expect("mkdir");
    let sys = Recorder::new(&b.plan.rootfs);
    let (result, _) = setup(
        &b,
        &sys,
        &[Message::CgroupJoined { pid: 1 }, Message::RuntimeHooksDone],
    );
    result.expect("set up");
    let sysctl = position(&sys, |c| {
        *c == Call::Write("/proc/sys/net/ipv4/ip_forward".into(), "1".into())
    });
    let readonly = position(
        &sys,
        |c| matches!(c, Call::Mount { target, .. } if target.contains("proc/sys")),
    );
    assert!(sysctl < readonly, "{:#?}", sys.calls());
}
