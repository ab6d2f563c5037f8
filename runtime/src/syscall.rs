//! The system calls the container's processes make to build the container, behind one trait (as
//! youki's `Syscall`), so that their order and arguments can be tested without root.
//!
//! [`LinuxSyscall`] makes them; the tests' recording double (`syscall::recording`) writes them
//! down. Reads that the plan depends on after the pivot (file kinds, mount flags, the mount table)
//! are here too, so the double can answer them for a rootfs in a temporary directory. Unprivileged
//! path resolution inside the rootfs (`container::inroot`) is not: it runs for real in the tests.

use std::ffi::OsStr;
use std::io;
use std::os::fd::BorrowedFd;
use std::path::Path;

use caps::errors::CapsError;
use caps::{CapSet, Capability, CapsHashSet};
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::resource::Resource;
use nix::sys::stat::{Mode, SFlag};
use nix::sys::statvfs::FsFlags;
use nix::unistd::{Gid, Uid};
use procfs::process::MountInfo;

use crate::hooks::{HookError, HookKind, HookPlan};
use crate::spec::SchedAttr;

#[cfg(test)]
pub mod recording;

/// What a path names, as far as masking and read-only paths care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Dir,
    Symlink,
    Other,
}

pub trait Syscall {
    // Mounts and the root.
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()>;
    fn umount2(&self, target: &Path, flags: MntFlags) -> nix::Result<()>;
    /// mount_setattr(2): sets `set` after clearing `clear` (`MOUNT_ATTR_*`) on the mount at
    /// `target`, and on every mount below it if `recursive`.
    fn mount_setattr(
        &self,
        target: &Path,
        recursive: bool,
        set: u64,
        clear: u64,
    ) -> nix::Result<()>;
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> nix::Result<()>;
    fn chroot(&self, path: &Path) -> nix::Result<()>;
    fn chdir(&self, path: &Path) -> nix::Result<()>;
    fn fchdir(&self, dir: BorrowedFd<'_>) -> nix::Result<()>;
    /// The mount table of this mount namespace.
    fn mountinfo(&self) -> Vec<MountInfo>;
    /// The flags of the mount holding `path` (statvfs(2)).
    fn statvfs_flags(&self, path: &Path) -> nix::Result<FsFlags>;
    /// What `path` is (following a final symlink if `follow`); `None` if it cannot be looked up.
    fn file_kind(&self, path: &Path, follow: bool) -> Option<FileKind>;

    // Namespaces and the host name.
    fn sethostname(&self, name: &str) -> nix::Result<()>;
    fn setns(&self, ns: BorrowedFd<'_>, flag: CloneFlags) -> nix::Result<()>;
    fn unshare(&self, flags: CloneFlags) -> nix::Result<()>;

    // Files made in the rootfs.
    fn mknodat(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        kind: SFlag,
        perm: Mode,
        dev: u64,
    ) -> io::Result<()>;
    fn symlinkat(&self, target: &Path, dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()>;
    /// Copies the tree of directory `from` into directory `to` (`tmpcopyup`); `shown` names it.
    fn copy_tree(&self, from: BorrowedFd<'_>, to: BorrowedFd<'_>, shown: &Path) -> io::Result<()>;
    fn unlinkat(&self, dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()>;
    fn chmod(&self, path: &Path, mode: u32) -> io::Result<()>;
    fn chown(&self, path: &Path, uid: u32, gid: u32) -> io::Result<()>;
    /// Writes a kernel setting (`/proc/sys/…`, `/proc/self/oom_score_adj`).
    fn write_file(&self, path: &Path, value: &str) -> io::Result<()>;

    // Credentials.
    fn read_caps(&self, set: CapSet) -> Result<CapsHashSet, CapsError>;
    fn drop_cap(&self, set: CapSet, cap: Capability) -> Result<(), CapsError>;
    fn set_caps(&self, set: CapSet, caps: &CapsHashSet) -> Result<(), CapsError>;
    fn clear_caps(&self, set: CapSet) -> Result<(), CapsError>;
    fn raise_cap(&self, set: CapSet, cap: Capability) -> Result<(), CapsError>;
    fn set_keepcaps(&self, keep: bool) -> nix::Result<()>;
    fn set_no_new_privs(&self) -> nix::Result<()>;
    fn setgroups(&self, gids: &[u32]) -> nix::Result<()>;
    fn setresgid(&self, gid: u32) -> nix::Result<()>;
    fn setresuid(&self, uid: u32) -> nix::Result<()>;
    fn setrlimit(&self, resource: Resource, soft: u64, hard: u64) -> nix::Result<()>;

    // Process attributes.
    fn setdomainname(&self, name: &str) -> nix::Result<()>;
    fn umask(&self, mask: u32);
    fn personality(&self, persona: u32) -> nix::Result<()>;
    /// ioprio_set(2) for this process.
    fn ioprio_set(&self, value: u16) -> nix::Result<()>;
    /// sched_setattr(2) for this process.
    fn sched_setattr(&self, attr: &SchedAttr) -> nix::Result<()>;

    /// Runs a hook (createContainer, startContainer) from the init, in the container's
    /// namespaces, and waits for it.
    fn run_hook(&self, kind: HookKind, hook: &HookPlan, state: &[u8]) -> Result<(), HookError>;

    /// Loads a seccomp filter on the calling thread; the notify listener when it has one.
    fn seccomp_load(
        &self,
        plan: &crate::seccomp::SeccompPlan,
    ) -> Result<Option<std::os::fd::OwnedFd>, crate::seccomp::SeccompError>;
}

/// The real system calls.
pub struct LinuxSyscall;

impl Syscall for LinuxSyscall {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        nix::mount::mount(source, target, fstype, flags, data)
    }

    fn umount2(&self, target: &Path, flags: MntFlags) -> nix::Result<()> {
        nix::mount::umount2(target, flags)
    }

    fn mount_setattr(
        &self,
        target: &Path,
        recursive: bool,
        set: u64,
        clear: u64,
    ) -> nix::Result<()> {
        crate::sys::mount_setattr(target, recursive, set, clear)
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> nix::Result<()> {
        nix::unistd::pivot_root(new_root, put_old)
    }

    fn chroot(&self, path: &Path) -> nix::Result<()> {
        nix::unistd::chroot(path)
    }

    fn chdir(&self, path: &Path) -> nix::Result<()> {
        nix::unistd::chdir(path)
    }

    fn fchdir(&self, dir: BorrowedFd<'_>) -> nix::Result<()> {
        nix::unistd::fchdir(dir)
    }

    fn mountinfo(&self) -> Vec<MountInfo> {
        crate::mountinfo::own().unwrap_or_default()
    }

    fn statvfs_flags(&self, path: &Path) -> nix::Result<FsFlags> {
        nix::sys::statvfs::statvfs(path).map(|st| st.flags())
    }

    fn file_kind(&self, path: &Path, follow: bool) -> Option<FileKind> {
        let md = if follow {
            std::fs::metadata(path)
        } else {
            std::fs::symlink_metadata(path)
        };
        md.ok().map(|md| kind_of(md.file_type()))
    }

    fn sethostname(&self, name: &str) -> nix::Result<()> {
        nix::unistd::sethostname(name)
    }

    fn setns(&self, ns: BorrowedFd<'_>, flag: CloneFlags) -> nix::Result<()> {
        nix::sched::setns(ns, flag)
    }

    fn unshare(&self, flags: CloneFlags) -> nix::Result<()> {
        nix::sched::unshare(flags)
    }

    fn mknodat(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        kind: SFlag,
        perm: Mode,
        dev: u64,
    ) -> io::Result<()> {
        nix::sys::stat::mknodat(dir, name, kind, perm, dev).map_err(io::Error::from)
    }

    fn symlinkat(&self, target: &Path, dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
        rustix::fs::symlinkat(target, dir, name).map_err(io::Error::from)
    }

    fn copy_tree(&self, from: BorrowedFd<'_>, to: BorrowedFd<'_>, shown: &Path) -> io::Result<()> {
        crate::container::copyup::copy_tree(from, to, shown)
    }

    fn unlinkat(&self, dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
        rustix::fs::unlinkat(dir, name, rustix::fs::AtFlags::empty()).map_err(io::Error::from)
    }

    fn chmod(&self, path: &Path, mode: u32) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    }

    fn chown(&self, path: &Path, uid: u32, gid: u32) -> io::Result<()> {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
    }

    fn write_file(&self, path: &Path, value: &str) -> io::Result<()> {
        std::fs::write(path, value)
    }

    fn read_caps(&self, set: CapSet) -> Result<CapsHashSet, CapsError> {
        caps::read(None, set)
    }

    fn drop_cap(&self, set: CapSet, cap: Capability) -> Result<(), CapsError> {
        caps::drop(None, set, cap)
    }

    fn set_caps(&self, set: CapSet, caps: &CapsHashSet) -> Result<(), CapsError> {
        caps::set(None, set, caps)
    }

    fn clear_caps(&self, set: CapSet) -> Result<(), CapsError> {
        caps::clear(None, set)
    }

    fn raise_cap(&self, set: CapSet, cap: Capability) -> Result<(), CapsError> {
        caps::raise(None, set, cap)
    }

    fn set_keepcaps(&self, keep: bool) -> nix::Result<()> {
        nix::sys::prctl::set_keepcaps(keep)
    }

    fn set_no_new_privs(&self) -> nix::Result<()> {
        nix::sys::prctl::set_no_new_privs()
    }

    fn setgroups(&self, gids: &[u32]) -> nix::Result<()> {
        let gids: Vec<Gid> = gids.iter().map(|g| Gid::from_raw(*g)).collect();
        nix::unistd::setgroups(&gids)
    }

    fn setresgid(&self, gid: u32) -> nix::Result<()> {
        let gid = Gid::from_raw(gid);
        nix::unistd::setresgid(gid, gid, gid)
    }

    fn setresuid(&self, uid: u32) -> nix::Result<()> {
        let uid = Uid::from_raw(uid);
        nix::unistd::setresuid(uid, uid, uid)
    }

    fn setrlimit(&self, resource: Resource, soft: u64, hard: u64) -> nix::Result<()> {
        nix::sys::resource::setrlimit(resource, soft, hard)
    }

    fn setdomainname(&self, name: &str) -> nix::Result<()> {
        crate::sys::setdomainname(name)
    }

    fn umask(&self, mask: u32) {
        nix::sys::stat::umask(Mode::from_bits_truncate(mask));
    }

    fn personality(&self, persona: u32) -> nix::Result<()> {
        crate::sys::personality(persona)
    }

    fn ioprio_set(&self, value: u16) -> nix::Result<()> {
        crate::sys::ioprio_set(value)
    }

    fn sched_setattr(&self, attr: &SchedAttr) -> nix::Result<()> {
        crate::sys::sched_setattr(attr)
    }

    fn run_hook(&self, kind: HookKind, hook: &HookPlan, state: &[u8]) -> Result<(), HookError> {
        crate::hooks::run(kind, hook, state)
    }

    fn seccomp_load(
        &self,
        plan: &crate::seccomp::SeccompPlan,
    ) -> Result<Option<std::os::fd::OwnedFd>, crate::seccomp::SeccompError> {
        crate::seccomp::load(plan)
    }
}

pub fn kind_of(file_type: std::fs::FileType) -> FileKind {
    if file_type.is_dir() {
        FileKind::Dir
    } else if file_type.is_symlink() {
        FileKind::Symlink
    } else {
        FileKind::Other
    }
}
