//! What the harness asks and what the probe answers, as types shared by both sides.
//!
//! Framing: the harness passes a [`Request`] as the probe's single argument (one-shot) or writes one
//! per line to its stdin (`serve`); the probe prints one [`Response`] per request, one JSON object
//! per line, and exits non-zero if a one-shot request failed. Failure is never inferred from stderr.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The argument that puts the probe into request/reply mode on stdin/stdout.
pub const SERVE: &str = "serve";

/// A request to the probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// Report what the process sees: pids, namespaces, hostname, kernel, os-release, credentials.
    Facts,
    /// Call sethostname(2) and report the outcome.
    SetHostname { name: String },
    /// Start a child that sleeps until killed; report its pid as seen inside.
    SpawnSleeper,
    /// Sleep until killed (used as the sleeper child, and as a long-lived container process).
    Sleep,
    /// Exit with this code (after replying).
    Exit { code: i32 },
    /// Read each path (at most 64 KiB of it) and report its contents or the errno.
    ReadFiles { paths: Vec<String> },
    /// Create or truncate `path` and write `contents` to it.
    WriteFile { path: String, contents: String },
    /// The classic chroot escape: `mkdir x; chroot x; chdir("..")` `depth` times, `chroot(".")`;
    /// then read `paths` from wherever that landed. It changes the probe's root: one-shot only.
    ChrootEscape { depth: u32, paths: Vec<String> },
    /// chroot(2) to `path` and report the outcome.
    Chroot { path: String },
    /// Create the directory `target` and mount a tmpfs there, with `source` as its name.
    MountTmpfs { target: String, source: String },
    /// Open a raw IPv4 socket (CAP_NET_RAW) and report the outcome.
    RawSocket,
    /// Create a SysV shared memory segment with `key` and a POSIX message queue named `mq`.
    CreateIpc { key: i32, mq: String },
    /// Report whether a SysV segment with `key` (per /proc/sysvipc/shm) and the queue `mq` exist.
    FindIpc { key: i32, mq: String },
    /// Connect to `addr` (`ip:port`), bounded by `timeout_ms`, and report the peer address the
    /// server answered with, or the error.
    Connect { addr: String, timeout_ms: u64 },
    /// Listen on `addr` (`ip:port`) and reply once listening; from then on every connection is
    /// answered with the peer address seen (serve mode: the probe keeps answering requests).
    Listen { addr: String },
    /// List the listening TCP sockets of the probe's network namespace (`/proc/net/tcp{,6}`).
    ListListeners,
    /// Start `threads` threads that spin on the CPU until the probe dies; reply once all spin.
    BurnCpu { threads: u32 },
    /// Start up to `count` sleeping children, stopping at the first that cannot be started;
    /// report how many started and why the next failed, then kill and reap them.
    ForkSleepers { count: u32 },
    /// lstat(2) each path: its kind and device number, or the errno.
    StatPaths { paths: Vec<String> },
    /// The entries of a directory tree, `depth` levels deep, with their kinds (`/dev`).
    ListTree { path: String, depth: u32 },
    /// For each path: read it, then write back exactly what was read, and report the errno of
    /// each step. Harmless even when the write goes through: nothing changes.
    WriteBack { paths: Vec<String> },
    /// Every resource limit (getrlimit(2)), soft and hard, by `RLIMIT_*` name.
    Rlimits,
    /// The network interfaces of the probe's network namespace (`/proc/net/dev`).
    Interfaces,
    /// Every open file descriptor and the working directory, and whether each is reachable from
    /// the probe's `/` (a host directory leaked in is not).
    OpenFiles,
    /// mount(2) a filesystem of type `fstype` at `target` (created if needed).
    Mount { fstype: String, target: String },
    /// Make each harmless system call and report its outcome (seccomp checks).
    Syscalls { calls: Vec<SyscallProbe> },
    /// mknod(2) a device node at `path`, open it read-only and non-blocking without reading,
    /// close it and remove the node; report each step's errno.
    OpenDevice {
        path: String,
        block: bool,
        major: u64,
        minor: u64,
    },
}

impl Request {
    /// The request as one line of JSON: the probe's single argument (one-shot), or one line on its
    /// stdin (`serve`). The one place requests are encoded.
    pub fn to_arg(&self) -> String {
        // Serializing this plain data type cannot fail; should it, the probe rejects the text
        // loudly rather than running some other request.
        serde_json::to_string(self)
            .unwrap_or_else(|e| format!(r#"{{"op":"unencodable","error":"{e}"}}"#))
    }
}

/// The probe's answer to one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Response {
    Ok { reply: Reply },
    Error { op: String, message: String },
}

/// The successful outcome of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Reply {
    Facts(Box<Facts>),
    /// The outcome of a syscall that a scenario expects to succeed or to be refused.
    Syscall(SyscallOutcome),
    Spawned {
        pid: i32,
    },
    Done,
    /// What reading each path gave, in request order.
    Files {
        files: Vec<FileRead>,
    },
    /// What the chroot escape did and what it found.
    Escape(EscapeReport),
    /// Which IPC objects exist.
    Ipc {
        shm: bool,
        mq: bool,
    },
    /// The outcome of a `connect` request.
    Connection(crate::net::ConnectOutcome),
    /// The probe listens on `addr`.
    Listening {
        addr: String,
    },
    /// The listening TCP sockets, as `ip:port`.
    Listeners {
        sockets: Vec<String>,
    },
    /// Every burner thread is running.
    Burning {
        threads: u32,
    },
    /// How many children started, and the errno of the first that could not (`EAGAIN`).
    Forked {
        started: u32,
        errno: Option<String>,
    },
    /// What lstat(2) said of each path, in request order.
    Stats {
        stats: Vec<PathStat>,
    },
    /// The entries below a directory, each with its path.
    Tree {
        entries: Vec<PathStat>,
    },
    /// What writing back each path did, in request order.
    WrittenBack {
        writes: Vec<WriteBackOutcome>,
    },
    /// Resource limits by `RLIMIT_*` name; `None` means unlimited.
    Limits {
        limits: BTreeMap<String, Limit>,
    },
    /// The network interfaces, by name.
    Interfaces {
        names: Vec<String>,
    },
    /// The open descriptors and the working directory.
    OpenFiles {
        fds: Vec<OpenFile>,
        cwd: OpenFile,
    },
    /// The outcome of each call of [`Request::Syscalls`], in request order.
    Calls {
        outcomes: Vec<SyscallOutcome>,
    },
    /// The steps of [`Request::OpenDevice`].
    Device {
        mknod: SyscallOutcome,
        open: Option<SyscallOutcome>,
    },
}

/// A system call the probe can make harmlessly, whatever its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyscallProbe {
    /// getcwd(2) into a buffer.
    Getcwd,
    /// uname(2).
    Uname,
    /// unshare(CLONE_NEWUSER): a user namespace for the probe alone, if allowed.
    UnshareUser,
    /// keyctl(KEYCTL_GET_KEYRING_ID, session keyring, create = 0): reads an id, creates nothing.
    Keyctl,
}

/// One path's kind as lstat(2) sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Char,
    Block,
    Fifo,
    Socket,
}

/// What lstat(2) said of a path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathStat {
    pub path: String,
    pub kind: Option<FileKind>,
    /// The device number, for character and block devices.
    pub rdev: Option<(u64, u64)>,
    /// The owner, as the probe's user namespace shows it.
    #[serde(default)]
    pub owner: Option<(u32, u32)>,
    pub errno: Option<String>,
}

/// An open file of the probe (a descriptor, or its working directory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenFile {
    /// The descriptor number; `None` for the working directory.
    pub fd: Option<i32>,
    /// What `/proc/self/fd/<n>` (or `/proc/self/cwd`) points to.
    pub target: String,
    /// For a path: whether that path, looked up from the probe's `/`, is this very file. False
    /// means the file lies outside the probe's root (a leak). Pipes and sockets are `true`.
    pub reachable: bool,
}

/// Reading then writing back one path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteBackOutcome {
    pub path: String,
    /// The errno of the read, if it failed (nothing was written then).
    pub read: Option<String>,
    /// The outcome of writing back what was read.
    pub write: Option<SyscallOutcome>,
}

/// One resource limit; `None` is RLIM_INFINITY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limit {
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

/// The contents of one path, or why it could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRead {
    pub path: String,
    pub contents: Option<String>,
    pub errno: Option<String>,
}

/// The steps of the chroot escape, and what the probe saw after them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscapeReport {
    /// The first `chroot` into the fresh subdirectory (fails without CAP_SYS_CHROOT).
    pub first_chroot: SyscallOutcome,
    /// The final `chroot(".")` after climbing.
    pub final_chroot: SyscallOutcome,
    /// The names in `/` afterwards, sorted: shows where the escape landed.
    pub root_entries: Vec<String>,
    pub files: Vec<FileRead>,
}

/// Whether a syscall succeeded, and the errno name if not (`EPERM`, `EROFS`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyscallOutcome {
    pub errno: Option<String>,
}

impl SyscallOutcome {
    pub fn succeeded(&self) -> bool {
        self.errno.is_none()
    }
}

/// What a process inside the container sees of itself and its surroundings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    pub pid: i32,
    pub ppid: i32,
    /// `NSpid` from `/proc/self/status`: the pid in each pid namespace, outermost first.
    pub nspid: Vec<i32>,
    pub uid: u32,
    pub gid: u32,
    pub hostname: String,
    /// `uname -r`.
    pub kernel_release: String,
    /// The contents of `/etc/os-release`, or None if it is absent.
    pub os_release: Option<String>,
    /// Namespace type (`pid`, `net`, ...) to the inode of `/proc/self/ns/<type>`.
    pub namespaces: BTreeMap<String, u64>,
    /// The pids listed in `/proc`, sorted.
    pub visible_pids: Vec<i32>,
    pub capabilities: CapabilitySets,
    pub no_new_privs: bool,
}

/// The five capability sets as bit masks, as `/proc/self/status` shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapabilitySets {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub bounding: u64,
    pub ambient: u64,
}

impl Response {
    /// One JSON line, as the probe prints it.
    pub fn to_line(&self) -> String {
        // Serializing these plain data types cannot fail; an error text is still a valid answer.
        serde_json::to_string(self)
            .unwrap_or_else(|e| format!(r#"{{"status":"error","op":"encode","message":"{e}"}}"#))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(Request::Facts, r#"{"op":"facts"}"#)]
    #[case(Request::SetHostname { name: "a".into() }, r#"{"op":"set-hostname","name":"a"}"#)]
    #[case(Request::Exit { code: 3 }, r#"{"op":"exit","code":3}"#)]
    fn requests_have_a_stable_wire_form(#[case] request: Request, #[case] wire: &str) {
        assert_eq!(serde_json::to_string(&request).expect("encode"), wire);
        assert_eq!(
            serde_json::from_str::<Request>(wire).expect("decode"),
            request
        );
    }

    #[test]
    fn responses_round_trip() {
        let response = Response::Ok {
            reply: Reply::Spawned { pid: 7 },
        };
        let line = response.to_line();
        assert_eq!(
            line,
            r#"{"status":"ok","reply":{"kind":"spawned","pid":7}}"#
        );
        assert_eq!(
            serde_json::from_str::<Response>(&line).expect("decode"),
            response
        );
    }
}
