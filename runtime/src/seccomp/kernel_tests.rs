//! Real-kernel tests, no root needed: each filter is loaded by a thread of its own after it set
//! no_new_privs. Without TSYNC a filter binds only the thread that loads it (and no_new_privs is
//! per thread too), so the rest of the test process is untouched, and the filter ends with the
//! thread. Each test has an unfiltered control making the same calls, so a check that passes for
//! the wrong reason (the call failing anyway) shows.

use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::thread;
use std::time::Duration;

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::unistd::Whence;
use oci_spec::runtime::{ContainerProcessState, ContainerState, State};
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
use serde_json::json;

use super::tests::docker_default;
use super::*;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `body` on a new thread that has loaded `plan` (after setting no_new_privs).
fn on_filtered_thread<T: Send + 'static>(
    plan: Option<SeccompPlan>,
    body: impl FnOnce(Option<OwnedFd>) -> T + Send + 'static,
) -> T {
    thread::spawn(move || {
        let listener = plan.map(|plan| {
            nix::sys::prctl::set_no_new_privs().expect("no_new_privs");
            load(&plan).expect("the kernel accepts the filter")
        });
        body(listener.flatten())
    })
    .join()
    .expect("the filtered thread finished")
}

fn compile(profile: serde_json::Value) -> SeccompPlan {
    let seccomp: LinuxSeccomp = serde_json::from_value(profile).expect("profile parses");
    plan(&seccomp).expect("profile compiles")
}

fn errno<T>(result: std::io::Result<T>) -> Option<i32> {
    result.err().map(|e| e.raw_os_error().unwrap_or(-1))
}

fn nix_errno<T>(result: nix::Result<T>) -> Option<i32> {
    result.err().map(|e| e as i32)
}

#[test]
fn kernel_returns_the_configured_errno() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": Errno::EXDEV as u32}],
    });
    let run = |plan: Option<SeccompPlan>, dir: &Path| {
        let dir = dir.to_path_buf();
        on_filtered_thread(plan, move |_| {
            (
                errno(std::env::current_dir()),
                errno(std::fs::create_dir(dir.join("d"))),
                errno(std::fs::remove_dir(dir.join("d"))),
            )
        })
    };
    assert_eq!(run(None, tmp.path()), (None, None, None), "control");
    assert_eq!(
        run(Some(compile(profile)), tmp.path()),
        (Some(Errno::EXDEV as i32), None, None)
    );
}

#[test]
fn kernel_compares_64_bit_arguments() {
    // lseek(fd, offset, whence): the offset is a full 64-bit argument the test controls.
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["lseek"], "action": "SCMP_ACT_ERRNO", "errnoRet": Errno::EXDEV as u32,
             "args": [{"index": 1, "value": 0x1_0000_0000u64, "op": "SCMP_CMP_GT"}]},
            {"names": ["lseek"], "action": "SCMP_ACT_ERRNO", "errnoRet": Errno::ENOTSUP as u32,
             "args": [{"index": 1, "value": 0x7, "op": "SCMP_CMP_EQ"},
                      {"index": 2, "value": 0x3, "valueTwo": 0x1, "op": "SCMP_CMP_MASKED_EQ"}]},
        ],
    });
    let offsets: [(i64, Whence); 6] = [
        (0x1_0000_0001, Whence::SeekSet),
        (0x1_0000_0000, Whence::SeekSet),
        (0xFFFF_FFFF, Whence::SeekSet),
        (0x2_0000_0000, Whence::SeekSet),
        (7, Whence::SeekCur), // SEEK_CUR = 1: masked with 3 gives 1
        (7, Whence::SeekSet), // SEEK_SET = 0
    ];
    let run = |plan: Option<SeccompPlan>| {
        let file = tempfile::tempfile().expect("tempfile");
        on_filtered_thread(plan, move |_| {
            offsets.map(|(off, whence)| nix_errno(nix::unistd::lseek(&file, off, whence)))
        })
    };
    assert_eq!(run(None), [None; 6], "control");
    let (exdev, enotsup) = (Some(Errno::EXDEV as i32), Some(Errno::ENOTSUP as i32));
    assert_eq!(
        run(Some(compile(profile))),
        [exdev, None, None, exdev, enotsup, None]
    );
}

#[test]
fn kernel_accepts_log_and_spec_allow_flags() {
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
        "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": Errno::EXDEV as u32}],
    });
    let got = on_filtered_thread(Some(compile(profile)), |_| errno(std::env::current_dir()));
    assert_eq!(got, Some(Errno::EXDEV as i32));
}

/// What a container does under Docker's default profile: ordinary work succeeds, creating a user
/// namespace fails with the profile's errno.
fn docker_probe(plan: Option<SeccompPlan>) -> [Option<i32>; 6] {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    on_filtered_thread(plan, move |_| {
        [
            errno(std::env::current_dir()),
            nix_errno(Ok::<_, Errno>(nix::sys::utsname::uname())),
            errno(std::fs::create_dir(dir.join("d"))),
            errno(std::fs::write(dir.join("d/f"), b"x")),
            errno(std::fs::remove_dir_all(dir.join("d"))),
            nix_errno(nix::sched::unshare(CloneFlags::CLONE_NEWUSER)),
        ]
    })
}

#[test]
fn kernel_applies_docker_default_profile() {
    let control = docker_probe(None);
    assert_eq!(control[..5], [None; 5], "control");
    // unshare(CLONE_NEWUSER) fails anyway in a threaded process, but not with EPERM.
    assert_ne!(control[5], Some(Errno::EPERM as i32), "control");

    let plan = plan(&docker_default()).expect("compiles");
    let got = docker_probe(Some(plan));
    assert_eq!(
        got,
        [None, None, None, None, None, Some(Errno::EPERM as i32)]
    );

    let mut profile = docker_default();
    profile.set_default_errno_ret(Some(Errno::EXDEV as u32));
    let got = docker_probe(Some(super::plan(&profile).expect("compiles")));
    assert_eq!(got[5], Some(Errno::EXDEV as i32), "defaultErrnoRet");
}

fn wait_readable(fd: impl AsFd, what: &str) {
    let timeout = Timespec {
        tv_sec: TIMEOUT.as_secs() as i64,
        tv_nsec: 0,
    };
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let ready = poll(&mut fds, Some(&timeout)).expect("poll");
    assert!(ready > 0, "timed out waiting for {what}");
}

#[test]
fn kernel_notify_sends_listener_and_state_to_agent() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let socket = tmp.path().join("agent.sock");
    let agent = UnixListener::bind(&socket).expect("bind agent socket");
    agent.set_nonblocking(true).expect("nonblocking");
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": socket,
        "listenerMetadata": "palisade-test",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}],
    });
    let plan = compile(profile);
    let mut state = State::default();
    state
        .set_version(crate::OCI_SPEC_VERSION.to_string())
        .set_id("seccomp-test".to_string())
        .set_status(ContainerState::Creating)
        .set_pid(Some(4242))
        .set_bundle("/bundle".into());

    let dir = tmp.path().join("d");
    let container = thread::spawn(move || {
        nix::sys::prctl::set_no_new_privs().expect("no_new_privs");
        let conn: ListenerConnection = connect_listener(&plan)
            .expect("connect")
            .expect("a NOTIFY plan has a listener");
        let listener = load(&plan)
            .expect("load")
            .expect("NEW_LISTENER gives an fd");
        send_listener_fd(conn, &plan, listener.as_fd(), 4242, &state).expect("send");
        drop(listener);
        errno(std::fs::create_dir(&dir))
    });

    // The agent: one connection, the state as JSON with the listener in SCM_RIGHTS.
    wait_readable(&agent, "the runtime's connection");
    let (conn, _) = agent.accept().expect("accept");
    conn.set_nonblocking(false).expect("blocking");
    conn.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let mut payload = vec![0u8; 64 * 1024];
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut cmsg = RecvAncillaryBuffer::new(&mut space);
    let mut len = recvmsg(
        &conn,
        &mut [IoSliceMut::new(&mut payload)],
        &mut cmsg,
        RecvFlags::CMSG_CLOEXEC,
    )
    .expect("recvmsg")
    .bytes;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for msg in cmsg.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = msg {
            fds.extend(rights);
        }
    }
    // The rest of the payload, if sent in parts, up to the close the spec requires.
    loop {
        let n = std::io::Read::read(&mut &conn, &mut payload[len..]).expect("read");
        if n == 0 {
            break;
        }
        len += n;
    }
    let cps: ContainerProcessState =
        serde_json::from_slice(&payload[..len]).expect("container process state JSON");
    assert_eq!(cps.version(), crate::OCI_SPEC_VERSION);
    assert_eq!(cps.fds(), &["seccompFd".to_string()]);
    assert_eq!(*cps.pid(), 4242);
    assert_eq!(cps.metadata().as_deref(), Some("palisade-test"));
    assert_eq!(cps.state().id(), "seccomp-test");
    assert_eq!(*cps.state().status(), ContainerState::Creating);
    assert_eq!(fds.len(), 1, "exactly the seccomp fd");

    // The fd is the live listener: the container's mkdir waits for this agent's answer.
    let listener = fds.remove(0);
    wait_readable(&listener, "the notification");
    let notif = crate::sys::seccomp_notif_recv(listener.as_fd()).expect("NOTIF_RECV");
    assert!(
        [83, 258].contains(&notif.data.nr),
        "mkdir or mkdirat, got {}",
        notif.data.nr
    );
    crate::sys::seccomp_notif_fail(listener.as_fd(), notif.id, Errno::EXDEV).expect("NOTIF_SEND");
    let got = container.join().expect("container thread");
    assert_eq!(got, Some(Errno::EXDEV as i32), "the agent's answer");
}
