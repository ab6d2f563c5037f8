//! Mount helpers for the container's root filesystem. Only ever called inside the container's
//! mount namespace, after "/" was made a recursive slave, so nothing here reaches the host.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MsFlags, mount};
use nix::sys::stat::{Mode, makedev, mknod};
use nix::sys::statvfs::{FsFlags, statvfs};

use super::init::InitError;
use crate::cgroups::Layout;
use crate::spec::{MountPlan, Plan};

const NONE: Option<&str> = None;

/// Default devices, bind-mounted from the host (works with or without CAP_MKNOD / user ns).
const DEFAULT_DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

fn mnt(
    src: Option<&Path>,
    dst: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), InitError> {
    mount(src, dst, fstype, flags, data).map_err(|source| InitError::Mount {
        what: format!(
            "mount {} on {} (type {}, flags {flags:?}, data {:?})",
            src.map(|s| s.display().to_string()).unwrap_or_default(),
            dst.display(),
            fstype.unwrap_or(""),
            data.unwrap_or("")
        ),
        source,
    })
}

fn io_err(what: String) -> impl FnOnce(io::Error) -> InitError {
    move |source| InitError::Io { what, source }
}

/// Resolves `path` inside `root` like the kernel would after chroot: symlinks (absolute or with
/// `..`) can never lead outside `root`.
pub fn resolve_in_root(root: &Path, path: &Path) -> io::Result<PathBuf> {
    fn parts(p: &Path) -> VecDeque<OsString> {
        p.components()
            .filter_map(|c| match c {
                Component::Normal(s) => Some(s.to_owned()),
                Component::ParentDir => Some("..".into()),
                _ => None,
            })
            .collect()
    }
    let mut resolved = PathBuf::new();
    let mut pending = parts(path);
    let mut links = 0;
    while let Some(part) = pending.pop_front() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&part);
        let full = root.join(&candidate);
        match std::fs::symlink_metadata(&full) {
            Ok(md) if md.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return Err(io::Error::from_raw_os_error(nix::libc::ELOOP));
                }
                let target = std::fs::read_link(&full)?;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                let mut next = parts(&target);
                next.extend(pending);
                pending = next;
            }
            _ => resolved = candidate,
        }
    }
    Ok(root.join(resolved))
}

/// Makes sure a mount target exists: a directory, or an empty file when mounting a file.
fn ensure_target(path: &Path, dir: bool) -> Result<(), InitError> {
    if dir {
        return std::fs::create_dir_all(path).map_err(io_err(format!("mkdir {}", path.display())));
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_err(format!("mkdir {}", parent.display())))?;
    }
    if path.exists() {
        return Ok(());
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)
        .map(drop)
        .map_err(io_err(format!("create {}", path.display())))
}

/// Mounts one entry of config.json's `mounts` below `rootfs`.
pub fn mount_entry(rootfs: &Path, m: &MountPlan, layout: &Layout) -> Result<(), InitError> {
    let dest = resolve_in_root(rootfs, &m.destination)
        .map_err(io_err(format!("resolve {}", m.destination.display())))?;
    if m.fstype == "cgroup" || m.fstype == "cgroup2" {
        mount_cgroup(&dest, m, layout)?;
    } else if m.bind {
        let src = m.source.as_deref().unwrap_or(Path::new(""));
        let is_dir = std::fs::metadata(src).map(|md| md.is_dir()).unwrap_or(true);
        ensure_target(&dest, is_dir)?;
        mnt(
            Some(src),
            &dest,
            NONE,
            MsFlags::MS_BIND | (m.flags & MsFlags::MS_REC),
            NONE,
        )?;
        // ro/nosuid/... are ignored on the initial bind; they only take effect on a remount.
        let extra = m.flags - MsFlags::MS_REC;
        if !extra.is_empty() {
            mnt(
                None,
                &dest,
                NONE,
                extra | MsFlags::MS_BIND | MsFlags::MS_REMOUNT,
                NONE,
            )?;
        }
    } else {
        ensure_target(&dest, true)?;
        let src = m.source.clone().unwrap_or_else(|| PathBuf::from(&m.fstype));
        let data = (!m.data.is_empty()).then_some(m.data.as_str());
        let res = mnt(Some(&src), &dest, Some(&m.fstype), m.flags, data);
        match res {
            // sysfs can only be mounted by the owner of the net namespace: fall back to a
            // recursive bind of the host's /sys like runc.
            Err(InitError::Mount {
                source: Errno::EPERM,
                ..
            }) if m.fstype == "sysfs" => {
                mnt(
                    Some(Path::new("/sys")),
                    &dest,
                    NONE,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    NONE,
                )?;
                if !m.flags.is_empty() {
                    mnt(
                        None,
                        &dest,
                        NONE,
                        m.flags | MsFlags::MS_BIND | MsFlags::MS_REMOUNT,
                        NONE,
                    )?;
                }
            }
            other => other?,
        }
    }
    for p in &m.propagation {
        mnt(None, &dest, NONE, *p, NONE)?;
    }
    Ok(())
}

/// A `cgroup` mount: cgroup2 on a v2 host; on v1 a tmpfs holding one mount per hierarchy.
fn mount_cgroup(dest: &Path, m: &MountPlan, layout: &Layout) -> Result<(), InitError> {
    ensure_target(dest, true)?;
    let flags = m.flags - MsFlags::MS_REC;
    match layout {
        Layout::V2 => mnt(
            Some(Path::new("cgroup2")),
            dest,
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
            mnt(
                Some(Path::new("tmpfs")),
                dest,
                Some("tmpfs"),
                tmp_flags,
                Some("mode=755"),
            )?;
            for h in hierarchies {
                let Some(name) = h.mountpoint.file_name() else {
                    continue;
                };
                let sub = dest.join(name);
                ensure_target(&sub, true)?;
                let mut data = h.options.join(",");
                if h.options.iter().all(|o| o.starts_with("name=")) {
                    data = format!("none,{data}");
                }
                mnt(
                    Some(Path::new("cgroup")),
                    &sub,
                    Some("cgroup"),
                    flags,
                    Some(&data),
                )?;
            }
            if let Some(u) = unified {
                let name = u
                    .file_name()
                    .map(PathBuf::from)
                    .unwrap_or_else(|| "unified".into());
                let sub = dest.join(name);
                ensure_target(&sub, true)?;
                mnt(
                    Some(Path::new("cgroup2")),
                    &sub,
                    Some("cgroup2"),
                    flags,
                    NONE,
                )?;
            }
            if flags.contains(MsFlags::MS_RDONLY) {
                mnt(None, dest, NONE, flags | MsFlags::MS_REMOUNT, NONE)?;
            }
            Ok(())
        }
    }
}

/// Default devices (bind mounts of the host's), config devices (mknod) and the /dev symlinks.
pub fn create_devices(rootfs: &Path, plan: &Plan) -> Result<(), InitError> {
    let dev = resolve_in_root(rootfs, Path::new("/dev")).map_err(io_err("resolve /dev".into()))?;
    ensure_target(&dev, true)?;
    for name in DEFAULT_DEVICES {
        let path = Path::new("/dev").join(name);
        if plan.devices.iter().any(|d| d.path == path) {
            continue;
        }
        let target = dev.join(name);
        ensure_target(&target, false)?;
        mnt(Some(&path), &target, NONE, MsFlags::MS_BIND, NONE)?;
    }
    for d in &plan.devices {
        let target = resolve_in_root(rootfs, &d.path)
            .map_err(io_err(format!("resolve {}", d.path.display())))?;
        if let Some(parent) = target.parent() {
            ensure_target(parent, true)?;
        }
        match mknod(
            &target,
            d.kind,
            Mode::from_bits_truncate(d.mode & 0o7777),
            makedev(d.major, d.minor),
        ) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(source) => {
                return Err(InitError::Syscall {
                    what: format!("mknod {}", target.display()),
                    source,
                });
            }
        }
        // mknod's mode is filtered by the umask; set it exactly.
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(d.mode & 0o7777))
            .map_err(io_err(format!("chmod {}", target.display())))?;
        std::os::unix::fs::chown(&target, Some(d.uid), Some(d.gid))
            .map_err(io_err(format!("chown {}", target.display())))?;
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
        let link = dev.join(name);
        if std::fs::symlink_metadata(&link).is_ok() {
            if name != "ptmx" {
                continue;
            }
            // A device node /dev/ptmx would not refer to the container's devpts instance.
            let _ = std::fs::remove_file(&link);
        }
        std::os::unix::fs::symlink(target, &link)
            .map_err(io_err(format!("symlink {}", link.display())))?;
    }
    Ok(())
}

/// Mount flags that a bind remount must repeat, or the kernel would clear them.
fn existing_flags(path: &Path) -> MsFlags {
    let Ok(st) = statvfs(path) else {
        return MsFlags::empty();
    };
    let f = st.flags();
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

/// Hides a path: /dev/null over files, an empty read-only tmpfs over directories.
pub fn mask_path(path: &Path) -> Result<(), InitError> {
    let Ok(md) = std::fs::metadata(path) else {
        return Ok(());
    };
    if md.is_dir() {
        mnt(
            Some(Path::new("tmpfs")),
            path,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            NONE,
        )
    } else {
        mnt(
            Some(Path::new("/dev/null")),
            path,
            NONE,
            MsFlags::MS_BIND,
            NONE,
        )
    }
}

/// Makes a path read-only through a bind mount of itself.
pub fn readonly_path(path: &Path) -> Result<(), InitError> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    mnt(
        Some(path),
        path,
        NONE,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        NONE,
    )?;
    remount_readonly(path)
}

pub fn remount_readonly(path: &Path) -> Result<(), InitError> {
    let flags = existing_flags(path) | MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    mnt(None, path, NONE, flags, NONE)
}

/// The mount holding `path` (the longest mount point that is a prefix of it), per
/// `/proc/self/mountinfo`, and whether it is shared; `/` if it cannot be read.
pub fn parent_mount_of(path: &Path) -> (PathBuf, bool) {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    parent_mount_in(&path, &crate::mountinfo::own().unwrap_or_default())
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
        assert!(parent_mount_of(Path::new("/")).0.as_os_str() == "/");
    }
}
