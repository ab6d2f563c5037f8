//! `tmpcopyup` (runc's mount extension, which podman's `--read-only` asks for): the tmpfs
//! mounted on a directory starts with a copy of what the directory held, so `/tmp` or `/run` keep
//! the image's content while becoming writable.
//!
//! Everything goes through descriptors, never paths: the source is the directory below the new
//! mount (opened before it), nothing is followed (`O_NOFOLLOW`; a symlink is copied as a
//! symlink), and every file is created anew (`O_EXCL`), so a hostile image cannot make the copy
//! read or write outside the two trees. Directories, regular files, symlinks and FIFOs are copied
//! with their mode and owner; a device node or a socket is refused by name, never skipped.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, Stat, Timestamps};

/// Copies the contents of directory `from` into directory `to`; `shown` names `from` in errors.
pub fn copy_tree(from: BorrowedFd<'_>, to: BorrowedFd<'_>, shown: &Path) -> io::Result<()> {
    let context = |what: &str, path: &Path| {
        let path = path.display().to_string();
        let what = what.to_owned();
        move |e: rustix::io::Errno| {
            let e = io::Error::from(e);
            io::Error::new(e.kind(), format!("tmpcopyup: {what} {path}: {e}"))
        }
    };
    let mut dir = Dir::read_from(from).map_err(context("listing", shown))?;
    while let Some(entry) = dir.read() {
        let entry = entry.map_err(context("listing", shown))?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if name == "." || name == ".." {
            continue;
        }
        let path: PathBuf = shown.join(name);
        let stat = rustix::fs::statat(from, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(context("reading", &path))?;
        let mode = Mode::from_raw_mode(stat.st_mode) & Mode::from_raw_mode(0o7777);
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::Directory => {
                rustix::fs::mkdirat(to, name, Mode::RWXU).map_err(context("creating", &path))?;
                let inner_from = open_dir(from, name).map_err(context("opening", &path))?;
                let inner_to = open_dir(to, name).map_err(context("opening the copy of", &path))?;
                copy_tree(inner_from.as_fd(), inner_to.as_fd(), &path)?;
                finish(inner_to.as_fd(), &stat, mode).map_err(context("copying", &path))?;
            }
            FileType::RegularFile => {
                let source = rustix::fs::openat(
                    from,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(context("opening", &path))?;
                let copy = rustix::fs::openat(
                    to,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::RUSR | Mode::WUSR,
                )
                .map_err(context("creating the copy of", &path))?;
                let (mut source, mut copy) =
                    (std::fs::File::from(source), std::fs::File::from(copy));
                io::copy(&mut source, &mut copy).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("tmpcopyup: copying {}: {e}", path.display()),
                    )
                })?;
                finish(copy.as_fd(), &stat, mode).map_err(context("copying", &path))?;
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(from, name, Vec::new())
                    .map_err(context("reading", &path))?;
                rustix::fs::symlinkat(target.as_c_str(), to, name)
                    .map_err(context("creating the copy of", &path))?;
                rustix::fs::chownat(
                    to,
                    name,
                    Some(rustix::fs::Uid::from_raw(stat.st_uid)),
                    Some(rustix::fs::Gid::from_raw(stat.st_gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(context("owning the copy of", &path))?;
            }
            FileType::Fifo => {
                rustix::fs::mknodat(to, name, FileType::Fifo, Mode::RUSR | Mode::WUSR, 0)
                    .map_err(context("creating the copy of", &path))?;
                let copy = rustix::fs::openat(
                    to,
                    name,
                    OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(context("opening the copy of", &path))?;
                // fchown/fchmod do not take O_PATH descriptors: through the fd's proc path.
                let proc = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&copy));
                rustix::fs::chown(
                    proc.as_str(),
                    Some(rustix::fs::Uid::from_raw(stat.st_uid)),
                    Some(rustix::fs::Gid::from_raw(stat.st_gid)),
                )
                .and_then(|()| rustix::fs::chmod(proc.as_str(), mode))
                .map_err(context("owning the copy of", &path))?;
            }
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!(
                        "tmpcopyup: {} is a {other:?}, which palisade-runtime does not copy into a tmpfs",
                        path.display()
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn open_dir(dir: BorrowedFd<'_>, name: &OsStr) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// The copy's owner, mode (after the owner: chown clears set-id bits) and times.
fn finish(copy: BorrowedFd<'_>, stat: &Stat, mode: Mode) -> rustix::io::Result<()> {
    rustix::fs::fchown(
        copy,
        Some(rustix::fs::Uid::from_raw(stat.st_uid)),
        Some(rustix::fs::Gid::from_raw(stat.st_gid)),
    )?;
    rustix::fs::fchmod(copy, mode)?;
    let times = Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: stat.st_atime,
            tv_nsec: stat.st_atime_nsec as _,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: stat.st_mtime,
            tv_nsec: stat.st_mtime_nsec as _,
        },
    };
    rustix::fs::futimens(copy, &times)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

    use super::*;

    fn open(path: &Path) -> OwnedFd {
        rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).expect("open")
    }

    #[test]
    fn copies_the_tree_with_modes_links_and_fifos() {
        let from = tempfile::tempdir().expect("tempdir");
        let to = tempfile::tempdir().expect("tempdir");
        let base = from.path();
        std::fs::create_dir_all(base.join("a/b")).expect("dirs");
        std::fs::write(base.join("a/b/file"), "content").expect("file");
        std::fs::set_permissions(
            base.join("a/b/file"),
            std::fs::Permissions::from_mode(0o640),
        )
        .expect("chmod");
        std::fs::set_permissions(base.join("a"), std::fs::Permissions::from_mode(0o1777))
            .expect("chmod");
        std::os::unix::fs::symlink("/etc/passwd", base.join("link")).expect("symlink");
        nix::unistd::mkfifo(
            &base.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o620),
        )
        .expect("fifo");
        // Not through mkfifo's mode, which the umask narrows.
        std::fs::set_permissions(base.join("fifo"), std::fs::Permissions::from_mode(0o620))
            .expect("chmod");

        copy_tree(open(base).as_fd(), open(to.path()).as_fd(), base).expect("copied");

        let copy = to.path();
        assert_eq!(
            std::fs::read_to_string(copy.join("a/b/file")).expect("read"),
            "content"
        );
        let mode = |p: &str| {
            std::fs::symlink_metadata(copy.join(p))
                .expect("stat")
                .mode()
                & 0o7777
        };
        assert_eq!(mode("a/b/file"), 0o640);
        assert_eq!(mode("a"), 0o1777);
        assert_eq!(mode("fifo"), 0o620);
        assert_eq!(
            std::fs::read_link(copy.join("link")).expect("a symlink, not followed"),
            Path::new("/etc/passwd")
        );
        assert!(
            std::fs::symlink_metadata(copy.join("fifo"))
                .expect("stat")
                .file_type()
                .is_fifo()
        );
        let mtime = |root: &Path| {
            std::fs::metadata(root.join("a/b/file"))
                .expect("stat")
                .mtime()
        };
        assert_eq!(mtime(copy), mtime(base));
    }

    #[test]
    fn a_socket_is_refused_by_name() {
        let from = tempfile::tempdir().expect("tempdir");
        let to = tempfile::tempdir().expect("tempdir");
        let _listener =
            std::os::unix::net::UnixListener::bind(from.path().join("sock")).expect("socket");
        let err = copy_tree(
            open(from.path()).as_fd(),
            open(to.path()).as_fd(),
            Path::new("/run"),
        )
        .expect_err("refused");
        assert_eq!(err.kind(), io::ErrorKind::Unsupported);
        assert!(err.to_string().contains("/run/sock"), "{err}");
    }

    #[test]
    fn an_existing_name_in_the_copy_is_an_error_not_an_overwrite() {
        let from = tempfile::tempdir().expect("tempdir");
        let to = tempfile::tempdir().expect("tempdir");
        std::fs::write(from.path().join("f"), "new").expect("file");
        std::fs::write(to.path().join("f"), "old").expect("file");
        let err = copy_tree(
            open(from.path()).as_fd(),
            open(to.path()).as_fd(),
            Path::new("/tmp"),
        )
        .expect_err("refused");
        assert!(err.to_string().contains("/tmp/f"), "{err}");
        assert_eq!(
            std::fs::read_to_string(to.path().join("f")).expect("read"),
            "old"
        );
    }
}
