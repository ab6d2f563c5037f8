//! The only module allowed to use `unsafe`: thin wrappers around syscalls that nix/rustix expose
//! only as unsafe functions. Everything else in the crate stays safe.
#![expect(unsafe_code)]

use nix::errno::Errno;
use nix::unistd::ForkResult;

/// fork(2).
///
/// The runtime never starts threads, so the child is an exact single-threaded copy and may keep
/// allocating and running arbitrary Rust code.
pub fn fork() -> nix::Result<ForkResult> {
    // SAFETY: the calling process is single-threaded (palisade-runtime never spawns threads), so no
    // lock can be held by a thread that does not exist in the child.
    unsafe { nix::unistd::fork() }
}

/// Marks every descriptor from 3 upwards close-on-exec, so that descriptors leaked into `create`
/// by its caller never reach the container process (runc does the same).
pub fn cloexec_from(first: u32) -> nix::Result<()> {
    const CLOSE_RANGE_CLOEXEC: nix::libc::c_uint = 1 << 2;
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on descriptors; it takes no
    // pointers and cannot invalidate memory.
    let res = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_close_range,
            first as nix::libc::c_uint,
            u32::MAX as nix::libc::c_uint,
            CLOSE_RANGE_CLOEXEC,
        )
    };
    Errno::result(res).map(drop)
}

/// Restores the default SIGPIPE disposition. The Rust runtime ignores SIGPIPE at startup, and an
/// ignored signal survives execve, so without this the container process would inherit it.
pub fn reset_sigpipe() -> nix::Result<()> {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: installs SIG_DFL, not a Rust handler, so no async-signal-safety concern arises.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }.map(drop)
}

/// What seccomp(SECCOMP_SET_MODE_FILTER) returned.
#[derive(Debug)]
pub enum SeccompLoaded {
    /// With `SECCOMP_FILTER_FLAG_NEW_LISTENER`: the notify listener.
    Listener(std::os::fd::OwnedFd),
    /// Otherwise: 0, or with `SECCOMP_FILTER_FLAG_TSYNC` the id of a thread that could not sync.
    Value(nix::libc::c_long),
}

/// seccomp(SECCOMP_SET_MODE_FILTER, flags, program): installs `program` on the calling thread.
pub fn seccomp_set_mode_filter(
    flags: nix::libc::c_ulong,
    program: &[nix::libc::sock_filter],
) -> nix::Result<SeccompLoaded> {
    use std::os::fd::FromRawFd;
    let len = u16::try_from(program.len()).map_err(|_| Errno::EINVAL)?;
    let prog = nix::libc::sock_fprog {
        len,
        // The kernel only reads the program (it copies it during the call).
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points to `len` valid, initialised instructions that outlive the call; the
    // kernel copies them and keeps no pointer. The other arguments are plain integers.
    let res = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_seccomp,
            nix::libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &prog as *const nix::libc::sock_fprog,
        )
    };
    let res = Errno::result(res)?;
    if flags & nix::libc::SECCOMP_FILTER_FLAG_NEW_LISTENER != 0 {
        let fd = std::os::fd::RawFd::try_from(res).map_err(|_| Errno::EBADF)?;
        // SAFETY: with NEW_LISTENER a successful seccomp(2) returns a new descriptor that nothing
        // else owns; the OwnedFd becomes its only owner.
        Ok(SeccompLoaded::Listener(unsafe {
            std::os::fd::OwnedFd::from_raw_fd(fd)
        }))
    } else {
        Ok(SeccompLoaded::Value(res))
    }
}

/// SECCOMP_IOCTL_NOTIF_RECV: waits for the next notification (tests act as the agent).
#[cfg(test)]
pub fn seccomp_notif_recv(
    listener: std::os::fd::BorrowedFd<'_>,
) -> nix::Result<nix::libc::seccomp_notif> {
    use std::os::fd::AsRawFd;
    // The kernel requires a zeroed buffer.
    let mut notif = nix::libc::seccomp_notif {
        id: 0,
        pid: 0,
        flags: 0,
        data: nix::libc::seccomp_data {
            nr: 0,
            arch: 0,
            instruction_pointer: 0,
            args: [0; 6],
        },
    };
    // SAFETY: the request's size matches `struct seccomp_notif`, which `notif` is, writable and
    // alive for the call.
    let res = unsafe {
        nix::libc::ioctl(
            listener.as_raw_fd(),
            nix::libc::SECCOMP_IOCTL_NOTIF_RECV,
            &mut notif as *mut nix::libc::seccomp_notif,
        )
    };
    Errno::result(res).map(|_| notif)
}

/// SECCOMP_IOCTL_NOTIF_SEND: answers notification `id`: the syscall fails with `errno`.
#[cfg(test)]
pub fn seccomp_notif_fail(
    listener: std::os::fd::BorrowedFd<'_>,
    id: u64,
    errno: Errno,
) -> nix::Result<()> {
    use std::os::fd::AsRawFd;
    let mut resp = nix::libc::seccomp_notif_resp {
        id,
        val: 0,
        error: -(errno as i32),
        flags: 0,
    };
    // SAFETY: the request's size matches `struct seccomp_notif_resp`, which `resp` is, valid and
    // alive for the call.
    let res = unsafe {
        nix::libc::ioctl(
            listener.as_raw_fd(),
            nix::libc::SECCOMP_IOCTL_NOTIF_SEND,
            &mut resp as *mut nix::libc::seccomp_notif_resp,
        )
    };
    Errno::result(res).map(drop)
}
