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
