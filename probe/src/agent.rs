//! The probe program: answers [`Request`]s from inside a container.

use std::io::{BufRead, Write};
use std::process::{Command, ExitCode, Stdio};

use nix::errno::Errno;

use crate::protocol::{
    CapabilitySets, EscapeReport, Facts, FileKind, FileRead, Limit, PathStat, Reply, Request,
    Response, SERVE, SyscallOutcome, WriteBackOutcome,
};

/// Entry point of the `palisade-probe` binary.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [mode] if mode == SERVE => serve(),
        [request] => match serde_json::from_str::<Request>(request) {
            Ok(request) => one_shot(request),
            Err(e) => answer_and_exit(bad_request(&e.to_string())),
        },
        _ => answer_and_exit(bad_request(
            "expected one argument: a JSON request, or `serve`",
        )),
    }
}

fn bad_request(message: &str) -> Response {
    Response::Error {
        op: "parse".into(),
        message: message.into(),
    }
}

fn one_shot(request: Request) -> ExitCode {
    let response = handle(&request);
    answer_and_exit(response)
}

fn answer_and_exit(response: Response) -> ExitCode {
    let failed = matches!(response, Response::Error { .. });
    println!("{}", response.to_line());
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Answers one request per stdin line until stdin closes or an `exit` request arrives.
fn serve() -> ExitCode {
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let request = serde_json::from_str::<Request>(&line);
        let response = match &request {
            Ok(request) => handle(request),
            Err(e) => bad_request(&e.to_string()),
        };
        if writeln!(stdout, "{}", response.to_line())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            break;
        }
        if let Ok(Request::Exit { code }) = request {
            std::process::exit(code);
        }
    }
    ExitCode::SUCCESS
}

fn handle(request: &Request) -> Response {
    let op = op_name(request);
    match run(request) {
        Ok(reply) => Response::Ok { reply },
        Err(message) => Response::Error { op, message },
    }
}

fn op_name(request: &Request) -> String {
    serde_json::to_value(request)
        .ok()
        .and_then(|v| v.get("op").and_then(|op| op.as_str().map(str::to_owned)))
        .unwrap_or_default()
}

fn run(request: &Request) -> Result<Reply, String> {
    match request {
        Request::Facts => facts().map(|f| Reply::Facts(Box::new(f))),
        Request::SetHostname { name } => {
            Ok(Reply::Syscall(outcome(nix::unistd::sethostname(name))))
        }
        Request::SpawnSleeper => spawn_sleeper(),
        Request::BurnCpu { threads } => burn_cpu(*threads),
        Request::ForkSleepers { count } => fork_sleepers(*count),
        Request::Sleep => sleep_until_killed(),
        Request::Exit { code } => {
            // One-shot: exit after printing the reply; serve mode exits in its loop.
            if std::env::args().nth(1).as_deref() != Some(SERVE) {
                println!("{}", Response::Ok { reply: Reply::Done }.to_line());
                std::process::exit(*code);
            }
            Ok(Reply::Done)
        }
        Request::ReadFiles { paths } => Ok(Reply::Files {
            files: paths.iter().map(|p| read_file(p)).collect(),
        }),
        Request::WriteFile { path, contents } => Ok(Reply::Syscall(outcome(
            std::fs::write(path, contents).map_err(io_errno),
        ))),
        Request::RemoveFile { path } => Ok(Reply::Syscall(outcome(
            std::fs::remove_file(path).map_err(io_errno),
        ))),
        Request::ChrootEscape { depth, paths } => Ok(Reply::Escape(chroot_escape(*depth, paths))),
        Request::Chroot { path } => Ok(Reply::Syscall(outcome(nix::unistd::chroot(path.as_str())))),
        Request::MountTmpfs { target, source } => {
            Ok(Reply::Syscall(outcome(mount_tmpfs(target, source))))
        }
        Request::RawSocket => {
            use nix::sys::socket::{AddressFamily, SockFlag, SockProtocol, SockType, socket};
            let opened = socket(
                AddressFamily::Inet,
                SockType::Raw,
                SockFlag::SOCK_CLOEXEC,
                SockProtocol::Icmp,
            );
            Ok(Reply::Syscall(outcome(opened.map(drop))))
        }
        Request::CreateIpc { key, mq } => create_ipc(*key, mq),
        Request::FindIpc { key, mq } => find_ipc(*key, mq),
        Request::Connect { addr, timeout_ms } => Ok(Reply::Connection(
            crate::net::connect_and_read(addr, std::time::Duration::from_millis(*timeout_ms)),
        )),
        Request::Listen { addr } => listen(addr),
        Request::StatPaths { paths } => Ok(Reply::Stats {
            stats: paths.iter().map(|p| stat_path(p)).collect(),
        }),
        Request::ListTree { path, depth } => {
            list_tree(path, *depth).map(|entries| Reply::Tree { entries })
        }
        Request::WriteBack { paths } => Ok(Reply::WrittenBack {
            writes: paths.iter().map(|p| write_back(p)).collect(),
        }),
        Request::Rlimits => rlimits().map(|limits| Reply::Limits { limits }),
        Request::Interfaces => interfaces().map(|names| Reply::Interfaces { names }),
        Request::OpenFiles => open_files(),
        Request::Mount { fstype, target } => Ok(Reply::Syscall(outcome(mount_fs(fstype, target)))),
        Request::Syscalls { calls } => Ok(Reply::Calls {
            outcomes: calls.iter().map(|c| try_syscall(*c)).collect(),
        }),
        Request::OpenDevice {
            path,
            block,
            major,
            minor,
        } => Ok(open_device(path, *block, *major, *minor)),
        Request::ListListeners => Ok(Reply::Listeners {
            sockets: crate::net::own_tcp_listeners()?
                .iter()
                .map(ToString::to_string)
                .collect(),
        }),
    }
}

fn io_errno(error: std::io::Error) -> Errno {
    error.raw_os_error().map_or(Errno::EIO, Errno::from_raw)
}

/// At most this much of a file is reported.
const READ_LIMIT: u64 = 64 * 1024;

fn read_file(path: &str) -> FileRead {
    use std::io::Read;
    let read = std::fs::File::open(path).and_then(|file| {
        let mut bytes = Vec::new();
        file.take(READ_LIMIT).read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    });
    match read {
        Ok(contents) => FileRead {
            path: path.to_owned(),
            contents: Some(contents),
            errno: None,
        },
        Err(e) => FileRead {
            path: path.to_owned(),
            contents: None,
            errno: Some(errno_name(io_errno(e))),
        },
    }
}

fn interfaces() -> Result<Vec<String>, String> {
    let devices = procfs::net::dev_status().map_err(|e| format!("reading /proc/net/dev: {e}"))?;
    let mut names: Vec<String> = devices.into_keys().collect();
    names.sort();
    Ok(names)
}

/// The file at `link` (`/proc/self/fd/<n>`, `/proc/self/cwd`), and whether the path it names,
/// looked up from `/`, is that same file.
fn open_file(fd: Option<i32>, link: &str) -> Result<crate::protocol::OpenFile, String> {
    use std::os::unix::fs::MetadataExt;
    let target = std::fs::read_link(link)
        .map_err(|e| format!("readlink {link}: {e}"))?
        .to_string_lossy()
        .into_owned();
    let reachable = if target.starts_with('/') {
        // The object itself (through the magic link) against what its path names from here.
        let object = std::fs::metadata(link).map_err(|e| format!("stat {link}: {e}"))?;
        std::fs::metadata(&target)
            .is_ok_and(|named| (named.dev(), named.ino()) == (object.dev(), object.ino()))
    } else {
        // pipe:[..], socket:[..], anon_inode:..: no path to escape through.
        true
    };
    Ok(crate::protocol::OpenFile {
        fd,
        target,
        reachable,
    })
}

fn open_files() -> Result<Reply, String> {
    let mut numbers: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| format!("listing /proc/self/fd: {e}"))?
        .map(|entry| {
            entry
                .map_err(|e| format!("listing /proc/self/fd: {e}"))
                .map(|e| e.file_name().to_string_lossy().parse::<i32>().unwrap_or(-1))
        })
        .collect::<Result<_, _>>()?;
    numbers.sort_unstable();
    let mut fds = Vec::new();
    for fd in numbers {
        let link = format!("/proc/self/fd/{fd}");
        match open_file(Some(fd), &link) {
            Ok(file) => fds.push(file),
            // The descriptor of the directory listing itself, closed by now.
            Err(_) if std::fs::symlink_metadata(&link).is_err() => {}
            Err(e) => return Err(e),
        }
    }
    let cwd = open_file(None, "/proc/self/cwd")?;
    Ok(Reply::OpenFiles { fds, cwd })
}

fn mount_fs(fstype: &str, target: &str) -> nix::Result<()> {
    use nix::mount::{MsFlags, mount};
    std::fs::create_dir_all(target).map_err(io_errno)?;
    mount(
        Some(fstype),
        target,
        Some(fstype),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
}

fn try_syscall(call: crate::protocol::SyscallProbe) -> SyscallOutcome {
    use crate::protocol::SyscallProbe;
    match call {
        SyscallProbe::Getcwd => outcome(nix::unistd::getcwd().map(drop)),
        SyscallProbe::Uname => outcome(nix::sys::utsname::uname().map(drop)),
        SyscallProbe::UnshareUser => {
            outcome(nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER))
        }
        SyscallProbe::Keyctl => outcome(crate::sys::keyctl_session_id().map(drop)),
    }
}

fn stat_path(path: &str) -> PathStat {
    use nix::sys::stat::{SFlag, lstat, major, minor};
    match lstat(path) {
        Ok(st) => {
            let format = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
            let kind = match format {
                SFlag::S_IFREG => FileKind::File,
                SFlag::S_IFDIR => FileKind::Dir,
                SFlag::S_IFLNK => FileKind::Symlink,
                SFlag::S_IFCHR => FileKind::Char,
                SFlag::S_IFBLK => FileKind::Block,
                SFlag::S_IFIFO => FileKind::Fifo,
                _ => FileKind::Socket,
            };
            let device = matches!(kind, FileKind::Char | FileKind::Block);
            PathStat {
                path: path.to_owned(),
                kind: Some(kind),
                rdev: device.then(|| (major(st.st_rdev), minor(st.st_rdev))),
                owner: Some((st.st_uid, st.st_gid)),
                errno: None,
            }
        }
        Err(e) => PathStat {
            path: path.to_owned(),
            kind: None,
            rdev: None,
            owner: None,
            errno: Some(errno_name(e)),
        },
    }
}

/// Every entry below `root`, `depth` levels deep; a directory that cannot be listed is an error.
fn list_tree(root: &str, depth: u32) -> Result<Vec<PathStat>, String> {
    let mut out = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(root)
        .map_err(|e| format!("listing {root}: {e}"))?
        .map(|entry| {
            entry
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .map_err(|e| format!("listing {root}: {e}"))
        })
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        let path = format!("{}/{name}", root.trim_end_matches('/'));
        let stat = stat_path(&path);
        let is_dir = stat.kind == Some(FileKind::Dir);
        out.push(stat);
        if is_dir && depth > 1 {
            out.extend(list_tree(&path, depth - 1)?);
        }
    }
    Ok(out)
}

fn write_back(path: &str) -> WriteBackOutcome {
    match std::fs::read(path) {
        Ok(bytes) => WriteBackOutcome {
            path: path.to_owned(),
            read: None,
            write: Some(outcome(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .and_then(|mut f| std::io::Write::write_all(&mut f, &bytes))
                    .map_err(io_errno),
            )),
        },
        Err(e) => WriteBackOutcome {
            path: path.to_owned(),
            read: Some(errno_name(io_errno(e))),
            write: None,
        },
    }
}

fn rlimits() -> Result<std::collections::BTreeMap<String, Limit>, String> {
    use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit};
    let all = [
        ("RLIMIT_AS", Resource::RLIMIT_AS),
        ("RLIMIT_CORE", Resource::RLIMIT_CORE),
        ("RLIMIT_CPU", Resource::RLIMIT_CPU),
        ("RLIMIT_DATA", Resource::RLIMIT_DATA),
        ("RLIMIT_FSIZE", Resource::RLIMIT_FSIZE),
        ("RLIMIT_LOCKS", Resource::RLIMIT_LOCKS),
        ("RLIMIT_MEMLOCK", Resource::RLIMIT_MEMLOCK),
        ("RLIMIT_MSGQUEUE", Resource::RLIMIT_MSGQUEUE),
        ("RLIMIT_NICE", Resource::RLIMIT_NICE),
        ("RLIMIT_NOFILE", Resource::RLIMIT_NOFILE),
        ("RLIMIT_NPROC", Resource::RLIMIT_NPROC),
        ("RLIMIT_RSS", Resource::RLIMIT_RSS),
        ("RLIMIT_RTPRIO", Resource::RLIMIT_RTPRIO),
        ("RLIMIT_RTTIME", Resource::RLIMIT_RTTIME),
        ("RLIMIT_SIGPENDING", Resource::RLIMIT_SIGPENDING),
        ("RLIMIT_STACK", Resource::RLIMIT_STACK),
    ];
    let finite = |v: u64| (v != RLIM_INFINITY).then_some(v);
    all.into_iter()
        .map(|(name, resource)| {
            let (soft, hard) =
                getrlimit(resource).map_err(|e| format!("getrlimit({name}): {}", errno_name(e)))?;
            Ok((
                name.to_owned(),
                Limit {
                    soft: finite(soft),
                    hard: finite(hard),
                },
            ))
        })
        .collect()
}

fn open_device(path: &str, block: bool, major: u64, minor: u64) -> Reply {
    use nix::fcntl::{OFlag, open};
    use nix::sys::stat::{Mode, SFlag, makedev, mknod};
    let kind = if block {
        SFlag::S_IFBLK
    } else {
        SFlag::S_IFCHR
    };
    let made = mknod(
        path,
        kind,
        Mode::from_bits_truncate(0o600),
        makedev(major, minor),
    );
    if made.is_err() {
        return Reply::Device {
            mknod: outcome(made),
            open: None,
        };
    }
    // Read-only, non-blocking, and nothing is read: opening is the whole test.
    let opened = open(
        path,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
        Mode::empty(),
    )
    .map(drop);
    let _ = std::fs::remove_file(path);
    Reply::Device {
        mknod: outcome(made),
        open: Some(outcome(opened)),
    }
}

fn chroot_escape(depth: u32, paths: &[String]) -> EscapeReport {
    use nix::sys::stat::Mode;
    // First through any directory fd the runtime let the process inherit, and through every
    // visible process's root, before the escape changes what `/` means.
    let mut through: Vec<String> = Vec::new();
    for fd in 3..=20 {
        let link = format!("/proc/self/fd/{fd}");
        if std::fs::metadata(&link).is_ok_and(|m| m.is_dir()) {
            through.push(link);
        }
    }
    if let Ok(all) = procfs::process::all_processes() {
        through.extend(
            all.filter_map(|p| p.ok())
                .map(|p| format!("/proc/{}/root", p.pid)),
        );
    }
    let mut files: Vec<FileRead> = through
        .iter()
        .flat_map(|base| paths.iter().map(move |p| format!("{base}{p}")))
        .map(|p| read_file(&p))
        .collect();
    // In /tmp (1777 in every rootfs Palisade makes): an image's `/` may be read-only to a root
    // without CAP_DAC_OVERRIDE (podman builds scratch images with a 0555 root).
    let cell = "/tmp/palisade-escape";
    // An existing directory is fine: only the chroot into it matters.
    let _ = nix::unistd::mkdir(cell, Mode::from_bits_truncate(0o755));
    let first = nix::unistd::chroot(cell);
    if first.is_ok() {
        // The cwd is still outside the new root: climbing from it is what the escape relies on.
        for _ in 0..depth {
            if nix::unistd::chdir("..").is_err() {
                break;
            }
        }
    }
    let last = if first.is_ok() {
        nix::unistd::chroot(".")
    } else {
        Err(Errno::EPERM)
    };
    let _ = nix::unistd::chdir("/");
    let mut root_entries: Vec<String> = std::fs::read_dir("/")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    root_entries.sort();
    EscapeReport {
        first_chroot: outcome(first),
        final_chroot: outcome(last),
        root_entries,
        files: {
            files.extend(paths.iter().map(|p| read_file(p)));
            files
        },
    }
}

fn mount_tmpfs(target: &str, source: &str) -> nix::Result<()> {
    use nix::mount::{MsFlags, mount};
    std::fs::create_dir_all(target).map_err(io_errno)?;
    mount(
        Some(source),
        target,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("size=64k"),
    )
}

fn create_ipc(key: i32, mq: &str) -> Result<Reply, String> {
    use nix::mqueue::{MQ_OFlag, MqAttr, mq_close, mq_open};
    use nix::sys::stat::Mode;
    crate::sys::shm_create(key).map_err(|e| format!("shmget({key:#x}): {}", errno_name(e)))?;
    let queue = mq_open(
        mq,
        MQ_OFlag::O_CREAT | MQ_OFlag::O_EXCL | MQ_OFlag::O_RDWR,
        Mode::from_bits_truncate(0o600),
        // Without attributes nix calls mq_open without its mode argument: pass them.
        Some(&MqAttr::new(0, 4, 64, 0)),
    )
    .map_err(|e| format!("mq_open({mq}): {}", errno_name(e)))?;
    let _ = mq_close(queue);
    Ok(Reply::Ipc {
        shm: true,
        mq: true,
    })
}

/// Whether a SysV segment with `key` and the queue `mq` exist in this IPC namespace. An answer
/// it cannot read is an error, never "not there".
fn find_ipc(key: i32, mq: &str) -> Result<Reply, String> {
    use nix::mqueue::{MQ_OFlag, mq_close, mq_open};
    use nix::sys::stat::Mode;
    use procfs::FromRead;
    // /proc/sysvipc/shm lists the segments of the reader's IPC namespace.
    let segments = procfs::SharedMemorySegments::from_file("/proc/sysvipc/shm")
        .map_err(|e| format!("reading /proc/sysvipc/shm: {e}"))?;
    let shm = segments.0.iter().any(|segment| segment.key == key);
    let mq = match mq_open(mq, MQ_OFlag::O_RDONLY, Mode::empty(), None) {
        Ok(queue) => {
            let _ = mq_close(queue);
            true
        }
        Err(Errno::ENOENT) => false,
        Err(e) => return Err(format!("mq_open({mq}): {}", errno_name(e))),
    };
    Ok(Reply::Ipc { shm, mq })
}

/// Binds, then answers connections on a thread of its own so the probe keeps serving requests.
fn listen(addr: &str) -> Result<Reply, String> {
    let listener =
        std::net::TcpListener::bind(addr).map_err(|e| format!("listening on {addr}: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("reading the bound address: {e}"))?;
    std::thread::spawn(move || crate::net::answer_peer_addresses(&listener));
    Ok(Reply::Listening {
        addr: bound.to_string(),
    })
}

fn outcome(result: nix::Result<()>) -> SyscallOutcome {
    SyscallOutcome {
        errno: result.err().map(errno_name),
    }
}

/// The symbolic name of an errno (`EPERM`), which is what scenarios compare against.
pub fn errno_name(errno: Errno) -> String {
    format!("{errno:?}")
}

fn facts() -> Result<Facts, String> {
    use procfs::process::Process;
    let me = Process::myself().map_err(|e| format!("reading /proc/self: {e}"))?;
    let status = me
        .status()
        .map_err(|e| format!("reading /proc/self/status: {e}"))?;
    let namespaces = me
        .namespaces()
        .map_err(|e| format!("reading /proc/self/ns: {e}"))?
        .0
        .into_iter()
        .map(|(name, ns)| (name.to_string_lossy().into_owned(), ns.identifier))
        .collect();
    let mut visible_pids: Vec<i32> = procfs::process::all_processes()
        .map_err(|e| format!("listing /proc: {e}"))?
        .filter_map(|p| p.ok().map(|p| p.pid))
        .collect();
    visible_pids.sort_unstable();
    let uname = nix::sys::utsname::uname().map_err(|e| format!("uname: {e}"))?;
    let hostname = nix::unistd::gethostname().map_err(|e| format!("gethostname: {e}"))?;
    Ok(Facts {
        pid: std::process::id() as i32,
        ppid: nix::unistd::getppid().as_raw(),
        nspid: status.nspid.unwrap_or_default(),
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        hostname: hostname.to_string_lossy().into_owned(),
        kernel_release: uname.release().to_string_lossy().into_owned(),
        os_release: std::fs::read_to_string("/etc/os-release").ok(),
        namespaces,
        visible_pids,
        capabilities: CapabilitySets {
            effective: status.capeff,
            permitted: status.capprm,
            inheritable: status.capinh,
            bounding: status.capbnd.unwrap_or(0),
            ambient: status.capamb.unwrap_or(0),
        },
        no_new_privs: status.nonewprivs == Some(1),
    })
}

fn spawn_sleeper() -> Result<Reply, String> {
    let request = serde_json::to_string(&Request::Sleep).map_err(|e| e.to_string())?;
    let child = probe_again()
        .arg(request)
        // The sleeper must not hold the harness's pipes: it may outlive this process.
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawning the sleeper: {e}"))?;
    Ok(Reply::Spawned {
        pid: child.id() as i32,
    })
}

/// This program again, through /proc/self/exe (inside a container its file may have no path),
/// under the name it was started with: the single `palisade` binary is the probe only when its
/// argv[0] names the probe, and /proc/self/exe would name nothing it knows (`palisade` would then
/// take the request for a subcommand and exit 2).
fn probe_again() -> Command {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new("/proc/self/exe");
    if let Some(name) = std::env::args_os().next() {
        command.arg0(name);
    }
    command
}

fn sleep_until_killed() -> ! {
    loop {
        nix::unistd::pause();
    }
}

/// Threads that spin until the process dies. Each reports once it runs, so the reply means "the
/// CPU is being burnt now", which is the event a measurement waits for.
fn burn_cpu(threads: u32) -> Result<Reply, String> {
    let (ready, running) = std::sync::mpsc::channel();
    for n in 0..threads {
        let ready = ready.clone();
        std::thread::Builder::new()
            .name(format!("burn-{n}"))
            .spawn(move || {
                let _ = ready.send(());
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            })
            .map_err(|e| format!("starting burner thread {n}: {e}"))?;
    }
    drop(ready);
    for _ in 0..threads {
        running
            .recv()
            .map_err(|_| "a burner thread died before it ran".to_owned())?;
    }
    Ok(Reply::Burning { threads })
}

fn fork_sleepers(count: u32) -> Result<Reply, String> {
    let request = serde_json::to_string(&Request::Sleep).map_err(|e| e.to_string())?;
    let mut children = Vec::new();
    let mut errno = None;
    for _ in 0..count {
        let spawned = probe_again()
            .arg(&request)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match spawned {
            Ok(child) => children.push(child),
            Err(e) => {
                errno = Some(
                    e.raw_os_error()
                        .map(|raw| errno_name(Errno::from_raw(raw)))
                        .unwrap_or_else(|| e.to_string()),
                );
                break;
            }
        }
    }
    let started = children.len() as u32;
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    Ok(Reply::Forked { started, errno })
}
