//! `create`: set everything up and leave the container init blocked until `start`.

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use nix::unistd::ForkResult;

use crate::cgroups::{self, CgroupError, CgroupRecord};
use crate::cli::CreateArgs;
use crate::container::init::{self, CgroupGate, InitContext};
use crate::container::{Message, Receiver, Sender};
use crate::hooks::{self, HookError, HookKind};
use crate::spec::{self, SpecError};
use crate::state::{self, ContainerState, EXEC_FIFO, StateError};
use crate::sys;

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    #[error("container {0:?} already exists")]
    AlreadyExists(String),
    #[error("cannot create {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("cannot create exec fifo {path}: {source}")]
    Fifo {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create sync pipe: {0}")]
    Pipe(nix::errno::Errno),
    #[error("fork: {0}")]
    Fork(nix::errno::Errno),
    #[error("container init: {0}")]
    Init(String),
    #[error("container init exited before it was ready")]
    InitVanished,
    #[error("reading from container init: {0}")]
    Channel(std::io::Error),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot write the id maps of the user namespace of pid {pid}: {source}")]
    IdMaps { pid: i32, source: std::io::Error },
    #[error("cannot write pid file {path}: {source}")]
    PidFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Hook(#[from] HookError),
    #[error("--preserve-fds {0}: {1}")]
    PreserveFds(u32, std::io::Error),
}

/// The `create` verb.
pub fn create(
    root: &Path,
    args: &CreateArgs,
    no_pivot: bool,
    warn: &dyn Fn(&str),
) -> Result<(), CreateError> {
    create_container(root, args, no_pivot, warn).map(drop)
}

/// Undoes a half-made container when `create` fails.
#[derive(Default)]
struct Cleanup {
    dir: Option<PathBuf>,
    cgroup: Option<CgroupRecord>,
    init: Option<i32>,
}

impl Cleanup {
    fn run(self) {
        if let Some(pid) = self.init
            && let Some((_, start)) = state::proc_stat(pid)
        {
            let _ = crate::kill::kill_and_wait(pid, start);
        }
        if let Some(record) = &self.cgroup {
            cgroups::signal_all(record, nix::sys::signal::Signal::SIGKILL);
            let _ = cgroups::destroy(record);
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// `warn` gets the failures of poststop hooks, which run when the container, once begun, cannot
/// be created (runtime.md: a failing prestart, createRuntime or createContainer hook continues
/// the lifecycle with the container's destruction and its poststop hooks).
pub fn create_container(
    root: &Path,
    args: &CreateArgs,
    no_pivot: bool,
    warn: &dyn Fn(&str),
) -> Result<ContainerState, CreateError> {
    let (id, pid_file) = (args.id.as_str(), args.pid_file.as_deref());
    let preserve_fds = args.preserve_fds.unwrap_or(0);
    // Before anything of ours is opened, so that none of it lands among the preserved fds.
    reserve_preserved_fds(preserve_fds).map_err(|e| CreateError::PreserveFds(preserve_fds, e))?;
    // Everything is loaded and validated before the first side effect.
    let plan = spec::load(&args.bundle, id, no_pivot)?;
    if let Some(seccomp) = &plan.seccomp
        && !seccomp.skipped_syscalls().is_empty()
    {
        // As runc and crun do: a name no architecture of the filter knows gets no rule.
        warn(&format!(
            "linux.seccomp: syscalls unknown to the filter's architectures, skipped: {}",
            seccomp.skipped_syscalls().join(", ")
        ));
    }
    let layout = cgroups::detect()?;

    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(root)
        .map_err(|source| CreateError::StateDir {
            path: root.to_owned(),
            source,
        })?;
    let dir = root.join(id);
    match std::fs::DirBuilder::new().mode(0o711).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            return Err(CreateError::AlreadyExists(id.to_owned()));
        }
        Err(source) => return Err(CreateError::StateDir { path: dir, source }),
    }
    let mut cleanup = Cleanup {
        dir: Some(dir.clone()),
        ..Cleanup::default()
    };
    let result = spawn(&plan, &layout, &dir, pid_file, preserve_fds, &mut cleanup);
    if result.is_err() {
        cleanup.run();
        run_poststop_hooks(&plan, warn);
    }
    result
}

/// Descriptors 3..3+n that the caller did not pass are filled with /dev/null (close-on-exec), so
/// that the lowest-free-number rule puts every descriptor of the runtime's own above them: the
/// container gets exactly what the caller passed there, and nothing of ours.
fn reserve_preserved_fds(n: u32) -> std::io::Result<()> {
    if n == 0 {
        return Ok(());
    }
    let devnull = std::fs::File::open("/dev/null")?;
    for fd in 3..3u32.saturating_add(n) {
        if Path::new(&format!("/proc/self/fd/{fd}")).exists() {
            continue;
        }
        let fd = i32::try_from(fd).map_err(std::io::Error::other)?;
        let placeholder = rustix::io::fcntl_dupfd_cloexec(&devnull, fd)?;
        // Kept open for the life of the process on purpose.
        let _ = std::os::fd::IntoRawFd::into_raw_fd(placeholder);
    }
    Ok(())
}

fn spawn(
    plan: &spec::Plan,
    layout: &cgroups::Layout,
    dir: &Path,
    pid_file: Option<&Path>,
    preserve_fds: u32,
    cleanup: &mut Cleanup,
) -> Result<ContainerState, CreateError> {
    let mut cgroup = cgroups::manager(layout, &plan.cgroup_path);
    let res = cgroup.create(&plan.resources);
    cleanup.cgroup = Some(cgroup.record().clone());
    res?;

    let fifo_path = dir.join(EXEC_FIFO);
    let fifo_err = |source| CreateError::Fifo {
        path: fifo_path.clone(),
        source,
    };
    nix::unistd::mkfifo(&fifo_path, Mode::from_bits_truncate(0o600))
        .map_err(|e| fifo_err(std::io::Error::from(e)))?;
    // Opened here, non-blocking, so the init holds the only reader and `start` never blocks.
    let fifo = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(&fifo_path)
        .map_err(fifo_err)?;
    // Where the init reports a failure after `create` has returned; `start` reads it.
    let start_error_path = dir.join(state::START_ERROR);
    let start_error = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&start_error_path)
        .map_err(|source| CreateError::StateDir {
            path: start_error_path,
            source,
        })?;
    // listenerPath is a host path: connected here, before any namespace is entered.
    let seccomp_listener = plan
        .seccomp
        .as_ref()
        .map(crate::seccomp::connect_listener)
        .transpose()?
        .flatten();
    // init → create (reports) and create → init (cgroup placement done).
    let (rx, tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(CreateError::Pipe)?;
    let (gate_rx, gate_tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(CreateError::Pipe)?;

    let child = match sys::fork().map_err(CreateError::Fork)? {
        ForkResult::Child => {
            drop(rx);
            drop(gate_tx);
            let ctx = InitContext {
                plan,
                layout,
                fifo,
                start_error,
                preserve_fds,
                seccomp_listener,
            };
            let gate = CgroupGate::new(Receiver::new(gate_rx), plan);
            init::intermediate(ctx, Sender::new(tx), gate)
        }
        ForkResult::Parent { child } => child,
    };
    drop(tx);
    drop(fifo);
    drop(start_error);
    drop(gate_rx);
    let mut gate_tx = Sender::new(gate_tx);

    let mut rx = Receiver::new(rx);
    let mut ready = false;
    let mut init_pid = None;
    // The intermediate's InitPid and the init's Ready can arrive in either order.
    let outcome = loop {
        if ready && init_pid.is_some() {
            break Ok(());
        }
        match rx.recv() {
            Ok(Some(Message::InitPid { pid })) => {
                init_pid = Some(pid);
                cleanup.init = Some(pid);
                if let Err(e) = cgroup.add_pid(pid) {
                    break Err(e.into());
                }
                // An init that already failed (e.g. on an unsafe rootfs) has closed its end: its
                // error message, still to be read, is the one to report.
                if let Err(e) = gate_tx.send(&Message::CgroupJoined { pid })
                    && e.kind() != ErrorKind::BrokenPipe
                {
                    break Err(CreateError::Channel(e));
                }
            }
            Ok(Some(Message::Ready)) => ready = true,
            Ok(Some(Message::UserNs)) => {
                let maps = plan.id_maps.as_ref().ok_or(CreateError::IdMaps {
                    pid: child.as_raw(),
                    source: std::io::Error::other("the config has no id maps"),
                });
                let written = maps.and_then(|maps| {
                    write_id_maps(child.as_raw(), maps).map_err(|source| CreateError::IdMaps {
                        pid: child.as_raw(),
                        source,
                    })
                });
                if let Err(e) = written {
                    break Err(e);
                }
                // An intermediate that already failed has closed its end: its error, still to
                // be read, is the one to report.
                if let Err(e) = gate_tx.send(&Message::IdMapsWritten)
                    && e.kind() != ErrorKind::BrokenPipe
                {
                    break Err(CreateError::Channel(e));
                }
            }
            // The init sends this after it got CgroupJoined, so its pid is known.
            Ok(Some(Message::RuntimeHooks)) => {
                let Some(pid) = init_pid else {
                    break Err(CreateError::Channel(std::io::Error::other(
                        "hooks asked for before the init's pid was known",
                    )));
                };
                if let Err(e) = run_runtime_hooks(plan, pid) {
                    break Err(e.into());
                }
                if let Err(e) = gate_tx.send(&Message::RuntimeHooksDone) {
                    break Err(CreateError::Channel(e));
                }
            }
            Ok(Some(
                Message::CgroupJoined { .. }
                | Message::RuntimeHooksDone
                | Message::IdMapsWritten
                | Message::ExecPid { .. },
            )) => {
                break Err(CreateError::Channel(std::io::Error::other(
                    "unexpected message",
                )));
            }
            Ok(Some(Message::Error { message })) => break Err(CreateError::Init(message)),
            Ok(None) => break Err(CreateError::InitVanished),
            Err(e) => break Err(CreateError::Channel(e)),
        }
    };
    // Reap the intermediate (it exits right after reporting the init's pid).
    let _ = nix::sys::wait::waitpid(child, None);
    outcome?;
    let pid = init_pid.ok_or(CreateError::InitVanished)?;
    let (_, start_time) = state::proc_stat(pid).ok_or(CreateError::InitVanished)?;

    let st = ContainerState {
        id: plan.id.clone(),
        oci_version: plan.oci_version.clone(),
        pid,
        pid_start_time: start_time,
        bundle: plan.bundle.clone(),
        annotations: plan.annotations.clone(),
        created: crate::logging::rfc3339_now(),
        cgroup: cgroup.record().clone(),
        hooks: plan.hooks.clone(),
    };
    st.save(dir)?;
    if let Some(path) = pid_file {
        write_pid_file(path, pid).map_err(|source| CreateError::PidFile {
            path: path.to_owned(),
            source,
        })?;
    }
    Ok(st)
}

/// Writes the uid and gid maps of the user namespace `pid` has just unshared. Each map is one
/// write(2), as the kernel requires. setgroups(2) stays allowed: the kernel requires "deny" only
/// from a writer without CAP_SETGID over the parent namespace (runc denies it only when rootless),
/// and this runtime refuses to run without it.
fn write_id_maps(pid: i32, maps: &spec::IdMaps) -> std::io::Result<()> {
    use std::io::Write;
    if !caps::has_cap(None, caps::CapSet::Effective, caps::Capability::CAP_SETGID)
        .map_err(std::io::Error::other)?
    {
        return Err(std::io::Error::other(
            "writing a gid map needs CAP_SETGID (rootless operation is not supported)",
        ));
    }
    for (file, list) in [("uid_map", &maps.uid), ("gid_map", &maps.gid)] {
        let path = format!("/proc/{pid}/{file}");
        let text = spec::idmap::format(list);
        let mut f = OpenOptions::new().write(true).open(&path)?;
        let n = f.write(text.as_bytes())?;
        if n != text.len() {
            return Err(std::io::Error::other(format!(
                "{path}: short write ({n} of {} bytes)",
                text.len()
            )));
        }
    }
    Ok(())
}

/// The poststop hooks of a container that was destroyed before it was created.
fn run_poststop_hooks(plan: &spec::Plan, warn: &dyn Fn(&str)) {
    if plan.hooks.poststop.is_empty() {
        return;
    }
    let state = hooks::state_json(
        &plan.oci_version,
        &plan.id,
        oci_spec::runtime::ContainerState::Stopped,
        None,
        &plan.bundle,
        &plan.annotations,
    );
    hooks::run_all_warning(HookKind::Poststop, &plan.hooks.poststop, &state, warn);
}

/// prestart (deprecated, first) and createRuntime: in the runtime's namespaces, the init waiting
/// before its pivot.
fn run_runtime_hooks(plan: &spec::Plan, pid: i32) -> Result<(), HookError> {
    let state = hooks::state_json(
        &plan.oci_version,
        &plan.id,
        oci_spec::runtime::ContainerState::Creating,
        Some(pid),
        &plan.bundle,
        &plan.annotations,
    );
    hooks::run_all(HookKind::Prestart, &plan.hooks.prestart, &state)?;
    hooks::run_all(HookKind::CreateRuntime, &plan.hooks.create_runtime, &state)
}

/// Written via rename so a watcher never reads a partial pid.
pub(crate) fn write_pid_file(path: &Path, pid: i32) -> std::io::Result<()> {
    let path = std::path::absolute(path)?;
    let mut tmp = path.clone().into_os_string();
    tmp.push(".tmp");
    std::fs::write(&tmp, pid.to_string())?;
    std::fs::rename(&tmp, &path)
}
