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

/// Closes every descriptor from `first` to `last` (inclusive), for `exec`: a descriptor left
/// open while the process changes into its working directory could be followed out of the
/// container through /proc/self/fd (CVE-2024-21626), so closing on exec is not enough.
pub fn close_range(first: u32, last: u32) -> nix::Result<()> {
    if first > last {
        return Ok(());
    }
    // SAFETY: close_range only closes descriptors; the callers hold no Rust owner of any
    // descriptor in the range that they use afterwards (`exec` passes the ranges around the
    // ones it keeps).
    let res = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_close_range,
            first as nix::libc::c_uint,
            last as nix::libc::c_uint,
            0 as nix::libc::c_uint,
        )
    };
    Errno::result(res).map(drop)
}

/// The user namespace that owns the namespace `ns` (ioctl NS_GET_USERNS).
pub fn ns_owner(ns: std::os::fd::BorrowedFd<'_>) -> nix::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd};
    nix::ioctl_none!(ns_get_userns, 0xb7, 0x1);
    // SAFETY: NS_GET_USERNS takes no argument and returns a new descriptor, which is owned here
    // and nowhere else.
    let fd = unsafe { ns_get_userns(ns.as_raw_fd()) }?;
    // SAFETY: `fd` was just returned by the kernel and is not owned by anything else.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}
