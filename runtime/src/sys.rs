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

/// mount_setattr(2) on the mount at `path` (and, if `recursive`, every mount below it): sets the
/// `MOUNT_ATTR_*` bits in `set` after clearing those in `clear`. `path` may be a
/// `/proc/self/fd/<n>` link, which is followed like mount(2) follows it.
pub fn mount_setattr(
    path: &std::path::Path,
    recursive: bool,
    set: u64,
    clear: u64,
) -> nix::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    /// `struct mount_attr` (linux/mount.h, MOUNT_ATTR_SIZE_VER0).
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const AT_RECURSIVE: nix::libc::c_uint = 0x8000;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: 0,
    };
    let flags = if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: `path` is a NUL-terminated string and `attr` a properly laid out mount_attr, both
    // alive for the whole call, whose size is passed; the kernel only reads them.
    let res = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_mount_setattr,
            nix::libc::AT_FDCWD,
            path.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(res).map(drop)
}

/// `BPF_PROG_TYPE_CGROUP_DEVICE`, `BPF_CGROUP_DEVICE` and `BPF_F_ALLOW_MULTI` (linux/bpf.h).
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;
const BPF_PROG_LOAD: nix::libc::c_long = 5;
const BPF_PROG_ATTACH: nix::libc::c_long = 8;

/// bpf(2) BPF_PROG_LOAD of a cgroup device program. `insns` are encoded `struct bpf_insn`s (8
/// bytes each). With `log`, the verifier writes its log there (level 1).
pub fn bpf_load_cgroup_device(
    insns: &[u8],
    log: Option<&mut [u8]>,
) -> nix::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    /// The BPF_PROG_LOAD part of `union bpf_attr`, up to expected_attach_type; the kernel
    /// treats the fields after it as zero.
    #[repr(C)]
    struct ProgLoad {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
        prog_name: [u8; 16],
        prog_ifindex: u32,
        expected_attach_type: u32,
    }
    if !insns.len().is_multiple_of(8) {
        return Err(Errno::EINVAL);
    }
    let insn_cnt = u32::try_from(insns.len() / 8).map_err(|_| Errno::E2BIG)?;
    // No helper is called, so the licence does not matter to the kernel; it is the project's.
    let license = c"Apache-2.0";
    let mut name = [0u8; 16];
    name[..12].copy_from_slice(b"palisade_dev");
    let (log_level, log_size, log_buf) = match log {
        Some(buf) => (
            1,
            u32::try_from(buf.len()).map_err(|_| Errno::EINVAL)?,
            buf.as_mut_ptr() as u64,
        ),
        None => (0, 0, 0),
    };
    let attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level,
        log_size,
        log_buf,
        kern_version: 0,
        prog_flags: 0,
        prog_name: name,
        prog_ifindex: 0,
        expected_attach_type: 0,
    };
    // SAFETY: `attr` and everything it points to (`insns`, `license`, the log buffer, whose
    // length is passed) are alive and unaliased for the whole call; the kernel reads `attr`,
    // the instructions and the licence, and writes at most `log_size` bytes into the log.
    let fd = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoad,
            std::mem::size_of::<ProgLoad>(),
        )
    };
    let fd = Errno::result(fd)?;
    let fd = i32::try_from(fd).map_err(|_| Errno::EBADF)?;
    // SAFETY: a successful BPF_PROG_LOAD returns a new descriptor that nothing else owns.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// bpf(2) BPF_PROG_ATTACH of a cgroup device program to the cgroup opened as `cgroup`, with
/// BPF_F_ALLOW_MULTI.
pub fn bpf_attach_cgroup_device(
    cgroup: std::os::fd::BorrowedFd<'_>,
    program: std::os::fd::BorrowedFd<'_>,
) -> nix::Result<()> {
    use std::os::fd::AsRawFd;
    /// The BPF_PROG_ATTACH part of `union bpf_attr`.
    #[repr(C)]
    struct ProgAttach {
        target_fd: u32,
        attach_bpf_fd: u32,
        attach_type: u32,
        attach_flags: u32,
        replace_bpf_fd: u32,
    }
    let attr = ProgAttach {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: program.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    // SAFETY: `attr` is alive for the whole call and its size is passed; the kernel only reads
    // it, and the descriptors in it are borrowed, so they stay open during the call.
    let res = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attr as *const ProgAttach,
            std::mem::size_of::<ProgAttach>(),
        )
    };
    Errno::result(res).map(drop)
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
