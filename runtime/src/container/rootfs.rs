//! Mount helpers for the container's root filesystem. Only ever called inside the container's
//! mount namespace, after "/" was made a recursive slave, so nothing here reaches the host.
//!
//! Before the pivot, every path inside the rootfs is resolved in it ([`RootDir`]) and mounted on
//! through the opened file; after the pivot, `/` is the rootfs and paths are used as they are.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sys::stat::{Mode, makedev};
use nix::sys::statvfs::FsFlags;

use super::init::InitError;
use super::inroot::{Create, RootDir, Target};
use crate::cgroups::Layout;
use crate::spec::{MountPlan, Plan};
use crate::syscall::{FileKind, Syscall};

const NONE: Option<&str> = None;

/// Default devices, bind-mounted from the host (works with or without CAP_MKNOD / user ns).
const DEFAULT_DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// mount(2) onto `dst`, named `shown` in the error.
fn mnt(
    sys: &dyn Syscall,
    src: Option<&Path>,
    dst: &Path,
    shown: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), InitError> {
    sys.mount(src, dst, fstype, flags, data)
        .map_err(|source| InitError::Mount {
            what: format!(
                "mount {} on {} (type {}, flags {flags:?}, data {:?})",
                src.map(|s| s.display().to_string()).unwrap_or_default(),
                shown.display(),
                fstype.unwrap_or(""),
                data.unwrap_or("")
            ),
            source,
        })
}

/// mount(2) onto a file opened in the rootfs.
fn mnt_at(
    sys: &dyn Syscall,
    src: Option<&Path>,
    dst: &Target,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), InitError> {
    mnt(sys, src, &dst.proc_path(), dst.shown(), fstype, flags, data)
}

fn io_err(what: String) -> impl FnOnce(io::Error) -> InitError {
    move |source| InitError::Io { what, source }
}

/// Resolves `path` in the rootfs, creating what is missing as `create` says.
fn resolve(root: &RootDir, path: &Path, create: Create<'_>) -> Result<Target, InitError> {
    root.resolve(path, create)
        .map_err(io_err(format!("resolve {}", path.display())))
}

/// Mounts one entry of config.json's `mounts` (`mounts[index]`) below the rootfs.
pub fn mount_entry(
    sys: &dyn Syscall,
    root: &RootDir,
    m: &MountPlan,
    index: usize,
    layout: &Layout,
) -> Result<(), InitError> {
    let dest = &m.destination;
    if m.fstype == "cgroup" || m.fstype == "cgroup2" {
        mount_cgroup(sys, root, m, index, layout)?;
    } else if m.bind {
        let src = m.source.as_deref().unwrap_or(Path::new(""));
        let is_dir = std::fs::metadata(src).map(|md| md.is_dir()).unwrap_or(true);
        let target = resolve(root, dest, if is_dir { Create::Dir } else { Create::File })?;
        check_destination(root, m, index, &target)?;
        mnt_at(
            sys,
            Some(src),
            &target,
            NONE,
            MsFlags::MS_BIND | (m.flags & MsFlags::MS_REC),
            NONE,
        )?;
        // ro/nosuid/... are ignored on the initial bind; they only take effect on a remount.
        let extra = m.flags - MsFlags::MS_REC;
        if !extra.is_empty() {
            let flags = extra | MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
            match remount(sys, root, dest, flags) {
                // In a user namespace the flags of a mount from the host are locked: a remount
                // must repeat them (nosuid, nodev, …), as runc's retry does.
                Err(InitError::Mount {
                    source: Errno::EPERM,
                    ..
                }) => {
                    remount(sys, root, dest, flags | existing_flags(sys, src))?;
                }
                other => other?,
            }
        }
    } else {
        let target = resolve(root, dest, Create::Dir)?;
        check_destination(root, m, index, &target)?;
        if m.copy_up {
            mount_copied_up(sys, root, m, index, &target)?;
        } else {
            let src = m.source.clone().unwrap_or_else(|| PathBuf::from(&m.fstype));
            let data = (!m.data.is_empty()).then_some(m.data.as_str());
            match mnt_at(sys, Some(&src), &target, Some(&m.fstype), m.flags, data) {
                // sysfs can only be mounted by the owner of the net namespace: fall back to a
                // recursive bind of the host's /sys like runc.
                Err(InitError::Mount {
                    source: Errno::EPERM,
                    ..
                }) if m.fstype == "sysfs" => {
                    mnt_at(
                        sys,
                        Some(Path::new("/sys")),
                        &target,
                        NONE,
                        MsFlags::MS_BIND | MsFlags::MS_REC,
                        NONE,
                    )?;
                    if !m.flags.is_empty() {
                        remount(
                            sys,
                            root,
                            dest,
                            m.flags | MsFlags::MS_BIND | MsFlags::MS_REMOUNT,
                        )?;
                    }
                }
                other => other?,
            }
        }
    }
    if !m.propagation.is_empty() {
        let target = resolve(root, dest, Create::Nothing)?;
        for p in &m.propagation {
            mnt_at(sys, None, &target, NONE, *p, NONE)?;
        }
    }
    if let Some(rec) = m.recursive {
        // On the tree now mounted there: looked up again to reach the new mount.
        let target = resolve(root, dest, Create::Nothing)?;
        sys.mount_setattr(&target.proc_path(), true, rec.set, rec.clear)
            .map_err(|source| match source {
                Errno::ENOSYS => InitError::Refused(format!(
                    "mounts[{index}] ({}): recursive mount options (rro, rnosuid, …) need \
                     mount_setattr(2), Linux 5.12 or later, and this kernel does not have it",
                    dest.display()
                )),
                source => InitError::Mount {
                    what: format!(
                        "mounts[{index}]: recursive mount attributes on {} (mount_setattr set \
                         {:#x}, clear {:#x})",
                        target.shown().display(),
                        rec.set,
                        rec.clear
                    ),
                    source,
                },
            })?;
    }
    Ok(())
}

/// A tmpfs with `tmpcopyup`: mounted writable, filled with a copy of the directory below it
/// (read through a descriptor opened before the tmpfs hides it), then made read-only if asked.
fn mount_copied_up(
    sys: &dyn Syscall,
    root: &RootDir,
    m: &MountPlan,
    index: usize,
    target: &Target,
) -> Result<(), InitError> {
    let dest = &m.destination;
    let open = |t: &Target| {
        rustix::fs::open(
            t.proc_path().as_path(),
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| InitError::Io {
            what: format!(
                "mounts[{index}] ({}): opening for tmpcopyup",
                dest.display()
            ),
            source: e.into(),
        })
    };
    let below = open(target)?;
    let data = (!m.data.is_empty()).then_some(m.data.as_str());
    let writable = m.flags - MsFlags::MS_RDONLY;
    let src = m.source.clone().unwrap_or_else(|| PathBuf::from("tmpfs"));
    mnt_at(sys, Some(&src), target, Some("tmpfs"), writable, data)?;
    let top = open(&resolve(root, dest, Create::Nothing)?)?;
    sys.copy_tree(below.as_fd(), top.as_fd(), dest)
        .map_err(io_err(format!(
            "mounts[{index}] ({}): tmpcopyup",
            dest.display()
        )))?;
    if m.flags.contains(MsFlags::MS_RDONLY) {
        remount(sys, root, dest, m.flags | MsFlags::MS_REMOUNT)?;
    }
    Ok(())
}

/// Files below /proc that may be mounted over (what lxcfs emulates; runc's list).
const PROC_MOUNTABLE: &[&str] = &[
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid",
];

/// Refuses a destination that the rootfs's symlinks turned into a place nothing may be mounted
/// (as runc): procfs and sysfs go on the very directory named, reached without a symlink (a
/// hostile image could otherwise move them), and /proc takes only procfs, and the files inside
/// it only what lxcfs emulates (a mount over /proc/sys/… would undo the read-only paths).
fn check_destination(
    root: &RootDir,
    m: &MountPlan,
    index: usize,
    target: &Target,
) -> Result<(), InitError> {
    let requested: PathBuf =
        Path::new("/").join(m.destination.strip_prefix("/").unwrap_or(&m.destination));
    let real = std::fs::read_link(target.proc_path())
        .ok()
        .and_then(|p| {
            p.strip_prefix(root.path())
                .ok()
                .map(|rel| Path::new("/").join(rel))
        })
        .ok_or_else(|| {
            InitError::Refused(format!(
                "mounts[{index}]: cannot tell where {} is in the rootfs",
                m.destination.display()
            ))
        })?;
    let through = if real == requested {
        String::new()
    } else {
        format!(
            " (through a symlink, it is {} in the rootfs)",
            real.display()
        )
    };
    if (m.fstype == "proc" || m.fstype == "sysfs") && real != requested {
        return Err(InitError::Refused(format!(
            "mounts[{index}]: {} must be mounted on an ordinary directory, and {} is reached \
             through a symlink in the rootfs (to {}); refused, as runc does",
            m.fstype,
            requested.display(),
            real.display()
        )));
    }
    if real == Path::new("/proc") {
        let procfs_bind = m.bind
            && m.source.as_deref().is_some_and(|s| {
                nix::sys::statfs::statfs(s)
                    .is_ok_and(|st| st.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC)
            });
        if m.fstype != "proc" && !procfs_bind {
            return Err(InitError::Refused(format!(
                "mounts[{index}]: {}{through} is /proc, where only procfs may be mounted",
                requested.display()
            )));
        }
    } else if real.starts_with("/proc") && !PROC_MOUNTABLE.iter().any(|p| real == Path::new(p)) {
        return Err(InitError::Refused(format!(
            "mounts[{index}]: {}{through} is inside /proc, where nothing but lxcfs's files ({}) \
             may be mounted",
            requested.display(),
            PROC_MOUNTABLE.join(", ")
        )));
    }
    Ok(())
}

/// A remount (or propagation change) of what was just mounted on `path`. The file opened for the
/// mount is the directory below it, so the path is looked up again, reaching the new mount.
fn remount(
    sys: &dyn Syscall,
    root: &RootDir,
    path: &Path,
    flags: MsFlags,
) -> Result<(), InitError> {
    let target = resolve(root, path, Create::Nothing)?;
    mnt_at(sys, None, &target, NONE, flags, NONE)
}

/// A `cgroup` mount: cgroup2 on a v2 host; on v1 a tmpfs holding one mount per hierarchy.
fn mount_cgroup(
    sys: &dyn Syscall,
    root: &RootDir,
    m: &MountPlan,
    index: usize,
    layout: &Layout,
) -> Result<(), InitError> {
    let dest = &m.destination;
    let target = resolve(root, dest, Create::Dir)?;
    check_destination(root, m, index, &target)?;
    let flags = m.flags - MsFlags::MS_REC;
    match layout {
        Layout::V2 => mnt_at(
            sys,
            Some(Path::new("cgroup2")),
            &target,
            Some("cgroup2"),
            flags,
            NONE,
        ),
        Layout::V1 {
            hierarchies,
            unified,
        } => {
            // The tmpfs stays writable until the per-hierarchy directories exist.
            let tmp_flags = flags - MsFlags::MS_RDONLY;
            mnt_at(
                sys,
                Some(Path::new("tmpfs")),
                &target,
                Some("tmpfs"),
                tmp_flags,
                Some("mode=755"),
            )?;
            for h in hierarchies {
                let Some(name) = h.mountpoint.file_name() else {
                    continue;
                };
                let sub = resolve(root, &dest.join(name), Create::Dir)?;
                let mut data = h.options.join(",");
                if h.options.iter().all(|o| o.starts_with("name=")) {
                    data = format!("none,{data}");
                }
                mnt_at(
                    sys,
                    Some(Path::new("cgroup")),
                    &sub,
                    Some("cgroup"),
                    flags,
                    Some(&data),
                )?;
            }
            if let Some(u) = unified {
                let name = u.file_name().unwrap_or(OsStr::new("unified"));
                let sub = resolve(root, &dest.join(name), Create::Dir)?;
                mnt_at(
                    sys,
                    Some(Path::new("cgroup2")),
                    &sub,
                    Some("cgroup2"),
                    flags,
                    NONE,
                )?;
            }
            if flags.contains(MsFlags::MS_RDONLY) {
                remount(sys, root, dest, flags | MsFlags::MS_REMOUNT)?;
            }
            Ok(())
        }
    }
}

/// A `cgroup` mount in a user namespace that shares the host's cgroup namespace, which only the
/// host may mount cgroupfs in: the container's own cgroup directories bound instead, as runc does
/// (`rel` is the container's cgroup path). On cgroup v1, a tmpfs holds one per hierarchy.
pub fn bind_cgroups(
    sys: &dyn Syscall,
    root: &RootDir,
    m: &MountPlan,
    index: usize,
    layout: &Layout,
    rel: &Path,
) -> Result<(), InitError> {
    let dest = &m.destination;
    let target = resolve(root, dest, Create::Dir)?;
    check_destination(root, m, index, &target)?;
    let flags = m.flags - MsFlags::MS_REC;
    let rel = rel.strip_prefix("/").unwrap_or(rel);
    let bind = |src: &Path, at: &Path| -> Result<(), InitError> {
        let sub = resolve(root, at, Create::Dir)?;
        mnt_at(sys, Some(src), &sub, NONE, MsFlags::MS_BIND, NONE)?;
        if flags.is_empty() {
            return Ok(());
        }
        let remount_flags = flags | MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
        match remount(sys, root, at, remount_flags) {
            // The host's cgroup mounts' own flags are locked in a user namespace: repeat them.
            Err(InitError::Mount {
                source: Errno::EPERM,
                ..
            }) => remount(sys, root, at, remount_flags | existing_flags(sys, src)),
            other => other,
        }
    };
    match layout {
        Layout::V2 => bind(&Path::new(crate::cgroups::CGROUP_ROOT).join(rel), dest),
        Layout::V1 {
            hierarchies,
            unified,
        } => {
            mnt_at(
                sys,
                Some(Path::new("tmpfs")),
                &target,
                Some("tmpfs"),
                flags - MsFlags::MS_RDONLY,
                Some("mode=755"),
            )?;
            let mountpoints = hierarchies.iter().map(|h| &h.mountpoint).chain(unified);
            for mountpoint in mountpoints {
                let Some(name) = mountpoint.file_name() else {
                    continue;
                };
                bind(&mountpoint.join(rel), &dest.join(name))?;
            }
            if flags.contains(MsFlags::MS_RDONLY) {
                remount(sys, root, dest, flags | MsFlags::MS_REMOUNT)?;
            }
            Ok(())
        }
    }
}

/// Default devices (bind mounts of the host's), config devices (mknod) and the /dev symlinks.
pub fn create_devices(sys: &dyn Syscall, root: &RootDir, plan: &Plan) -> Result<(), InitError> {
    let dev = resolve(root, Path::new("/dev"), Create::Dir)?;
    for name in DEFAULT_DEVICES {
        let path = Path::new("/dev").join(name);
        if plan.devices.iter().any(|d| d.path == path) {
            continue;
        }
        let target = resolve(root, &path, Create::File)?;
        mnt_at(sys, Some(&path), &target, NONE, MsFlags::MS_BIND, NONE)?;
    }
    // mknod(2) is not allowed in a user namespace: bind the host's node, as runc and crun do
    // (the plan checked that it is the device the config names, with its mode and owner).
    let in_user_ns = plan.user_namespace().is_some();
    for d in plan.devices.iter().filter(|_| in_user_ns) {
        let target = resolve(root, &d.path, Create::File)?;
        mnt_at(sys, Some(&d.path), &target, NONE, MsFlags::MS_BIND, NONE)?;
    }
    for d in plan.devices.iter().filter(|_| !in_user_ns) {
        let make = |parent: BorrowedFd<'_>, name: &OsStr| {
            sys.mknodat(
                parent,
                name,
                d.kind,
                Mode::from_bits_truncate(d.mode & 0o7777),
                makedev(d.major, d.minor),
            )
        };
        let node = root
            .resolve(&d.path, Create::With(&make))
            .map_err(io_err(format!("mknod {}", d.path.display())))?;
        // mknod's mode is filtered by the umask; set it exactly.
        sys.chmod(&node.proc_path(), d.mode & 0o7777)
            .map_err(io_err(format!("chmod {}", node.shown().display())))?;
        sys.chown(&node.proc_path(), d.uid, d.gid)
            .map_err(io_err(format!("chown {}", node.shown().display())))?;
    }
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
        ("pts/ptmx", "ptmx"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    for (target, name) in links {
        let exists =
            rustix::fs::statat(dev.fd(), name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).is_ok();
        if exists {
            if name != "ptmx" {
                continue;
            }
            // A device node /dev/ptmx would not refer to the container's devpts instance.
            let _ = sys.unlinkat(dev.fd(), OsStr::new(name));
        }
        sys.symlinkat(Path::new(target), dev.fd(), OsStr::new(name))
            .map_err(io_err(format!(
                "symlink {}",
                dev.shown().join(name).display()
            )))?;
    }
    Ok(())
}

/// Mount flags that a bind remount must repeat, or the kernel would clear them.
fn existing_flags(sys: &dyn Syscall, path: &Path) -> MsFlags {
    let Ok(f) = sys.statvfs_flags(path) else {
        return MsFlags::empty();
    };
    let mut flags = MsFlags::empty();
    for (fs, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(fs) {
            flags |= ms;
        }
    }
    flags
}

/// Hides a path (after the pivot): /dev/null over files, an empty read-only tmpfs over
/// directories.
pub fn mask_path(sys: &dyn Syscall, path: &Path) -> Result<(), InitError> {
    match sys.file_kind(path, true) {
        None => Ok(()),
        Some(FileKind::Dir) => mnt(
            sys,
            Some(Path::new("tmpfs")),
            path,
            path,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            NONE,
        ),
        Some(_) => mnt(
            sys,
            Some(Path::new("/dev/null")),
            path,
            path,
            NONE,
            MsFlags::MS_BIND,
            NONE,
        ),
    }
}

/// Makes a path (after the pivot) read-only through a bind mount of itself.
pub fn readonly_path(sys: &dyn Syscall, path: &Path) -> Result<(), InitError> {
    if sys.file_kind(path, false).is_none() {
        return Ok(());
    }
    mnt(
        sys,
        Some(path),
        path,
        path,
        NONE,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        NONE,
    )?;
    remount_readonly(sys, path)
}

pub fn remount_readonly(sys: &dyn Syscall, path: &Path) -> Result<(), InitError> {
    let flags =
        existing_flags(sys, path) | MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    mnt(sys, None, path, path, NONE, flags, NONE)
}

/// The mount holding `path` (the longest mount point that is a prefix of it), per
/// `/proc/self/mountinfo`, and whether it is shared; `/` if it cannot be read.
pub fn parent_mount_of(sys: &dyn Syscall, path: &Path) -> (PathBuf, bool) {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    parent_mount_in(&path, &sys.mountinfo())
}

fn parent_mount_in(path: &Path, mounts: &[procfs::process::MountInfo]) -> (PathBuf, bool) {
    mounts
        .iter()
        .filter(|m| path.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.as_os_str().len())
        .map(|m| (m.mount_point.clone(), crate::mountinfo::is_shared(m)))
        .unwrap_or_else(|| (PathBuf::from("/"), false))
}

#[cfg(test)]
mod mountinfo_tests {
    use super::*;
    use crate::mountinfo::parse;

    #[test]
    fn the_longest_mount_point_above_the_path_holds_it() {
        let mounts = [
            parse("1 0 8:1 / / rw shared:1 - ext4 /dev/sda1 rw"),
            parse("2 1 0:5 / /srv rw - tmpfs tmpfs rw"),
            parse("3 2 0:6 / /srv/a\\040b rw shared:4 - tmpfs tmpfs rw"),
            parse("4 1 0:7 / /srv2 rw shared:5 - tmpfs tmpfs rw"),
        ];
        let at = |p: &str| parent_mount_in(Path::new(p), &mounts);
        assert_eq!(at("/srv/a b/rootfs"), (PathBuf::from("/srv/a b"), true));
        assert_eq!(at("/srv/x/rootfs"), (PathBuf::from("/srv"), false));
        // Whole components only: /srv2 is not below /srv.
        assert_eq!(at("/srv2/rootfs"), (PathBuf::from("/srv2"), true));
        assert_eq!(at("/home"), (PathBuf::from("/"), true));
        assert_eq!(
            parent_mount_in(Path::new("/x"), &[]),
            (PathBuf::from("/"), false)
        );
    }

    #[test]
    fn the_root_holds_everything_else() {
        let sys = crate::syscall::LinuxSyscall;
        assert!(parent_mount_of(&sys, Path::new("/")).0.as_os_str() == "/");
    }
}
