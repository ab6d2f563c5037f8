//! A [`Syscall`] that writes every call down instead of making it, for tests without root.
//!
//! It models just enough of the process to answer the reads that follow: the current and root
//! directories (so that, after `pivot_root` or `chroot`, `/proc/kcore` names the test rootfs's
//! file), and a device node becomes an empty file so that path resolution can go on. Paths below
//! the test's rootfs are written as `$ROOTFS/…`, and mount targets given as `/proc/self/fd/<n>` as
//! `fd:<the file it names>`, so tests can tell a mount through a file descriptor from one by path.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

use caps::errors::CapsError;
use caps::{CapSet, Capability, CapsHashSet};
use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::resource::Resource;
use nix::sys::stat::{Mode, SFlag};
use nix::sys::statvfs::FsFlags;
use procfs::process::MountInfo;

use super::{FileKind, Syscall, kind_of};
use crate::hooks::{HookError, HookKind, HookPlan};
use crate::spec::SchedAttr;

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Mount {
        source: Option<String>,
        target: String,
        fstype: Option<String>,
        flags: MsFlags,
        data: Option<String>,
    },
    Umount2(String, MntFlags),
    MountSetattr {
        target: String,
        recursive: bool,
        set: u64,
        clear: u64,
    },
    PivotRoot(String, String),
    Chroot(String),
    Chdir(String),
    Fchdir(String),
    Sethostname(String),
    Setns(String, CloneFlags),
    Unshare(CloneFlags),
    Mknod {
        path: String,
        kind: SFlag,
        perm: u32,
        dev: u64,
    },
    Symlink {
        target: String,
        link: String,
    },
    Unlink(String),
    /// `tmpcopyup`: the tree of the first directory copied into the second.
    CopyTree(String, String),
    Chmod(String, u32),
    Chown(String, u32, u32),
    Write(String, String),
    DropCap(&'static str, Capability),
    SetCaps(&'static str, BTreeSet<String>),
    ClearCaps(&'static str),
    RaiseCap(&'static str, Capability),
    Keepcaps(bool),
    NoNewPrivs,
    Setgroups(Vec<u32>),
    Setresgid(u32),
    Setresuid(u32),
    Setrlimit(Resource, u64, u64),
    Setdomainname(String),
    Umask(u32),
    Personality(u32),
    IoprioSet(u16),
    SchedSetattr(SchedAttr),
    /// A hook run by the init: its kind, path and the state it was given.
    Hook(&'static str, String, String),
    /// A seccomp filter of this many instructions.
    Seccomp(usize),
}

impl Call {
    /// A mount call, written as tests spell it.
    pub fn mount(
        source: Option<&str>,
        target: &str,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Call {
        Call::Mount {
            source: source.map(str::to_owned),
            target: target.to_owned(),
            fstype: fstype.map(str::to_owned),
            flags,
            data: data.map(str::to_owned),
        }
    }

    pub fn is_mount(&self) -> bool {
        matches!(self, Call::Mount { .. })
    }
}

fn set_name(set: CapSet) -> &'static str {
    match set {
        CapSet::Ambient => "ambient",
        CapSet::Bounding => "bounding",
        CapSet::Effective => "effective",
        CapSet::Inheritable => "inheritable",
        CapSet::Permitted => "permitted",
    }
}

type Failure = Box<dyn Fn(&Call) -> Option<Errno>>;

pub struct Recorder {
    rootfs: PathBuf,
    calls: RefCell<Vec<Call>>,
    cwd: RefCell<PathBuf>,
    root: RefCell<PathBuf>,
    mounts: Vec<MountInfo>,
    statvfs: FsFlags,
    bounding: CapsHashSet,
    fail: Option<Failure>,
}

impl Recorder {
    /// A recorder for a container whose rootfs is `rootfs` (a temporary directory).
    pub fn new(rootfs: &Path) -> Self {
        Self {
            rootfs: rootfs.to_owned(),
            calls: RefCell::default(),
            cwd: RefCell::new(PathBuf::from("/")),
            root: RefCell::new(PathBuf::from("/")),
            mounts: Vec::new(),
            statvfs: FsFlags::empty(),
            bounding: caps::all(),
            fail: None,
        }
    }

    /// The mount table it reports.
    pub fn with_mounts(mut self, mounts: Vec<MountInfo>) -> Self {
        self.mounts = mounts;
        self
    }

    /// The statvfs flags it reports for every path.
    pub fn with_statvfs(mut self, flags: FsFlags) -> Self {
        self.statvfs = flags;
        self
    }

    /// The bounding set it reports.
    pub fn with_bounding(mut self, caps: CapsHashSet) -> Self {
        self.bounding = caps;
        self
    }

    /// Calls for which `fail` returns an errno fail with it (after being recorded).
    pub fn failing(mut self, fail: impl Fn(&Call) -> Option<Errno> + 'static) -> Self {
        self.fail = Some(Box::new(fail));
        self
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }

    pub fn mounts(&self) -> Vec<Call> {
        self.calls().into_iter().filter(Call::is_mount).collect()
    }

    /// Position of the first call equal to `call`.
    pub fn position(&self, call: &Call) -> Option<usize> {
        self.calls.borrow().iter().position(|c| c == call)
    }

    fn record(&self, call: Call) -> Result<(), Errno> {
        let failure = self.fail.as_ref().and_then(|f| f(&call));
        self.calls.borrow_mut().push(call);
        failure.map_or(Ok(()), Err)
    }

    fn record_io(&self, call: Call) -> io::Result<()> {
        self.record(call).map_err(io::Error::from)
    }

    /// A path as tests spell it: `fd:` for `/proc/self/fd/<n>`, `$ROOTFS` for the test's rootfs.
    fn show(&self, path: &Path) -> String {
        if path.starts_with("/proc/self/fd") {
            let real = std::fs::read_link(path).unwrap_or_else(|_| path.to_owned());
            return format!("fd:{}", self.short(&real));
        }
        self.short(path)
    }

    fn short(&self, path: &Path) -> String {
        match path.strip_prefix(&self.rootfs) {
            Ok(rest) if rest.as_os_str().is_empty() => "$ROOTFS".to_owned(),
            Ok(rest) => format!("$ROOTFS/{}", rest.display()),
            Err(_) => path.display().to_string(),
        }
    }

    fn show_at(&self, dir: BorrowedFd<'_>, name: &OsStr) -> String {
        let dir =
            std::fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd())).unwrap_or_default();
        self.short(&dir.join(name))
    }

    /// Where `path` is in the modelled process (after a pivot, `/` is the rootfs).
    fn host_path(&self, path: &Path) -> PathBuf {
        let base = if path.is_absolute() {
            self.root.borrow().clone()
        } else {
            self.cwd.borrow().clone()
        };
        base.join(path.strip_prefix("/").unwrap_or(path))
    }
}

impl Syscall for Recorder {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        self.record(Call::Mount {
            source: source.map(|s| self.show(s)),
            target: self.show(target),
            fstype: fstype.map(str::to_owned),
            flags,
            data: data.map(str::to_owned),
        })
    }

    fn umount2(&self, target: &Path, flags: MntFlags) -> nix::Result<()> {
        self.record(Call::Umount2(self.show(target), flags))
    }

    fn mount_setattr(
        &self,
        target: &Path,
        recursive: bool,
        set: u64,
        clear: u64,
    ) -> nix::Result<()> {
        self.record(Call::MountSetattr {
            target: self.show(target),
            recursive,
            set,
            clear,
        })
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> nix::Result<()> {
        self.record(Call::PivotRoot(self.show(new_root), self.show(put_old)))?;
        let new_root = self.host_path(new_root);
        *self.root.borrow_mut() = new_root;
        Ok(())
    }

    fn chroot(&self, path: &Path) -> nix::Result<()> {
        self.record(Call::Chroot(self.show(path)))?;
        let new_root = self.host_path(path);
        *self.root.borrow_mut() = new_root;
        Ok(())
    }

    fn chdir(&self, path: &Path) -> nix::Result<()> {
        self.record(Call::Chdir(self.show(path)))?;
        let cwd = self.host_path(path);
        *self.cwd.borrow_mut() = cwd;
        Ok(())
    }

    fn fchdir(&self, dir: BorrowedFd<'_>) -> nix::Result<()> {
        let path =
            std::fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd())).unwrap_or_default();
        self.record(Call::Fchdir(self.short(&path)))
    }

    fn mountinfo(&self) -> Vec<MountInfo> {
        self.mounts.clone()
    }

    fn statvfs_flags(&self, _path: &Path) -> nix::Result<FsFlags> {
        Ok(self.statvfs)
    }

    fn file_kind(&self, path: &Path, follow: bool) -> Option<FileKind> {
        let path = self.host_path(path);
        let md = if follow {
            std::fs::metadata(path)
        } else {
            std::fs::symlink_metadata(path)
        };
        md.ok().map(|md| kind_of(md.file_type()))
    }

    fn sethostname(&self, name: &str) -> nix::Result<()> {
        self.record(Call::Sethostname(name.to_owned()))
    }

    fn setns(&self, ns: BorrowedFd<'_>, flag: CloneFlags) -> nix::Result<()> {
        let path =
            std::fs::read_link(format!("/proc/self/fd/{}", ns.as_raw_fd())).unwrap_or_default();
        self.record(Call::Setns(path.display().to_string(), flag))
    }

    fn unshare(&self, flags: CloneFlags) -> nix::Result<()> {
        self.record(Call::Unshare(flags))
    }

    fn mknodat(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        kind: SFlag,
        perm: Mode,
        dev: u64,
    ) -> io::Result<()> {
        self.record_io(Call::Mknod {
            path: self.show_at(dir, name),
            kind,
            perm: perm.bits(),
            dev,
        })?;
        // A stand-in, so that the node can be looked up like the real one.
        rustix::fs::openat(
            dir,
            name,
            rustix::fs::OFlags::CREATE | rustix::fs::OFlags::EXCL | rustix::fs::OFlags::WRONLY,
            rustix::fs::Mode::from_bits_truncate(0o600),
        )
        .map(drop)
        .map_err(io::Error::from)
    }

    fn symlinkat(&self, target: &Path, dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
        self.record_io(Call::Symlink {
            target: target.display().to_string(),
            link: self.show_at(dir, name),
        })
    }

    fn unlinkat(&self, dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
        self.record_io(Call::Unlink(self.show_at(dir, name)))
    }

    fn copy_tree(&self, from: BorrowedFd<'_>, to: BorrowedFd<'_>, _shown: &Path) -> io::Result<()> {
        let path =
            |fd: BorrowedFd<'_>| self.show(Path::new(&format!("/proc/self/fd/{}", fd.as_raw_fd())));
        self.record_io(Call::CopyTree(path(from), path(to)))
    }

    fn chmod(&self, path: &Path, mode: u32) -> io::Result<()> {
        self.record_io(Call::Chmod(self.show(path), mode))
    }

    fn chown(&self, path: &Path, uid: u32, gid: u32) -> io::Result<()> {
        self.record_io(Call::Chown(self.show(path), uid, gid))
    }

    fn write_file(&self, path: &Path, value: &str) -> io::Result<()> {
        self.record_io(Call::Write(self.show(path), value.to_owned()))
    }

    fn read_caps(&self, set: CapSet) -> Result<CapsHashSet, CapsError> {
        Ok(match set {
            CapSet::Bounding => self.bounding.clone(),
            _ => caps::all(),
        })
    }

    fn drop_cap(&self, set: CapSet, cap: Capability) -> Result<(), CapsError> {
        self.record(Call::DropCap(set_name(set), cap))
            .map_err(|e| CapsError::from(e.to_string()))
    }

    fn set_caps(&self, set: CapSet, caps: &CapsHashSet) -> Result<(), CapsError> {
        let names = caps.iter().map(ToString::to_string).collect();
        self.record(Call::SetCaps(set_name(set), names))
            .map_err(|e| CapsError::from(e.to_string()))
    }

    fn clear_caps(&self, set: CapSet) -> Result<(), CapsError> {
        self.record(Call::ClearCaps(set_name(set)))
            .map_err(|e| CapsError::from(e.to_string()))
    }

    fn raise_cap(&self, set: CapSet, cap: Capability) -> Result<(), CapsError> {
        self.record(Call::RaiseCap(set_name(set), cap))
            .map_err(|e| CapsError::from(e.to_string()))
    }

    fn set_keepcaps(&self, keep: bool) -> nix::Result<()> {
        self.record(Call::Keepcaps(keep))
    }

    fn set_no_new_privs(&self) -> nix::Result<()> {
        self.record(Call::NoNewPrivs)
    }

    fn setgroups(&self, gids: &[u32]) -> nix::Result<()> {
        self.record(Call::Setgroups(gids.to_vec()))
    }

    fn setresgid(&self, gid: u32) -> nix::Result<()> {
        self.record(Call::Setresgid(gid))
    }

    fn setresuid(&self, uid: u32) -> nix::Result<()> {
        self.record(Call::Setresuid(uid))
    }

    fn setrlimit(&self, resource: Resource, soft: u64, hard: u64) -> nix::Result<()> {
        self.record(Call::Setrlimit(resource, soft, hard))
    }

    fn setdomainname(&self, name: &str) -> nix::Result<()> {
        self.record(Call::Setdomainname(name.to_owned()))
    }

    fn umask(&self, mask: u32) {
        let _ = self.record(Call::Umask(mask));
    }

    fn personality(&self, persona: u32) -> nix::Result<()> {
        self.record(Call::Personality(persona))
    }

    fn ioprio_set(&self, value: u16) -> nix::Result<()> {
        self.record(Call::IoprioSet(value))
    }

    fn sched_setattr(&self, attr: &SchedAttr) -> nix::Result<()> {
        self.record(Call::SchedSetattr(*attr))
    }

    fn run_hook(&self, kind: HookKind, hook: &HookPlan, state: &[u8]) -> Result<(), HookError> {
        let call = Call::Hook(
            kind.name(),
            hook.path.display().to_string(),
            String::from_utf8_lossy(state).into_owned(),
        );
        self.record(call).map_err(|errno| HookError::Spawn {
            kind,
            path: hook.path.clone(),
            source: errno.into(),
        })
    }

    fn seccomp_load(
        &self,
        plan: &crate::seccomp::SeccompPlan,
    ) -> Result<Option<std::os::fd::OwnedFd>, crate::seccomp::SeccompError> {
        self.record(Call::Seccomp(plan.instructions().len()))
            .map_err(|source| crate::seccomp::SeccompError::Load { source })?;
        Ok(None)
    }
}
