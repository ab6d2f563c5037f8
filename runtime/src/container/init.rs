//! The processes `create` forks.
//!
//! 1. The intermediate process joins the cgroup, sets oom_score_adj, joins/unshares namespaces and
//!    forks the init (which becomes pid 1 of a new pid namespace), reports the init's pid and exits
//!    so the init is not left as the child of a lingering process.
//! 2. The init prepares the rootfs, pivots into it, drops privileges, reports `Ready`, blocks on
//!    the exec fifo until `start`, and execs the user's process.

use std::convert::Infallible;
use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use caps::CapSet;
use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, umount2};
use nix::sched::{CloneFlags, setns, unshare};
use nix::unistd::{ForkResult, Gid, Uid};
use rustix::event::{PollFd, PollFlags, poll};

use super::{Message, Receiver, Sender, rootfs};
use crate::cgroups::{CgroupError, Layout};
use crate::spec::Plan;
use crate::sys;

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
    #[error("exec: {0:?}: executable file not found in $PATH")]
    ExecutableNotFound(String),
    #[error("palisade-runtime create did not place the init in its cgroup")]
    CgroupNotJoined,
    #[error("exec fifo closed without a start signal")]
    StartAborted,
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
}

impl CgroupGate {
    pub fn new(rx: Receiver, plan: &Plan) -> Self {
        Self {
            rx,
            new_cgroup_ns: plan.has_new_namespace(CloneFlags::CLONE_NEWCGROUP),
            done: false,
        }
    }

    pub fn wait(&mut self) -> Result<(), InitError> {
        if self.done {
            return Ok(());
        }
        match self.rx.recv().map_err(InitError::Channel)? {
            Some(Message::CgroupJoined) => {}
            _ => return Err(InitError::CgroupNotJoined),
        }
        if self.new_cgroup_ns {
            unshare(CloneFlags::CLONE_NEWCGROUP).map_err(sys_err("unshare cgroup namespace"))?;
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

fn fail(tx: &mut Sender, e: &InitError) -> ! {
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
    set_oom_score_adj(ctx.plan)?;
    join_namespaces(ctx.plan)?;
    // A new pid (and time) namespace only applies to children: fork so the init is pid 1.
    match sys::fork().map_err(sys_err("fork container init"))? {
        ForkResult::Parent { child } => tx
            .send(&Message::InitPid {
                pid: child.as_raw(),
            })
            .map_err(InitError::Channel),
        ForkResult::Child => {
            let err = match init_steps(ctx, tx, &mut gate) {
                Ok(never) => match never {},
                Err(e) => e,
            };
            fail(tx, &err)
        }
    }
}

fn init_steps(
    ctx: &InitContext<'_>,
    tx: &mut Sender,
    gate: &mut CgroupGate,
) -> Result<Infallible, InitError> {
    let plan = ctx.plan;
    set_hostname(plan)?;
    prepare_rootfs(plan, ctx.layout, gate)?;
    pivot_into_rootfs(plan)?;
    finish_rootfs(plan)?;
    // Before privileges are dropped: unsharing the cgroup namespace needs CAP_SYS_ADMIN.
    gate.wait()?;
    apply_sysctl(plan)?;
    apply_rlimits(plan)?;
    switch_user(plan)?;
    apply_capabilities(plan)?;
    if plan.process.no_new_privileges {
        nix::sys::prctl::set_no_new_privs().map_err(sys_err("set no_new_privs"))?;
    }
    nix::unistd::chdir(&plan.process.cwd)
        .map_err(sys_err(format!("chdir {}", plan.process.cwd.display())))?;
    let exe = find_executable(plan)?;
    // Descriptors leaked into `create` by its caller must not reach the container process.
    sys::cloexec_from(3).map_err(sys_err("close_range"))?;
    sys::reset_sigpipe().map_err(sys_err("reset SIGPIPE"))?;
    tx.send(&Message::Ready).map_err(InitError::Channel)?;
    wait_for_start(&ctx.fifo)?;
    let Err(errno) = nix::unistd::execve(&exe, &plan.process.args, &plan.process.env);
    // `create` has exited by now; the error goes to the container's stderr via `fail`.
    Err(InitError::Syscall {
        what: format!("exec {}", exe.to_string_lossy()),
        source: errno,
    })
}

fn set_oom_score_adj(plan: &Plan) -> Result<(), InitError> {
    let Some(adj) = plan.process.oom_score_adj else {
        return Ok(());
    };
    std::fs::write("/proc/self/oom_score_adj", adj.to_string()).map_err(|source| InitError::Io {
        what: "write oom_score_adj".into(),
        source,
    })
}

/// setns(2) into the namespaces given by path, unshare(2) the new ones.
pub fn join_namespaces(plan: &Plan) -> Result<(), InitError> {
    // Open every path before joining anything: a joined mount namespace changes path lookup.
    let mut joins = Vec::new();
    for ns in &plan.namespaces {
        if let Some(path) = &ns.path {
            let f = File::open(path).map_err(|source| InitError::Io {
                what: format!("open namespace {}", path.display()),
                source,
            })?;
            joins.push((f, ns.flag, path));
        }
    }
    for (f, flag, path) in joins {
        setns(&f, flag).map_err(sys_err(format!("setns {}", path.display())))?;
    }
    // A new cgroup namespace is unshared later, by the init, once it is in its cgroup.
    let new = plan
        .namespaces
        .iter()
        .filter(|n| n.path.is_none() && n.flag != CloneFlags::CLONE_NEWCGROUP)
        .fold(CloneFlags::empty(), |acc, n| acc | n.flag);
    unshare(new).map_err(sys_err(format!("unshare {new:?}")))
}

fn set_hostname(plan: &Plan) -> Result<(), InitError> {
    match &plan.hostname {
        Some(h) => nix::unistd::sethostname(h).map_err(sys_err("sethostname")),
        None => Ok(()),
    }
}

/// Mounts everything below the rootfs, still seen from the host's path names.
pub fn prepare_rootfs(
    plan: &Plan,
    layout: &Layout,
    gate: &mut CgroupGate,
) -> Result<(), InitError> {
    let none: Option<&str> = None;
    let mnt = |src: Option<&Path>, dst: &Path, flags: MsFlags| {
        nix::mount::mount(src, dst, none, flags, none).map_err(|source| InitError::Mount {
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
    let (parent, shared) = rootfs::parent_mount_of(&plan.rootfs);
    if shared {
        mnt(None, &parent, MsFlags::MS_PRIVATE)?;
    }
    // pivot_root needs the new root to be a mount point.
    mnt(
        Some(&plan.rootfs),
        &plan.rootfs,
        MsFlags::MS_BIND | MsFlags::MS_REC,
    )?;
    for m in &plan.mounts {
        if m.fstype == "cgroup" || m.fstype == "cgroup2" {
            // A cgroup mount shows the cgroup namespace's root, which must exist by now.
            gate.wait()?;
        }
        rootfs::mount_entry(&plan.rootfs, m, layout)?;
    }
    rootfs::create_devices(&plan.rootfs, plan)
}

/// pivot_root(2) into the rootfs and detach the old root; or, in the test-only modes, MS_MOVE +
/// chroot(2) like `runc --no-pivot`, or a bare, deliberately escapable chroot(2).
pub fn pivot_into_rootfs(plan: &Plan) -> Result<(), InitError> {
    let root = &plan.rootfs;
    nix::unistd::chdir(root).map_err(sys_err(format!("chdir {}", root.display())))?;
    if plan.chroot_only {
        nix::unistd::chroot(".").map_err(sys_err("chroot"))?;
    } else if plan.no_pivot {
        nix::mount::mount(
            Some(root.as_path()),
            "/",
            None::<&str>,
            MsFlags::MS_MOVE,
            None::<&str>,
        )
        .map_err(|source| InitError::Mount {
            what: "move rootfs to /".into(),
            source,
        })?;
        nix::unistd::chroot(".").map_err(sys_err("chroot"))?;
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
        nix::unistd::pivot_root(".", ".").map_err(sys_err("pivot_root"))?;
        // The old root may be shared with the host (rootfsPropagation: shared): make it a slave
        // first, or detaching it would propagate the unmount to the host's own mounts. From
        // inside the old root, so "." names it and not the new root below it.
        nix::unistd::fchdir(&old_root).map_err(sys_err("fchdir to the old root"))?;
        nix::mount::mount(
            None::<&str>,
            ".",
            None::<&str>,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|source| InitError::Mount {
            what: "make the old root a slave".into(),
            source,
        })?;
        umount2(".", MntFlags::MNT_DETACH).map_err(|source| InitError::Mount {
            what: "detach old root".into(),
            source,
        })?;
    }
    nix::unistd::chdir("/").map_err(sys_err("chdir /"))?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        plan.rootfs_propagation,
        None::<&str>,
    )
    .map_err(|source| InitError::Mount {
        what: "set rootfs propagation".into(),
        source,
    })
}

/// Masked and read-only paths, then the read-only root: all after pivot, on container paths.
fn finish_rootfs(plan: &Plan) -> Result<(), InitError> {
    for p in &plan.masked_paths {
        rootfs::mask_path(p)?;
    }
    for p in &plan.readonly_paths {
        rootfs::readonly_path(p)?;
    }
    if plan.readonly_root {
        rootfs::remount_readonly(Path::new("/"))?;
    }
    Ok(())
}

fn apply_sysctl(plan: &Plan) -> Result<(), InitError> {
    for (key, value) in &plan.sysctl {
        let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        std::fs::write(&path, value).map_err(|source| InitError::Io {
            what: format!("sysctl {key}"),
            source,
        })?;
    }
    Ok(())
}

fn apply_rlimits(plan: &Plan) -> Result<(), InitError> {
    for (res, soft, hard) in &plan.process.rlimits {
        nix::sys::resource::setrlimit(*res, *soft, *hard)
            .map_err(sys_err(format!("setrlimit {res:?}")))?;
    }
    Ok(())
}

/// Bounding set, then uid/gid/groups (keeping permitted capabilities across setuid).
pub fn switch_user(plan: &Plan) -> Result<(), InitError> {
    let p = &plan.process;
    // The bounding set first: dropping from it needs CAP_SETPCAP, which may be gone later.
    let bounding = caps::read(None, CapSet::Bounding).map_err(caps_err("read bounding set"))?;
    for cap in bounding.difference(&p.caps.bounding) {
        caps::drop(None, CapSet::Bounding, *cap)
            .map_err(caps_err(format!("drop {cap} from bounding set")))?;
    }
    nix::sys::prctl::set_keepcaps(true).map_err(sys_err("set keepcaps"))?;
    let groups: Vec<Gid> = p
        .additional_gids
        .iter()
        .map(|g| Gid::from_raw(*g))
        .collect();
    nix::unistd::setgroups(&groups).map_err(sys_err("setgroups"))?;
    let gid = Gid::from_raw(p.gid);
    nix::unistd::setresgid(gid, gid, gid).map_err(sys_err(format!("setgid {}", p.gid)))?;
    let uid = Uid::from_raw(p.uid);
    nix::unistd::setresuid(uid, uid, uid).map_err(sys_err(format!("setuid {}", p.uid)))?;
    nix::sys::prctl::set_keepcaps(false).map_err(sys_err("clear keepcaps"))
}

/// The four remaining capability sets, in an order the kernel accepts: inheritable while
/// permitted is still full, effective before permitted shrinks, ambient last.
pub fn apply_capabilities(plan: &Plan) -> Result<(), InitError> {
    let c = &plan.process.caps;
    caps::set(None, CapSet::Inheritable, &c.inheritable)
        .map_err(caps_err("set inheritable capabilities"))?;
    caps::set(None, CapSet::Effective, &c.effective)
        .map_err(caps_err("set effective capabilities"))?;
    caps::set(None, CapSet::Permitted, &c.permitted)
        .map_err(caps_err("set permitted capabilities"))?;
    caps::clear(None, CapSet::Ambient).map_err(caps_err("clear ambient capabilities"))?;
    // The kernel only lets a capability into the ambient set if it is both permitted and
    // inheritable; runc skips the others silently (its default spec lists ambient capabilities
    // without inheritable ones), and so does this runtime for compatibility.
    for cap in c.ambient.intersection(&c.inheritable) {
        if c.permitted.contains(cap) {
            caps::raise(None, CapSet::Ambient, *cap)
                .map_err(caps_err(format!("raise ambient {cap}")))?;
        }
    }
    Ok(())
}

/// Looks args[0] up in the process's PATH, so a missing binary fails `create`, not `start`.
fn find_executable(plan: &Plan) -> Result<CString, InitError> {
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
