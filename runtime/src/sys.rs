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

/// setdomainname(2) (neither nix nor rustix's enabled features have it).
pub fn setdomainname(name: &str) -> nix::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes, which outlive the call; the kernel
    // only reads them.
    let res = unsafe { nix::libc::setdomainname(name.as_ptr().cast(), name.len()) };
    Errno::result(res).map(drop)
}

/// personality(2): sets the execution domain (PER_LINUX32 makes `uname -m` say i686).
pub fn personality(persona: u32) -> nix::Result<()> {
    // SAFETY: personality takes a plain integer and touches no memory of ours.
    let res = unsafe { nix::libc::personality(nix::libc::c_ulong::from(persona)) };
    Errno::result(res).map(drop)
}

/// ioprio_set(2) for the calling process.
pub fn ioprio_set(value: u16) -> nix::Result<()> {
    const IOPRIO_WHO_PROCESS: nix::libc::c_int = 1;
    // SAFETY: ioprio_set takes three integers (who, 0 = this process, the priority) and no
    // pointers.
    let res = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            0,
            nix::libc::c_int::from(value),
        )
    };
    Errno::result(res).map(drop)
}

/// struct sched_attr of linux/sched/types.h, first version (48 bytes, no utilization clamps).
#[repr(C)]
struct SchedAttrV0 {
    size: u32,
    sched_policy: u32,
    sched_flags: u64,
    sched_nice: i32,
    sched_priority: u32,
    sched_runtime: u64,
    sched_deadline: u64,
    sched_period: u64,
}

/// sched_setattr(2) for the calling process.
pub fn sched_setattr(attr: &crate::spec::SchedAttr) -> nix::Result<()> {
    let kernel = SchedAttrV0 {
        size: std::mem::size_of::<SchedAttrV0>() as u32,
        sched_policy: attr.policy,
        sched_flags: attr.flags,
        sched_nice: attr.nice,
        sched_priority: attr.priority,
        sched_runtime: attr.runtime,
        sched_deadline: attr.deadline,
        sched_period: attr.period,
    };
    // SAFETY: `kernel` is a properly laid out struct sched_attr whose `size` field says how much
    // the kernel may read; it lives until the call returns and is only read.
    let res = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_sched_setattr,
            0,
            &kernel as *const SchedAttrV0,
            0,
        )
    };
    Errno::result(res).map(drop)
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
