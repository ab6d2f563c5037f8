//! `exec`: one more process in a running container, with runc's command line.
//!
//! The runtime forks an intermediate process that moves itself into the container's cgroup (every
//! hierarchy), joins every namespace of the container's init through /proc/<pid>/ns/* (the user
//! namespace first, the mount namespace last: see `container::nsjoin`), and forks the process,
//! which so lands in the container's pid namespace. That process closes every descriptor it was
//! not asked to pass on *before* it changes into its working directory, and checks that directory
//! is inside the container's root: an inherited descriptor of a host directory, or a host working
//! directory, is the escape of CVE-2024-21626. It then takes the process's rlimits, user,
//! capabilities and no_new_privs as the init does, and execs. The intermediate reports the
//! process's pid and exits; the runtime, a child subreaper, waits for the process and exits with
//! its status (signals are forwarded to it), or with `--detach` returns once it has exec'd.

use std::collections::HashSet;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::unistd::{ForkResult, Pid};
use oci_spec::runtime::{Capability, LinuxCapabilities, Process};
use rustix::event::{PollFd, PollFlags, Timespec, poll};

use crate::cgroups;
use crate::cli::ExecArgs;
use crate::container::init::{self, EXEC_STEPS, EXEC_STEPS_AFTER_CWD, InitError};
use crate::container::nsjoin::{self, NsFile};
use crate::container::{Message, Receiver, Sender};
use crate::spec::{self, Plan, ProcessPlan, SpecError, idmap};
use crate::state::{ContainerState, StateError, Status, pid_alive};
use crate::sys;
use crate::syscall::{LinuxSyscall, Syscall};

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot exec in container {id:?}: it is {status}")]
    NotRunning { id: String, status: Status },
    #[error("{0}")]
    Usage(String),
    #[error("{0} is not supported by palisade-runtime")]
    Unsupported(String),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("cannot read {path}: {source}")]
    ReadProcess {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid process {path}: {field}: {message}")]
    InvalidProcess {
        path: PathBuf,
        field: String,
        message: String,
    },
    #[error("--preserve-fds {n}: file descriptor {fd} is not open")]
    PreserveFd { n: u32, fd: u32 },
    #[error("{what}: {source}")]
    Sys { what: String, source: Errno },
    #[error(transparent)]
    Setup(#[from] InitError),
    #[error("exec failed: {0}")]
    Process(String),
    #[error("the exec'd process exited before it started")]
    Vanished,
    #[error("reading from the exec'd process: {0}")]
    Channel(std::io::Error),
    #[error("cannot write pid file {path}: {source}")]
    PidFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn sys_err(what: impl Into<String>) -> impl FnOnce(Errno) -> ExecError {
    let what = what.into();
    move |source| ExecError::Sys { what, source }
}

/// The `exec` verb: the process's exit code (128+n if a signal killed it), 0 with --detach.
pub fn exec(root: &Path, args: &ExecArgs) -> Result<u8, ExecError> {
    // First of all, before this process opens anything of its own.
    let keep = prepare_fds(args.preserve_fds)?;
    let id = args.id();
    let st = ContainerState::load(root, id)?;
    let status = st.status(root);
    if !matches!(status, Status::Created | Status::Running) {
        return Err(ExecError::NotRunning {
            id: id.to_owned(),
            status,
        });
    }
    let process = match &args.process {
        Some(path) => {
            flags_absent_with_process(args)?;
            read_process(path)?
        }
        None => process_from_flags(spec::load_process(&st.bundle)?, args)?,
    };
    // The container's plan, from its bundle as runc reads it: what of the container applies per
    // process (seccomp, personality) comes with it.
    let mut plan = spec::load(&st.bundle, id, false)?;
    plan.process = spec::exec_process(&process)?;
    if plan
        .seccomp
        .as_ref()
        .is_some_and(|s| s.listener().is_some())
    {
        return Err(ExecError::Unsupported(
            "exec into a container whose seccomp profile notifies an agent \
             (linux.seccomp.listenerPath)"
                .into(),
        ));
    }
    check_user_mapped(st.pid, &plan.process)?;
    // Joining the mount namespace sets the root to the namespace's (the rootfs, after a pivot or
    // a move); a container that only chroot'ed (no mount namespace, the test-only modes) is
    // entered through its init's root instead.
    let chrooted = !plan.has_mount_namespace() || plan.chroot_only || plan.no_pivot;
    let target = Target::open(&st, chrooted)?;

    let (rx, tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys_err("pipe"))?;
    if !args.detach {
        // The process is our grandchild: as a subreaper we inherit it when the intermediate
        // exits, and collect its exit status.
        nix::sys::prctl::set_child_subreaper(true).map_err(sys_err("set child subreaper"))?;
    }
    let child = match sys::fork().map_err(sys_err("fork"))? {
        ForkResult::Child => {
            drop(rx);
            intermediate(&st, &plan, target, Sender::new(tx), keep)
        }
        ForkResult::Parent { child } => child,
    };
    drop(tx);
    drop(target);
    let signals = if args.detach {
        None
    } else {
        Some(crate::run::forward_signals().map_err(sys_err("block signals"))?)
    };
    let started = wait_started(Receiver::new(rx));
    // Reap the intermediate (it exits right after reporting the pid).
    let _ = nix::sys::wait::waitpid(child, None);
    let pid = started?;
    if let Some(path) = &args.pid_file {
        crate::create::write_pid_file(path, pid).map_err(|source| ExecError::PidFile {
            path: path.clone(),
            source,
        })?;
    }
    match signals {
        None => Ok(0),
        Some(signals) => crate::run::wait_forwarding(Pid::from_raw(pid), &signals)
            .map_err(sys_err("waiting for the process")),
    }
}

/// Reads the reports of the intermediate and the process until both are gone: the pid, then
/// either an error or the end of the stream (the process exec'd: the pipe is close-on-exec).
fn wait_started(mut rx: Receiver) -> Result<i32, ExecError> {
    let mut pid = None;
    loop {
        match rx.recv() {
            Ok(Some(Message::ExecPid { pid: p })) => pid = Some(p),
            Ok(Some(Message::Error { message })) => return Err(ExecError::Process(message)),
            Ok(Some(_)) => {
                return Err(ExecError::Channel(std::io::Error::other(
                    "unexpected message",
                )));
            }
            Ok(None) => return pid.ok_or(ExecError::Vanished),
            Err(e) => return Err(ExecError::Channel(e)),
        }
    }
}

/// Makes sure 0-2 are open (on /dev/null if not: a pipe of this runtime must never become the
/// process's stdin), checks that the descriptors to preserve are open, and closes every other
/// one. Returns the first descriptor not passed on (3 + N).
fn prepare_fds(preserve: u32) -> Result<u32, ExecError> {
    let keep = preserve
        .checked_add(3)
        .filter(|k| *k < 1 << 20)
        .ok_or_else(|| ExecError::Usage(format!("--preserve-fds {preserve}: too many")))?;
    let is_open = |fd: u32| {
        Path::new(&format!("/proc/self/fd/{fd}"))
            .symlink_metadata()
            .is_ok()
    };
    for fd in 0..3 {
        if !is_open(fd) {
            // open(2) takes the lowest free number: this one.
            let null = nix::fcntl::open("/dev/null", OFlag::O_RDWR, nix::sys::stat::Mode::empty())
                .map_err(sys_err("open /dev/null"))?;
            let _stays_open_as_stdio = std::os::fd::IntoRawFd::into_raw_fd(null);
        }
    }
    if let Some(fd) = (3..keep).find(|fd| !is_open(*fd)) {
        return Err(ExecError::PreserveFd { n: preserve, fd });
    }
    sys::close_range(keep, u32::MAX).map_err(sys_err("close_range"))?;
    Ok(keep)
}

/// With --process, the process.json is the whole process: other process options would be
/// silently dropped (runc ignores them), so they are refused.
fn flags_absent_with_process(args: &ExecArgs) -> Result<(), ExecError> {
    let given = [
        (args.cwd.is_some(), "--cwd"),
        (!args.env.is_empty(), "--env"),
        (args.user.is_some(), "--user"),
        (!args.additional_gids.is_empty(), "--additional-gids"),
        (!args.caps.is_empty(), "--cap"),
        (args.no_new_privs, "--no-new-privs"),
    ];
    if let Some((_, flag)) = given.iter().find(|(set, _)| *set) {
        return Err(ExecError::Usage(format!(
            "{flag} cannot be combined with --process (the process.json holds the whole process)"
        )));
    }
    if !args.command().is_empty() {
        return Err(ExecError::Usage(
            "a command cannot be given with --process (the process.json holds its args)".into(),
        ));
    }
    Ok(())
}

/// A process.json; a bad one is refused with the path of the offending field.
fn read_process(path: &Path) -> Result<Process, ExecError> {
    let text = std::fs::read(path).map_err(|source| ExecError::ReadProcess {
        path: path.to_owned(),
        source,
    })?;
    parse_process(&text).map_err(|(field, message)| ExecError::InvalidProcess {
        path: path.to_owned(),
        field,
        message,
    })
}

/// (field, message) of what is wrong.
fn parse_process(text: &[u8]) -> Result<Process, (String, String)> {
    let de = &mut serde_json::Deserializer::from_slice(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." || path == "?" {
            "process".to_owned()
        } else {
            format!("process.{path}")
        };
        (field, e.inner().to_string())
    })
}

/// The bundle's `process` with the command and runc's exec options applied, as runc does.
pub fn process_from_flags(mut p: Process, args: &ExecArgs) -> Result<Process, ExecError> {
    let command = args.command();
    if command.is_empty() {
        return Err(ExecError::Usage(
            "exec needs a command after the container id (or --process)".into(),
        ));
    }
    p.set_args(Some(command.to_vec()));
    // The config's terminal belongs to the init; an exec'd process gets one only with --tty.
    p.set_terminal(Some(false));
    if let Some(cwd) = &args.cwd {
        if !Path::new(cwd).is_absolute() {
            return Err(ExecError::Usage(format!("--cwd {cwd}: must be absolute")));
        }
        p.set_cwd(cwd.into());
    }
    if let Some(user) = &args.user {
        let (uid, gid) = parse_user(user)?;
        let mut u = p.user().clone();
        u.set_uid(uid);
        if let Some(gid) = gid {
            u.set_gid(gid);
        }
        p.set_user(u);
    }
    if !args.additional_gids.is_empty() {
        let mut u = p.user().clone();
        let mut gids = u.additional_gids().clone().unwrap_or_default();
        gids.extend(&args.additional_gids);
        u.set_additional_gids(Some(gids));
        p.set_user(u);
    }
    if !args.caps.is_empty() {
        let mut c: LinuxCapabilities = p.capabilities().clone().unwrap_or_else(no_capabilities);
        for name in &args.caps {
            let cap: Capability = serde_json::from_value(serde_json::Value::from(name.as_str()))
                .map_err(|_| ExecError::Usage(format!("--cap {name}: unknown capability")))?;
            let add = |set: &Option<HashSet<Capability>>| {
                let mut set = set.clone().unwrap_or_default();
                set.insert(cap);
                Some(set)
            };
            c.set_bounding(add(c.bounding()));
            c.set_effective(add(c.effective()));
            c.set_permitted(add(c.permitted()));
            // runc: ambient only if the config has inheritable capabilities, which an ambient
            // capability needs.
            if c.inheritable().is_some() {
                c.set_ambient(add(c.ambient()));
            }
        }
        p.set_capabilities(Some(c));
    }
    if !args.env.is_empty() {
        let mut env = p.env().clone().unwrap_or_default();
        env.extend(args.env.iter().cloned());
        p.set_env(Some(env));
    }
    if args.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    Ok(p)
}

fn no_capabilities() -> LinuxCapabilities {
    serde_json::from_value(serde_json::json!({})).unwrap_or_default()
}

/// `--user UID[:GID]`, numeric as in runc.
fn parse_user(user: &str) -> Result<(u32, Option<u32>), ExecError> {
    let bad =
        |what: &str, v: &str| ExecError::Usage(format!("--user {user}: invalid {what} {v:?}"));
    let (uid, gid) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let uid = uid.parse().map_err(|_| bad("uid", uid))?;
    let gid = gid
        .map(|g| g.parse().map_err(|_| bad("gid", g)))
        .transpose()?;
    Ok((uid, gid))
}

/// In a container with its own user namespace the process's ids must be mapped there, or
/// setuid(2) fails with a bare EINVAL: say which one, from the init's maps.
fn check_user_mapped(pid: i32, p: &ProcessPlan) -> Result<(), ExecError> {
    let same = |name: &str| {
        let theirs = std::fs::metadata(format!("/proc/{pid}/ns/{name}")).ok();
        let ours = std::fs::metadata(format!("/proc/self/ns/{name}")).ok();
        use std::os::unix::fs::MetadataExt;
        matches!((theirs, ours), (Some(a), Some(b)) if a.ino() == b.ino() && a.dev() == b.dev())
    };
    if same("user") {
        return Ok(());
    }
    let read = |file: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/{file}"))
            .ok()
            .and_then(|t| idmap::parse_proc(&t))
    };
    let (Some(uid), Some(gid)) = (read("uid_map"), read("gid_map")) else {
        // Unreadable: the init is gone, which joining its namespaces will report.
        return Ok(());
    };
    let maps = spec::IdMaps { uid, gid };
    let unmapped = |field: String, id: u32| {
        ExecError::Spec(SpecError::Invalid {
            field,
            reason: format!("{id} is not mapped in the container's user namespace"),
        })
    };
    if maps.uid_to_host(p.uid).is_none() {
        return Err(unmapped("process.user.uid".into(), p.uid));
    }
    if maps.gid_to_host(p.gid).is_none() {
        return Err(unmapped("process.user.gid".into(), p.gid));
    }
    for (i, g) in p.additional_gids.iter().enumerate() {
        if maps.gid_to_host(*g).is_none() {
            return Err(unmapped(format!("process.user.additionalGids[{i}]"), *g));
        }
    }
    Ok(())
}

/// Namespace files of /proc/<pid>/ns, by name.
const NAMESPACES: [(&str, CloneFlags); 8] = [
    ("user", CloneFlags::CLONE_NEWUSER),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("time", CloneFlags::from_bits_retain(0x80)),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// The container's init, pinned by a pidfd, its namespaces that differ from ours and, for a
/// chroot'ed container, its root.
struct Target {
    _pidfd: OwnedFd,
    files: Vec<NsFile>,
    root: Option<OwnedFd>,
}

impl Target {
    fn open(st: &ContainerState, chrooted: bool) -> Result<Self, ExecError> {
        let stopped = || ExecError::NotRunning {
            id: st.id.clone(),
            status: Status::Stopped,
        };
        let pid = rustix::process::Pid::from_raw(st.pid).ok_or_else(stopped)?;
        let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
            .map_err(|_| stopped())?;
        // Checked after pidfd_open: the pidfd pins this process, so no recycled pid is used.
        if !pid_alive(st.pid, st.pid_start_time) {
            return Err(stopped());
        }
        let mut files = Vec::new();
        for (name, flag) in NAMESPACES {
            let path = PathBuf::from(format!("/proc/{}/ns/{name}", st.pid));
            if !path.exists() {
                // A kernel without this namespace type (time before 5.6).
                continue;
            }
            let f = NsFile::open(flag, &path)?;
            let ours = std::fs::File::open(format!("/proc/self/ns/{name}"))
                .ok()
                .and_then(|o| nsjoin::ns_id(&o));
            // Already there (a namespace the container shares with the host): setns(2) into
            // one's own user namespace is even an error.
            if f.id().is_some() && f.id() == ours {
                continue;
            }
            files.push(f);
        }
        let root = if chrooted {
            let path = format!("/proc/{}/root", st.pid);
            let fd = rustix::fs::open(
                &path,
                rustix::fs::OFlags::PATH
                    | rustix::fs::OFlags::DIRECTORY
                    | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .map_err(|e| ExecError::Sys {
                what: format!("open {path}"),
                source: Errno::from_raw(e.raw_os_error()),
            })?;
            Some(fd)
        } else {
            None
        };
        // Still alive after the opens: the files are its namespaces, not a successor's.
        let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        if poll(&mut fds, Some(&zero)).map_err(|e| ExecError::Sys {
            what: "poll pidfd".into(),
            source: Errno::from_raw(e.raw_os_error()),
        })? != 0
        {
            return Err(stopped());
        }
        Ok(Self {
            _pidfd: pidfd,
            files,
            root,
        })
    }
}

/// Body of the intermediate process. Never returns.
fn intermediate(st: &ContainerState, plan: &Plan, target: Target, mut tx: Sender, keep: u32) -> ! {
    let sys = LinuxSyscall;
    let result = (|| -> Result<(), InitError> {
        if let Some(adj) = plan.process.oom_score_adj {
            sys.write_file(Path::new("/proc/self/oom_score_adj"), &adj.to_string())
                .map_err(|source| InitError::Io {
                    what: "write oom_score_adj".into(),
                    source,
                })?;
        }
        let affinity = plan.process.exec_cpu_affinity.as_ref();
        set_affinity(affinity.and_then(|a| a.initial.as_deref()), "initial")?;
        // Into the cgroup while still privileged on the host, before any namespace.
        cgroups::enter(&st.cgroup, std::process::id() as i32)?;
        set_affinity(affinity.and_then(|a| a.after_cgroup.as_deref()), "final")?;
        nsjoin::join(&sys, &target.files, &mut || Ok(()))?;
        if let Some(root) = &target.root {
            sys.fchdir(root.as_fd())
                .map_err(|source| InitError::Syscall {
                    what: "fchdir to the container's root".into(),
                    source,
                })?;
            sys.chroot(Path::new("."))
                .map_err(|source| InitError::Syscall {
                    what: "chroot into the container's root".into(),
                    source,
                })?;
        }
        drop(target);
        // The pid namespace applies to children only.
        match sys::fork().map_err(|source| InitError::Syscall {
            what: "fork".into(),
            source,
        })? {
            ForkResult::Parent { child } => tx
                .send(&Message::ExecPid {
                    pid: child.as_raw(),
                })
                .map_err(InitError::Channel),
            ForkResult::Child => {
                let err = match process_steps(&sys, plan, &tx, keep) {
                    Ok(never) => match never {},
                    Err(e) => e,
                };
                init::fail(&mut tx, &err)
            }
        }
    })();
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => init::fail(&mut tx, &e),
    }
}

/// The process, now in every namespace of the container: close what is not passed on, take the
/// process's settings, change into its directory (checked to be inside the root) and exec.
fn process_steps(
    sys: &dyn Syscall,
    plan: &Plan,
    tx: &Sender,
    keep: u32,
) -> Result<std::convert::Infallible, InitError> {
    // Closed, not just close-on-exec: chdir(2) below must not be able to follow any descriptor
    // of the runtime out of the container. Only the report pipe stays, until the exec.
    let report = u32::try_from(tx.as_fd().as_raw_fd()).unwrap_or(u32::MAX);
    let close_err = |source| InitError::Syscall {
        what: "close_range".into(),
        source,
    };
    if report >= keep {
        sys::close_range(keep, report - 1).map_err(close_err)?;
        sys::close_range(report.saturating_add(1), u32::MAX).map_err(close_err)?;
    } else {
        sys::close_range(keep, u32::MAX).map_err(close_err)?;
    }
    for (_, step) in EXEC_STEPS {
        step(sys, plan)?;
    }
    let cwd = &plan.process.cwd;
    sys.chdir(cwd).map_err(|source| InitError::Syscall {
        what: format!("chdir {}", cwd.display()),
        source,
    })?;
    check_cwd_inside()?;
    for (_, step) in EXEC_STEPS_AFTER_CWD {
        step(sys, plan)?;
    }
    let exe = init::find_executable(plan)?;
    sys::reset_sigpipe().map_err(|source| InitError::Syscall {
        what: "reset SIGPIPE".into(),
        source,
    })?;
    let Err(errno) = nix::unistd::execve(&exe, &plan.process.args, &plan.process.env);
    Err(InitError::Syscall {
        what: format!("exec {}", exe.to_string_lossy()),
        source: errno,
    })
}

/// `process.execCPUAffinity.initial` (before the cgroup) or `.final` (after it), as runc.
fn set_affinity(cpus: Option<&[u32]>, which: &str) -> Result<(), InitError> {
    let Some(cpus) = cpus else {
        return Ok(());
    };
    let mut set = nix::sched::CpuSet::new();
    for cpu in cpus {
        set.set(*cpu as usize)
            .map_err(|source| InitError::Syscall {
                what: format!("CPU {cpu} (process.execCPUAffinity.{which})"),
                source,
            })?;
    }
    nix::sched::sched_setaffinity(Pid::from_raw(0), &set).map_err(|source| InitError::Syscall {
        what: format!("sched_setaffinity (process.execCPUAffinity.{which})"),
        source,
    })
}

/// getcwd(2) names a directory outside the process's root "(unreachable)/…" (or fails with
/// ENOENT, through libc): then the working directory was reached through something that leads
/// out of the container, and nothing is exec'd there.
fn check_cwd_inside() -> Result<(), InitError> {
    let outside = |detail: String| InitError::Io {
        what: "the working directory is outside the container's root".into(),
        source: std::io::Error::other(detail),
    };
    match rustix::process::getcwd(Vec::new()) {
        Ok(cwd) if cwd.to_bytes().first() == Some(&b'/') => Ok(()),
        Ok(cwd) => Err(outside(cwd.to_string_lossy().into_owned())),
        Err(e) => Err(outside(std::io::Error::from(e).to_string())),
    }
}

#[cfg(test)]
mod tests;
