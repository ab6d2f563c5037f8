//! The processes `create` forks.
//!
//! 1. The intermediate process joins the cgroup, sets oom_score_adj, joins/unshares namespaces and
//!    forks the init (which becomes pid 1 of a new pid namespace), reports the init's pid and exits
//!    so the init is not left as the child of a lingering process.
//! 2. The init prepares the rootfs, has `create` run the runtime's hooks and runs createContainer
//!    hooks before its pivot, pivots into the rootfs, drops privileges, reports `Ready`, blocks on
//!    the exec fifo until `start`, runs startContainer hooks and execs the user's process.

use std::convert::Infallible;
use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use std::os::fd::AsFd;

use caps::CapSet;
use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::unistd::ForkResult;
use rustix::event::{PollFd, PollFlags, poll};

use super::inroot::RootDir;
use super::nsjoin::{self, NsFile};
use super::{Message, Receiver, Sender, rootfs};
use crate::cgroups::{CgroupError, Layout};
use crate::hooks::{HookError, HookKind, HookPlan};
use crate::spec::{Plan, idmap};
use crate::sys;
use crate::syscall::{LinuxSyscall, Syscall};

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("{what}: {source}")]
    Mount { what: String, source: Errno },
    #[error("{what}: {source}")]
    Syscall { what: String, source: Errno },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Capabilities {
        what: String,
        source: caps::errors::CapsError,
    },
    /// Something the runtime will not do, with the reason (naming the config field).
    #[error("{0}")]
    Refused(String),
    #[error("exec: {0:?}: executable file not found in $PATH")]
    ExecutableNotFound(String),
    #[error("palisade-runtime create did not place the init in its cgroup")]
    CgroupNotJoined,
    #[error("palisade-runtime create did not write the user namespace's id maps")]
    IdMapsNotWritten,
    #[error("{field}: {reason}")]
    UserNamespace { field: String, reason: String },
    #[error("exec fifo closed without a start signal")]
    StartAborted,
    #[error(transparent)]
    Hook(#[from] HookError),
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    #[error("palisade-runtime create did not run the prestart and createRuntime hooks")]
    RuntimeHooksNotRun,
    #[error("reporting to palisade-runtime create: {0}")]
    Channel(std::io::Error),
}

fn sys_err(what: impl Into<String>) -> impl FnOnce(Errno) -> InitError {
    let what = what.into();
    move |source| InitError::Syscall { what, source }
}

fn caps_err(what: impl Into<String>) -> impl FnOnce(caps::errors::CapsError) -> InitError {
    let what = what.into();
    move |source| InitError::Capabilities { what, source }
}

/// What the forked processes need; they inherit it through fork's copy of memory.
pub struct InitContext<'a> {
    pub plan: &'a Plan,
    pub layout: &'a Layout,
    /// Read end of the exec fifo, opened non-blocking by `create`.
    pub fifo: File,
    /// Where the init reports a failure after `create` has returned (`start` reads it).
    pub start_error: File,
    /// Descriptors 3..3+n are passed on to the container process (`--preserve-fds n`).
    pub preserve_fds: u32,
    /// The seccomp agent's socket (`listenerPath`), connected by `create` on the host side.
    pub seccomp_listener: Option<crate::seccomp::ListenerConnection>,
}

/// Waits (once) until `create` has moved the init into its cgroups, then unshares the cgroup
/// namespace so that it is rooted at the container's cgroup.
///
/// `create` migrates the init while the init prepares its rootfs: on cgroup v1 the first
/// migration costs an RCU grace period (~9 ms here), which this overlaps with the mount work.
pub struct CgroupGate {
    rx: Receiver,
    new_cgroup_ns: bool,
    done: bool,
    /// The init's pid as the runtime sees it, once `create` has said so.
    pid: Option<i32>,
}

impl CgroupGate {
    pub fn new(rx: Receiver, plan: &Plan) -> Self {
        Self {
            rx,
            new_cgroup_ns: plan.has_new_namespace(CloneFlags::CLONE_NEWCGROUP),
            done: false,
            pid: None,
        }
    }

    /// Waits until `create` has written the id maps of the new user namespace.
    pub fn id_maps_written(&mut self) -> Result<(), InitError> {
        match self.rx.recv().map_err(InitError::Channel)? {
            Some(Message::IdMapsWritten) => Ok(()),
            _ => Err(InitError::IdMapsNotWritten),
        }
    }

    /// The init's pid in the runtime's pid namespace (after [`CgroupGate::wait`]).
    pub fn pid(&self) -> Option<i32> {
        self.pid
    }

    /// The next message from `create` after the cgroup placement.
    pub fn recv(&mut self) -> Result<Option<Message>, InitError> {
        self.rx.recv().map_err(InitError::Channel)
    }

    pub fn wait(&mut self, sys: &dyn Syscall) -> Result<(), InitError> {
        if self.done {
            return Ok(());
        }
        match self.rx.recv().map_err(InitError::Channel)? {
            Some(Message::CgroupJoined { pid }) => self.pid = Some(pid),
            _ => return Err(InitError::CgroupNotJoined),
        }
        if self.new_cgroup_ns {
            sys.unshare(CloneFlags::CLONE_NEWCGROUP)
                .map_err(sys_err("unshare cgroup namespace"))?;
        }
        self.done = true;
        Ok(())
    }
}

/// Body of the intermediate process. Never returns.
pub fn intermediate(ctx: InitContext<'_>, mut tx: Sender, gate: CgroupGate) -> ! {
    match intermediate_steps(&ctx, &mut tx, gate) {
        Ok(()) => std::process::exit(0),
        Err(e) => fail(&mut tx, &e),
    }
}

/// Tells `create` (or `exec`) why this child gives up, and exits.
pub fn fail(tx: &mut Sender, e: &InitError) -> ! {
    // If create is gone there is nobody left to tell; stderr is the container's stderr.
    if tx
        .send(&Message::Error {
            message: e.to_string(),
        })
        .is_err()
    {
        eprintln!("palisade-runtime: error: {e}");
    }
    std::process::exit(1)
}

fn intermediate_steps(
    ctx: &InitContext<'_>,
    tx: &mut Sender,
    mut gate: CgroupGate,
) -> Result<(), InitError> {
    let sys = LinuxSyscall;
    set_oom_score_adj(&sys, ctx.plan)?;
    // A new user namespace is mapped by `create`, from outside it.
    let mut handshake = || -> Result<(), InitError> {
        tx.send(&Message::UserNs).map_err(InitError::Channel)?;
        gate.id_maps_written()
    };
    join_namespaces(&sys, ctx.plan, &mut handshake)?;
    if ctx.plan.user_namespace().is_some() {
        check_rootfs_reachable(ctx.plan)?;
    }
    set_time_offsets(&sys, ctx.plan)?;
    // A new pid (and time) namespace only applies to children: fork so the init is pid 1.
    match sys::fork().map_err(sys_err("fork container init"))? {
        ForkResult::Parent { child } => tx
            .send(&Message::InitPid {
                pid: child.as_raw(),
            })
            .map_err(InitError::Channel),
        ForkResult::Child => {
            let err = match init_steps(&sys, ctx, tx, &mut gate) {
                Ok(never) => match never {},
                Err(e) => e,
            };
            fail(tx, &err)
        }
    }
}

fn init_steps(
    sys: &dyn Syscall,
    ctx: &InitContext<'_>,
    tx: &mut Sender,
    gate: &mut CgroupGate,
) -> Result<Infallible, InitError> {
    let plan = ctx.plan;
    let listener = ctx
        .seccomp_listener
        .as_ref()
        .map(crate::seccomp::ListenerConnection::try_clone)
        .transpose()?;
    setup(sys, plan, ctx.layout, gate, tx, listener)?;
    let exe = find_executable(plan)?;
    // Descriptors leaked into `create` by its caller must not reach the container process; the
    // first `--preserve-fds` ones above stdio are meant for it (`create` keeps its own above them).
    let first_closed = 3u32.saturating_add(ctx.preserve_fds);
    sys::cloexec_from(first_closed).map_err(sys_err("close_range"))?;
    sys::reset_sigpipe().map_err(sys_err("reset SIGPIPE"))?;
    tx.send(&Message::Ready).map_err(InitError::Channel)?;
    // `create` has returned: a failure from here on is for `start` (which reads `start_error`)
    // and for the container's stderr.
    let err = match after_start(sys, ctx, gate, &exe) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let mut report = &ctx.start_error;
    let _ = report.write_all(err.to_string().as_bytes());
    eprintln!("palisade-runtime: error: {err}");
    std::process::exit(1)
}

/// Waits for `start`, runs the startContainer hooks and execs the container's process.
fn after_start(
    sys: &dyn Syscall,
    ctx: &InitContext<'_>,
    gate: &CgroupGate,
    exe: &CString,
) -> Result<Infallible, InitError> {
    let plan = ctx.plan;
    wait_for_start(&ctx.fifo)?;
    run_start_container_hooks(sys, plan, gate.pid())?;
    let Err(errno) = nix::unistd::execve(exe, &plan.process.args, &plan.process.env);
    Err(InitError::Syscall {
        what: format!("exec {}", exe.to_string_lossy()),
        source: errno,
    })
}

/// What one step of the init sees.
pub struct Setup<'a> {
    pub sys: &'a dyn Syscall,
    pub plan: &'a Plan,
    pub layout: &'a Layout,
    pub gate: &'a mut CgroupGate,
    /// To `create` (the runtime's hooks).
    pub tx: &'a mut Sender,
    /// Where the seccomp notify listener goes, taken when the filter is loaded.
    pub seccomp_listener: Option<crate::seccomp::ListenerConnection>,
}

type Step = fn(&mut Setup<'_>) -> Result<(), InitError>;

/// The init's steps, in order, up to the lookup of the executable. A new lifecycle point (id
/// maps written by the parent, a hook, seccomp right before exec) is one more entry here.
const INIT_STEPS: &[(&str, Step)] = &[
    ("hostname", |s| set_hostname(s.sys, s.plan)),
    ("domainname", |s| set_domainname(s.sys, s.plan)),
    ("mounts below the rootfs", |s| {
        prepare_rootfs(s.sys, s.plan, s.layout, s.gate)
    }),
    // The runtime environment exists, the pivot has not happened (config.md, POSIX hooks).
    ("prestart, createRuntime and createContainer hooks", |s| {
        run_create_hooks(s.sys, s.plan, s.gate, s.tx)
    }),
    ("pivot", |s| pivot_into_rootfs(s.sys, s.plan)),
    // Before privileges are dropped: unsharing the cgroup namespace needs CAP_SYS_ADMIN.
    ("cgroup namespace", |s| s.gate.wait(s.sys)),
    // Through the container's /proc, before /proc/sys can be made read-only (as runc).
    ("sysctl", |s| apply_sysctl(s.sys, s.plan)),
    ("masked and read-only paths", |s| {
        finish_rootfs(s.sys, s.plan)
    }),
    // Labels for the exec, written while /proc/thread-self/attr is still ours to write.
    ("LSM labels", |s| apply_lsm_labels(s.sys, s.plan)),
    ("rlimits", |s| apply_rlimits(s.sys, s.plan)),
    // Both may need CAP_SYS_NICE / CAP_SYS_ADMIN (real-time classes), so before the user switch.
    ("scheduler and I/O priority", |s| {
        apply_scheduling(s.sys, s.plan)
    }),
    // Without no_new_privs the kernel loads a filter only for CAP_SYS_ADMIN: load it now, while
    // the init still has it (runc does the same); the rest of the steps then run under it.
    ("seccomp, without no_new_privs", |s| load_seccomp(s, false)),
    ("user", |s| switch_user(s.sys, s.plan)),
    ("capabilities", |s| apply_capabilities(s.sys, s.plan)),
    ("no_new_privs", |s| set_no_new_privs(s.sys, s.plan)),
    ("cwd", |s| {
        let cwd = &s.plan.process.cwd;
        s.sys
            .chdir(cwd)
            .map_err(sys_err(format!("chdir {}", cwd.display())))
    }),
    // After everything the runtime creates, so only the container's own files get this umask.
    ("umask", |s| {
        if let Some(mask) = s.plan.process.umask {
            s.sys.umask(mask);
        }
        Ok(())
    }),
    // Last: the execution domain only matters to what runs after the exec.
    ("personality", |s| match s.plan.personality {
        Some(p) => s
            .sys
            .personality(p)
            .map_err(sys_err(format!("personality {p:#x} (linux.personality)"))),
        None => Ok(()),
    }),
    // As late as the spec says: after the capabilities and no_new_privs, right before the exec.
    ("seccomp", |s| load_seccomp(s, true)),
];

/// A step of `exec`'s process.
type ExecStep = fn(&dyn Syscall, &Plan) -> Result<(), InitError>;

/// What `exec` applies to its process, in the order of [`INIT_STEPS`] (keep them in step): the
/// whole process section, and what of the container applies per process (seccomp, personality).
/// `plan` is the container's, with the exec'd process. The cwd is changed into by `exec` itself,
/// which checks it (CVE-2024-21626), right after no_new_privs.
pub const EXEC_STEPS: &[(&str, ExecStep)] = &[
    ("LSM labels", apply_lsm_labels),
    ("rlimits", apply_rlimits),
    ("scheduler and I/O priority", apply_scheduling),
    ("seccomp, without no_new_privs", |sys, plan| {
        load_exec_seccomp(sys, plan, false)
    }),
    ("user", switch_user),
    ("capabilities", apply_capabilities),
    ("no_new_privs", set_no_new_privs),
];

/// What `exec` applies after the cwd, as [`INIT_STEPS`] does.
pub const EXEC_STEPS_AFTER_CWD: &[(&str, ExecStep)] = &[
    ("umask", |sys, plan| {
        if let Some(mask) = plan.process.umask {
            sys.umask(mask);
        }
        Ok(())
    }),
    ("personality", |sys, plan| match plan.personality {
        Some(p) => sys
            .personality(p)
            .map_err(sys_err(format!("personality {p:#x} (linux.personality)"))),
        None => Ok(()),
    }),
    ("seccomp", |sys, plan| load_exec_seccomp(sys, plan, true)),
];

/// The container's seccomp filter for an exec'd process, at the point [`load_seccomp`] loads the
/// init's. `exec` refuses a profile with a notify listener before it gets here.
fn load_exec_seccomp(
    sys: &dyn Syscall,
    plan: &Plan,
    with_no_new_privs: bool,
) -> Result<(), InitError> {
    match &plan.seccomp {
        Some(seccomp) if plan.process.no_new_privileges == with_no_new_privs => {
            sys.seccomp_load(seccomp)?;
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Runs [`INIT_STEPS`].
pub fn setup(
    sys: &dyn Syscall,
    plan: &Plan,
    layout: &Layout,
    gate: &mut CgroupGate,
    tx: &mut Sender,
    seccomp_listener: Option<crate::seccomp::ListenerConnection>,
) -> Result<(), InitError> {
    let mut s = Setup {
        sys,
        plan,
        layout,
        gate,
        tx,
        seccomp_listener,
    };
    for (_, step) in INIT_STEPS {
        step(&mut s)?;
    }
    Ok(())
}

/// Loads `linux.seccomp` at the one point that fits the process: last with no_new_privs (as late
/// as the spec says), or before the capabilities are dropped without it. A notify listener goes to
/// the agent with the container process state.
fn load_seccomp(s: &mut Setup<'_>, with_no_new_privs: bool) -> Result<(), InitError> {
    let Some(plan) = &s.plan.seccomp else {
        return Ok(());
    };
    if s.plan.process.no_new_privileges != with_no_new_privs {
        return Ok(());
    }
    let listener = s.sys.seccomp_load(plan)?;
    if let (Some(fd), Some(connection)) = (listener, s.seccomp_listener.take()) {
        use std::os::fd::AsFd;
        let pid = s.gate.pid().unwrap_or_else(|| std::process::id() as i32);
        let state = oci_spec::runtime::StateBuilder::default()
            .version(s.plan.oci_version.clone())
            .id(s.plan.id.clone())
            .status(oci_spec::runtime::ContainerState::Creating)
            .pid(pid)
            .bundle(s.plan.bundle.clone())
            .annotations(
                s.plan
                    .annotations
                    .clone()
                    .into_iter()
                    .collect::<std::collections::HashMap<_, _>>(),
            )
            .build()
            .map_err(|e| {
                InitError::Refused(format!("the container state for the seccomp agent: {e}"))
            })?;
        crate::seccomp::send_listener_fd(connection, plan, fd.as_fd(), pid, &state)?;
    }
    Ok(())
}

fn set_oom_score_adj(sys: &dyn Syscall, plan: &Plan) -> Result<(), InitError> {
    let Some(adj) = plan.process.oom_score_adj else {
        return Ok(());
    };
    sys.write_file(Path::new("/proc/self/oom_score_adj"), &adj.to_string())
        .map_err(|source| InitError::Io {
            what: "write oom_score_adj".into(),
            source,
        })
}

/// setns(2) into the namespaces given by path, enter the user namespace (joined, or unshared and
/// mapped through `map_ids`) and become its root, then unshare(2) the other new ones, which the
/// user namespace then owns.
pub fn join_namespaces(
    sys: &dyn Syscall,
    plan: &Plan,
    map_ids: &mut dyn FnMut() -> Result<(), InitError>,
) -> Result<(), InitError> {
    // Open every path before joining anything: a joined mount namespace changes path lookup.
    let files = plan
        .namespaces
        .iter()
        .filter_map(|ns| ns.path.as_ref().map(|p| NsFile::open(ns.flag, p)))
        .collect::<Result<Vec<_>, _>>()?;
    let user = plan.user_namespace();
    if user.is_some() {
        // The host's supplementary groups must not follow into the container: drop them while
        // still privileged, which also works when the user namespace denies setgroups(2).
        sys.setgroups(&[]).map_err(sys_err("setgroups"))?;
    }
    let mut at_user = || -> Result<(), InitError> {
        let Some(user) = user else {
            return Ok(());
        };
        if user.path.is_none() {
            sys.unshare(CloneFlags::CLONE_NEWUSER)
                .map_err(sys_err("unshare user namespace"))?;
            map_ids()?;
        } else if let Some(maps) = &plan.id_maps {
            check_joined_id_maps(maps, user.path.as_deref().unwrap_or(Path::new("")))?;
        }
        become_root(sys)
    };
    nsjoin::join(sys, &files, &mut at_user)?;
    // A new cgroup namespace is unshared later, by the init, once it is in its cgroup.
    let new = plan
        .namespaces
        .iter()
        .filter(|n| {
            n.path.is_none()
                && n.flag != CloneFlags::CLONE_NEWCGROUP
                && n.flag != CloneFlags::CLONE_NEWUSER
        })
        .fold(CloneFlags::empty(), |acc, n| acc | n.flag);
    sys.unshare(new)
        .map_err(sys_err(format!("unshare {new:?}")))
}

/// Root of the user namespace just entered, as runc's nsexec: files the init creates (mount
/// points in the rootfs) need an owner that is mapped there, which the host's root is not.
fn become_root(sys: &dyn Syscall) -> Result<(), InitError> {
    sys.setresgid(0)
        .map_err(|source| InitError::UserNamespace {
            field: "linux.gidMappings".into(),
            reason: format!("cannot become gid 0 of the container's user namespace: {source}"),
        })?;
    sys.setresuid(0).map_err(|source| InitError::UserNamespace {
        field: "linux.uidMappings".into(),
        reason: format!("cannot become uid 0 of the container's user namespace: {source}"),
    })
}

/// A user namespace joined by path together with mappings in the config must map exactly those.
fn check_joined_id_maps(maps: &crate::spec::IdMaps, path: &Path) -> Result<(), InitError> {
    for (file, want, field) in [
        ("uid_map", &maps.uid, "linux.uidMappings"),
        ("gid_map", &maps.gid, "linux.gidMappings"),
    ] {
        let proc = Path::new("/proc/self").join(file);
        let text = std::fs::read_to_string(&proc).map_err(|source| InitError::Io {
            what: format!("read {}", proc.display()),
            source,
        })?;
        let have = idmap::parse_proc(&text);
        if !have.as_deref().is_some_and(|h| idmap::same(h, want)) {
            return Err(InitError::UserNamespace {
                field: field.into(),
                reason: format!(
                    "the user namespace {} maps {:?}, not {:?}",
                    path.display(),
                    text.split_whitespace().collect::<Vec<_>>().join(" "),
                    idmap::format(want)
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
            });
        }
    }
    Ok(())
}

/// The init reaches the rootfs by its host path, now as root of the user namespace, which has no
/// privilege over the host's root-owned directories: like runc, this runtime changes no owner or
/// mode for it, so a rootfs below a directory that uid cannot search fails here, clearly.
fn check_rootfs_reachable(plan: &Plan) -> Result<(), InitError> {
    nix::unistd::access(&plan.rootfs, nix::unistd::AccessFlags::X_OK).map_err(|source| {
        InitError::Syscall {
            what: format!(
                "rootfs {} is not reachable by root of the container's user namespace (host \
                 uid {}): every directory above it must be searchable by that uid",
                plan.rootfs.display(),
                plan.id_maps
                    .as_ref()
                    .and_then(|m| m.uid_to_host(0))
                    .map_or_else(|| "unknown".into(), |u| u.to_string())
            ),
            source,
        }
    })
}

fn set_hostname(sys: &dyn Syscall, plan: &Plan) -> Result<(), InitError> {
    match &plan.hostname {
        Some(h) => sys.sethostname(h).map_err(sys_err("sethostname")),
        None => Ok(()),
    }
}

fn set_domainname(sys: &dyn Syscall, plan: &Plan) -> Result<(), InitError> {
    match &plan.domainname {
        Some(d) => sys.setdomainname(d).map_err(sys_err("setdomainname")),
        None => Ok(()),
    }
}

/// `linux.timeOffsets`, by the process that unshared the time namespace and before the init (the
/// namespace's first process) is forked: the kernel refuses them afterwards.
pub fn set_time_offsets(sys: &dyn Syscall, plan: &Plan) -> Result<(), InitError> {
    if plan.time_offsets.is_empty() {
        return Ok(());
    }
    let text: String = plan
        .time_offsets
        .iter()
        .map(|o| format!("{} {} {}\n", o.clock, o.secs, o.nanosecs))
        .collect();
    sys.write_file(Path::new("/proc/self/timens_offsets"), &text)
        .map_err(|source| InitError::Io {
            what: "write /proc/self/timens_offsets (linux.timeOffsets)".into(),
            source,
        })
}

/// The state document hooks run by the init read.
fn hook_state(plan: &Plan, status: oci_spec::runtime::ContainerState, pid: Option<i32>) -> Vec<u8> {
    crate::hooks::state_json(
        &plan.oci_version,
        &plan.id,
        status,
        pid,
        &plan.bundle,
        &plan.annotations,
    )
}

/// Has `create` run the prestart and createRuntime hooks (in the runtime's namespaces) and waits
/// for them, then runs the createContainer hooks here, in the container's namespaces with the
/// host's paths (the pivot is still to come).
pub fn run_create_hooks(
    sys: &dyn Syscall,
    plan: &Plan,
    gate: &mut CgroupGate,
    tx: &mut Sender,
) -> Result<(), InitError> {
    let hooks = &plan.hooks;
    if !hooks.has_runtime_hooks() && hooks.create_container.is_empty() {
        return Ok(());
    }
    // In its cgroup (and cgroup namespace) first: that is part of the runtime environment, and
    // it tells the init its pid for the state.
    gate.wait(sys)?;
    if hooks.has_runtime_hooks() {
        tx.send(&Message::RuntimeHooks)
            .map_err(InitError::Channel)?;
        match gate.recv()? {
            Some(Message::RuntimeHooksDone) => {}
            _ => return Err(InitError::RuntimeHooksNotRun),
        }
    }
    let state = hook_state(
        plan,
        oci_spec::runtime::ContainerState::Creating,
        gate.pid(),
    );
    for hook in &hooks.create_container {
        sys.run_hook(
            HookKind::CreateContainer,
            &with_process_env(hook, plan),
            &state,
        )?;
    }
    Ok(())
}

/// The startContainer hooks: after `start`, in the container (paths inside it), before the exec.
pub fn run_start_container_hooks(
    sys: &dyn Syscall,
    plan: &Plan,
    pid: Option<i32>,
) -> Result<(), InitError> {
    if plan.hooks.start_container.is_empty() {
        return Ok(());
    }
    let state = hook_state(plan, oci_spec::runtime::ContainerState::Created, pid);
    for hook in &plan.hooks.start_container {
        sys.run_hook(
            HookKind::StartContainer,
            &with_process_env(hook, plan),
            &state,
        )?;
    }
    Ok(())
}

/// A hook of the init without an env of its own gets the container process's (as in runc),
/// never the environment `create` was called with.
pub fn with_process_env(hook: &HookPlan, plan: &Plan) -> HookPlan {
    let mut hook = hook.clone();
    if hook.env.is_none() {
        hook.env = Some(
            plan.process
                .env
                .iter()
                .map(|e| e.to_string_lossy().into_owned())
                .collect(),
        );
    }
    hook
}

/// Mounts everything below the rootfs, still seen from the host's path names.
pub fn prepare_rootfs(
    sys: &dyn Syscall,
    plan: &Plan,
    layout: &Layout,
    gate: &mut CgroupGate,
) -> Result<(), InitError> {
    // Without a mount namespace there is nothing to mount: it would land on the host's mounts.
    if !plan.has_mount_namespace() {
        return Ok(());
    }
    let mnt = |src: Option<&Path>, dst: &Path, flags: MsFlags| {
        sys.mount(src, dst, None, flags, None)
            .map_err(|source| InitError::Mount {
                what: format!("mount {} ({flags:?})", dst.display()),
                source,
            })
    };
    // By default nothing done in this namespace propagates back to the host (rslave); a config
    // that names rootfsPropagation gets it here already, as with runc, so `rshared` volumes work.
    mnt(None, Path::new("/"), plan.parent_propagation)?;
    // pivot_root refuses a new root whose parent mount is shared; making just that parent
    // private also keeps the rootfs bind below from propagating anywhere. A slave parent stays
    // one, so `rslave` still lets the host's later mounts in.
    let (parent, shared) = rootfs::parent_mount_of(sys, &plan.rootfs);
    if shared {
        mnt(None, &parent, MsFlags::MS_PRIVATE)?;
    }
    // pivot_root needs the new root to be a mount point.
    mnt(
        Some(&plan.rootfs),
        &plan.rootfs,
        MsFlags::MS_BIND | MsFlags::MS_REC,
    )?;
    // Opened after the bind, so that lookups from it land in the new mount.
    let root = RootDir::open(&plan.rootfs).map_err(|source| InitError::Io {
        what: format!("open rootfs {}", plan.rootfs.display()),
        source,
    })?;
    // In a user namespace only the owner of the cgroup namespace may mount cgroupfs: without a
    // cgroup namespace of its own, the container gets its cgroup directories bound, as with runc.
    let bind_cgroups = plan.user_namespace().is_some()
        && !plan
            .namespaces
            .iter()
            .any(|n| n.flag == CloneFlags::CLONE_NEWCGROUP);
    for (i, m) in plan.mounts.iter().enumerate() {
        let cgroup = m.fstype == "cgroup" || m.fstype == "cgroup2";
        if cgroup {
            // A cgroup mount shows the cgroup namespace's root, which must exist by now.
            gate.wait(sys)?;
        }
        if cgroup && bind_cgroups {
            rootfs::bind_cgroups(sys, &root, m, i, layout, &plan.cgroup_path)?;
        } else {
            rootfs::mount_entry(sys, &root, m, i, layout)?;
        }
    }
    rootfs::create_devices(sys, &root, plan)
}

/// pivot_root(2) into the rootfs and detach the old root; or, in the test-only modes, MS_MOVE +
/// chroot(2) like `runc --no-pivot`, or a bare, deliberately escapable chroot(2).
pub fn pivot_into_rootfs(sys: &dyn Syscall, plan: &Plan) -> Result<(), InitError> {
    let root = &plan.rootfs;
    let dot = Path::new(".");
    sys.chdir(root)
        .map_err(sys_err(format!("chdir {}", root.display())))?;
    if !plan.has_mount_namespace() {
        // Nothing to pivot (and no mount of ours to change): a chroot, as runc does.
        sys.chroot(dot).map_err(sys_err("chroot"))?;
        return sys.chdir(Path::new("/")).map_err(sys_err("chdir /"));
    }
    if plan.chroot_only {
        sys.chroot(dot).map_err(sys_err("chroot"))?;
    } else if plan.no_pivot {
        sys.mount(Some(root), Path::new("/"), None, MsFlags::MS_MOVE, None)
            .map_err(|source| InitError::Mount {
                what: "move rootfs to /".into(),
                source,
            })?;
        sys.chroot(dot).map_err(sys_err("chroot"))?;
    } else {
        // pivot_root(".", ".") stacks the old root on top of the new one; unmounting "." then
        // removes it without needing a directory for it inside the rootfs.
        let old_root = nix::fcntl::open(
            "/",
            nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(sys_err("open the old root"))?;
        sys.pivot_root(dot, dot).map_err(sys_err("pivot_root"))?;
        // The old root may be shared with the host (rootfsPropagation: shared): make it a slave
        // first, or detaching it would propagate the unmount to the host's own mounts. From
        // inside the old root, so "." names it and not the new root below it.
        sys.fchdir(old_root.as_fd())
            .map_err(sys_err("fchdir to the old root"))?;
        sys.mount(None, dot, None, MsFlags::MS_SLAVE | MsFlags::MS_REC, None)
            .map_err(|source| InitError::Mount {
                what: "make the old root a slave".into(),
                source,
            })?;
        sys.umount2(dot, MntFlags::MNT_DETACH)
            .map_err(|source| InitError::Mount {
                what: "detach old root".into(),
                source,
            })?;
    }
    sys.chdir(Path::new("/")).map_err(sys_err("chdir /"))?;
    sys.mount(None, Path::new("/"), None, plan.rootfs_propagation, None)
        .map_err(|source| InitError::Mount {
            what: "set rootfs propagation".into(),
            source,
        })
}

/// Masked and read-only paths, then the read-only root: all after pivot, on container paths.
fn finish_rootfs(sys: &dyn Syscall, plan: &Plan) -> Result<(), InitError> {
    for p in &plan.masked_paths {
        rootfs::mask_path(sys, p)?;
    }
    for p in &plan.readonly_paths {
        rootfs::readonly_path(sys, p)?;
    }
    if plan.readonly_root {
        rootfs::remount_readonly(sys, Path::new("/"))?;
    }
    Ok(())
}

fn apply_sysctl(sys: &dyn Syscall, plan: &Plan) -> Result<(), InitError> {
    for (key, value) in &plan.sysctl {
        let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        sys.write_file(&path, value)
            .map_err(|source| InitError::Io {
                what: format!("sysctl {key}"),
                source,
            })?;
    }
    Ok(())
}

/// `process.apparmorProfile` and `process.selinuxLabel`: the labels the exec transitions to (the
/// plan only has them on a host with that LSM).
fn apply_lsm_labels(sys: &dyn Syscall, plan: &Plan) -> Result<(), InitError> {
    let p = &plan.process;
    if let Some(profile) = &p.apparmor_profile {
        // The AppArmor-specific file when the kernel has it (stacked LSMs), the shared one before.
        let own = Path::new("/proc/thread-self/attr/apparmor/exec");
        let path = if sys.file_kind(own, true).is_some() {
            own
        } else {
            Path::new("/proc/thread-self/attr/exec")
        };
        sys.write_file(path, &format!("exec {profile}"))
            .map_err(|source| InitError::Io {
                what: format!("set AppArmor profile {profile} (process.apparmorProfile)"),
                source,
            })?;
    }
    if let Some(label) = &p.selinux_label {
        sys.write_file(Path::new("/proc/thread-self/attr/exec"), label)
            .map_err(|source| InitError::Io {
                what: format!("set SELinux label {label} (process.selinuxLabel)"),
                source,
            })?;
    }
    Ok(())
}

/// `process.scheduler` and `process.ioPriority`.
fn apply_scheduling(sys: &dyn Syscall, plan: &Plan) -> Result<(), InitError> {
    let p = &plan.process;
    if let Some(attr) = &p.scheduler {
        sys.sched_setattr(attr)
            .map_err(sys_err("sched_setattr (process.scheduler)"))?;
    }
    if let Some(value) = p.io_priority {
        sys.ioprio_set(value)
            .map_err(sys_err("ioprio_set (process.ioPriority)"))?;
    }
    Ok(())
}

fn apply_rlimits(sys: &dyn Syscall, plan: &Plan) -> Result<(), InitError> {
    for (res, soft, hard) in &plan.process.rlimits {
        sys.setrlimit(*res, *soft, *hard)
            .map_err(sys_err(format!("setrlimit {res:?}")))?;
    }
    Ok(())
}

/// Bounding set, then uid/gid/groups (keeping permitted capabilities across setuid).
pub fn switch_user(sys: &dyn Syscall, plan: &Plan) -> Result<(), InitError> {
    let p = &plan.process;
    // The bounding set first: dropping from it needs CAP_SETPCAP, which may be gone later.
    let bounding = sys
        .read_caps(CapSet::Bounding)
        .map_err(caps_err("read bounding set"))?;
    // Sorted, so the order of the drops does not depend on a hash.
    let mut dropped: Vec<_> = bounding.difference(&p.caps.bounding).copied().collect();
    dropped.sort_by_key(|c| c.index());
    for cap in dropped {
        sys.drop_cap(CapSet::Bounding, cap)
            .map_err(caps_err(format!("drop {cap} from bounding set")))?;
    }
    sys.set_keepcaps(true).map_err(sys_err("set keepcaps"))?;
    sys.setgroups(&p.additional_gids)
        .map_err(sys_err("setgroups"))?;
    sys.setresgid(p.gid)
        .map_err(sys_err(format!("setgid {}", p.gid)))?;
    sys.setresuid(p.uid)
        .map_err(sys_err(format!("setuid {}", p.uid)))?;
    sys.set_keepcaps(false).map_err(sys_err("clear keepcaps"))
}

/// The four remaining capability sets, in an order the kernel accepts: inheritable while
/// permitted is still full, effective before permitted shrinks, ambient last.
pub fn apply_capabilities(sys: &dyn Syscall, plan: &Plan) -> Result<(), InitError> {
    let c = &plan.process.caps;
    sys.set_caps(CapSet::Inheritable, &c.inheritable)
        .map_err(caps_err("set inheritable capabilities"))?;
    sys.set_caps(CapSet::Effective, &c.effective)
        .map_err(caps_err("set effective capabilities"))?;
    sys.set_caps(CapSet::Permitted, &c.permitted)
        .map_err(caps_err("set permitted capabilities"))?;
    sys.clear_caps(CapSet::Ambient)
        .map_err(caps_err("clear ambient capabilities"))?;
    // The kernel only lets a capability into the ambient set if it is both permitted and
    // inheritable; runc skips the others silently (its default spec lists ambient capabilities
    // without inheritable ones), and so does this runtime for compatibility.
    let mut ambient: Vec<_> = c
        .ambient
        .intersection(&c.inheritable)
        .filter(|cap| c.permitted.contains(cap))
        .copied()
        .collect();
    ambient.sort_by_key(|c| c.index());
    for cap in ambient {
        sys.raise_cap(CapSet::Ambient, cap)
            .map_err(caps_err(format!("raise ambient {cap}")))?;
    }
    Ok(())
}

/// After the capabilities: no_new_privs does not stop this process from dropping them, but it
/// is the last thing that changes what the exec may gain.
fn set_no_new_privs(sys: &dyn Syscall, plan: &Plan) -> Result<(), InitError> {
    if plan.process.no_new_privileges {
        sys.set_no_new_privs()
            .map_err(sys_err("set no_new_privs"))?;
    }
    Ok(())
}

/// Looks args[0] up in the process's PATH, so a missing binary fails `create`, not `start`.
pub fn find_executable(plan: &Plan) -> Result<CString, InitError> {
    let arg0 = plan
        .process
        .args
        .first()
        .map(|a| a.as_bytes())
        .unwrap_or_default();
    let name = Path::new(std::ffi::OsStr::from_bytes(arg0));
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    let found = if arg0.contains(&b'/') {
        executable(name).then(|| name.to_path_buf())
    } else {
        plan.process
            .path_env
            .split(':')
            .map(|dir| Path::new(if dir.is_empty() { "." } else { dir }).join(name))
            .find(|p| executable(p))
    };
    let display = String::from_utf8_lossy(arg0).into_owned();
    let path = found.ok_or(InitError::ExecutableNotFound(display.clone()))?;
    CString::new(path.as_os_str().as_bytes()).map_err(|_| InitError::ExecutableNotFound(display))
}

/// Blocks until `start` writes a byte into the exec fifo.
fn wait_for_start(fifo: &File) -> Result<(), InitError> {
    loop {
        let mut fds = [PollFd::new(fifo, PollFlags::IN)];
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                return Err(InitError::Syscall {
                    what: "poll exec fifo".into(),
                    source: Errno::from_raw(e.raw_os_error()),
                });
            }
        }
        let mut buf = [0u8; 1];
        match (&*fifo).read(&mut buf) {
            Ok(1) => return Ok(()),
            Ok(_) => return Err(InitError::StartAborted),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(InitError::Io {
                    what: "read exec fifo".into(),
                    source,
                });
            }
        }
    }
}
