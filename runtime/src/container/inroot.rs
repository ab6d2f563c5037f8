//! Paths inside the container's rootfs, resolved so that no symlink leads out of it, and opened
//! so that mounts land on exactly what was resolved.
//!
//! A hostile rootfs can hold symlinks (`/proc -> /`, `/data -> ../../..`) that would send a mount
//! onto the host if the path were followed naively, and can swap a checked directory for a symlink
//! before it is used. So a path is resolved by the kernel with `openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS)` relative to an fd of the rootfs, missing components are created with
//! *at calls relative to directory fds, and the mount goes onto `/proc/self/fd/<n>` of the opened
//! target (crun's `safe_openat`, runc's `securejoin`). Kernels without openat2 (before 5.6, or a
//! seccomp profile that predates it) fall back to resolving in userspace, as before, and then
//! opening the result without following a final symlink.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use nix::libc;
use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// The kernel's limit on symlinks followed in one lookup (MAXSYMLINKS).
const MAX_LINKS: usize = 40;

/// How paths are resolved inside the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolver {
    /// openat2(RESOLVE_IN_ROOT): the kernel keeps every step inside the root.
    Kernel,
    /// Symlinks followed by hand, then the result opened: for kernels without openat2.
    Userspace,
}

/// What to do when the final component does not exist.
#[derive(Clone, Copy)]
pub enum Create<'a> {
    /// Nothing: a missing path is an error (ENOENT).
    Nothing,
    /// A directory (mode 0755), like every missing component before it. An existing
    /// non-directory is an error (ENOTDIR).
    Dir,
    /// An empty file (mode 0644), for a mount of a file.
    File,
    /// Whatever the function makes at `name` in the directory `parent` (e.g. a device node).
    With(&'a dyn Fn(BorrowedFd<'_>, &OsStr) -> io::Result<()>),
}

/// An opened (O_PATH) file or directory inside the root.
#[derive(Debug)]
pub struct Target {
    fd: OwnedFd,
    /// Where it is on the host, for messages.
    shown: PathBuf,
}

impl Target {
    /// The path that names exactly this file for mount(2), chmod(2), …: `/proc/self/fd/<n>`.
    pub fn proc_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }

    /// The host path it was resolved to, for messages.
    pub fn shown(&self) -> &Path {
        &self.shown
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The root directory that paths are resolved in.
pub struct RootDir {
    path: PathBuf,
    fd: OwnedFd,
    resolver: Resolver,
}

impl RootDir {
    /// Opens `path` as the root; uses openat2 if this kernel has it.
    pub fn open(path: &Path) -> io::Result<Self> {
        let mut root = Self::with_resolver(path, Resolver::Kernel)?;
        match openat2(root.fd.as_fd(), Path::new("."), OFlags::empty()) {
            Ok(_) => {}
            // EPERM: seccomp profiles written before openat2 existed refuse it that way.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) => {
                root.resolver = Resolver::Userspace;
            }
            Err(e) => return Err(e),
        }
        Ok(root)
    }

    pub fn with_resolver(path: &Path, resolver: Resolver) -> io::Result<Self> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self {
            path: path.to_owned(),
            fd,
            resolver,
        })
    }

    /// The root's path on the host.
    pub fn path(&self) -> &Path {
        &self.path
    }

    #[cfg(test)]
    pub fn resolver(&self) -> Resolver {
        self.resolver
    }

    /// Resolves `path` (absolute or not, always taken from the root) inside the root, creating
    /// missing directories on the way and the final component as `create` says.
    pub fn resolve(&self, path: &Path, create: Create<'_>) -> io::Result<Target> {
        let fd = match self.resolver {
            Resolver::Kernel => self.resolve_kernel(path, create)?,
            Resolver::Userspace => self.resolve_userspace(path, create)?,
        };
        if matches!(create, Create::Dir) && !is_dir(&fd)? {
            return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
        }
        Ok(Target {
            fd,
            shown: self.path.join(relative(path)),
        })
    }

    fn resolve_kernel(&self, path: &Path, create: Create<'_>) -> io::Result<OwnedFd> {
        let root = self.fd.as_fd();
        // Most targets exist already: one lookup.
        match openat2(root, &relative(path), OFlags::empty()) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            other => return other,
        }
        // Otherwise one component at a time, each lookup again from the root, so that a
        // symlink or `..` is resolved by the kernel, inside the root, every time.
        let mut pending = parts(path);
        let mut done = PathBuf::new();
        let mut links = 0;
        // The component just made: if it still cannot be found, give up rather than loop.
        let mut made: Option<OsString> = None;
        while let Some(part) = pending.pop_front() {
            let last = pending.is_empty();
            let next = done.join(&part);
            let err = match openat2(root, &next, OFlags::empty()) {
                Ok(fd) if last => return Ok(fd),
                Ok(_) => {
                    done = next;
                    made = None;
                    continue;
                }
                Err(e)
                    if e.raw_os_error() == Some(libc::ENOENT) && made.as_ref() != Some(&part) =>
                {
                    e
                }
                Err(e) => return Err(e),
            };
            let parent = openat2(root, &done, OFlags::DIRECTORY)?;
            let result = match (last, create) {
                (true, Create::Nothing) => return Err(err),
                (true, Create::File) => create_file(parent.as_fd(), &part),
                (true, Create::With(make)) => make(parent.as_fd(), &part),
                (false, _) | (true, Create::Dir) => {
                    rustix::fs::mkdirat(&parent, &*part, Mode::from_bits_truncate(0o755))
                        .map_err(io::Error::from)
                }
            };
            match result {
                // Made: look it up again (from the root, like everything else).
                Ok(()) => {
                    made = Some(part.clone());
                    pending.push_front(part);
                }
                // Something is there that does not resolve: a dangling symlink. Follow it,
                // inside the root, and make what it points to.
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    let target =
                        rustix::fs::readlinkat(&parent, &*part, Vec::new()).map_err(|_| e)?;
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(io::Error::from_raw_os_error(libc::ELOOP));
                    }
                    let target = PathBuf::from(OsString::from_vec(target.into_bytes()));
                    if target.is_absolute() {
                        done = PathBuf::new();
                    }
                    let mut next = parts(&target);
                    next.extend(pending);
                    pending = next;
                    made = None;
                }
                Err(e) => return Err(e),
            }
        }
        // Only `/` (or nothing but `..`) is left.
        openat2(root, &done, OFlags::empty())
    }

    fn resolve_userspace(&self, path: &Path, create: Create<'_>) -> io::Result<OwnedFd> {
        let resolved = resolve_in_root(&self.path, path)?;
        match create {
            Create::Nothing => {}
            Create::Dir => std::fs::create_dir_all(&resolved)?,
            Create::File | Create::With(_) => {
                if let Some(parent) = resolved.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                if std::fs::symlink_metadata(&resolved).is_err() {
                    match create {
                        Create::With(make) => {
                            let parent = rustix::fs::open(
                                resolved.parent().unwrap_or(&self.path),
                                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                                Mode::empty(),
                            )?;
                            make(parent.as_fd(), resolved.file_name().unwrap_or_default())?;
                        }
                        _ => {
                            std::fs::OpenOptions::new()
                                .write(true)
                                .create(true)
                                .truncate(false)
                                .mode(0o644)
                                .open(&resolved)?;
                        }
                    }
                }
            }
        }
        // The result holds no symlink unless one was swapped in meanwhile: do not follow that.
        Ok(rustix::fs::open(
            &resolved,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?)
    }
}

fn is_dir(fd: &OwnedFd) -> io::Result<bool> {
    let st = rustix::fs::fstat(fd)?;
    Ok(rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory)
}

fn create_file(parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    rustix::fs::openat(
        parent,
        name,
        OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )
    .map(drop)
    .map_err(io::Error::from)
}

/// openat2(root, path, O_PATH | flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS); EAGAIN (a rename
/// raced with `..`) is retried.
fn openat2(root: BorrowedFd<'_>, path: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(
            root,
            path,
            OFlags::PATH | OFlags::CLOEXEC | flags,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            Err(Errno::AGAIN) if tries < 16 => tries += 1,
            other => return other.map_err(io::Error::from),
        }
    }
}

/// `path` without its leading `/`.
fn relative(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, Component::RootDir | Component::Prefix(_)))
        .collect()
}

/// The names and `..`s of a path, in order.
fn parts(p: &Path) -> VecDeque<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

/// Resolves `path` inside `root` like the kernel would after chroot: symlinks (absolute or with
/// `..`) can never lead outside `root`. Userspace, so racy against a rootfs that changes
/// meanwhile: only for kernels without openat2.
pub fn resolve_in_root(root: &Path, path: &Path) -> io::Result<PathBuf> {
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
                if links > MAX_LINKS {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{FileTypeExt, symlink};

    use rstest::rstest;

    use super::*;

    /// One entry of a test rootfs.
    enum Entry {
        Dir(&'static str),
        File(&'static str),
        Link(&'static str, &'static str),
    }
    use Entry::{Dir, File, Link};

    /// `<tmp>/rootfs` holding `entries`, next to `<tmp>/outside/secret` that nothing may touch.
    struct Fixture {
        _tmp: tempfile::TempDir,
        outer: PathBuf,
        rootfs: PathBuf,
    }

    impl Fixture {
        fn new(entries: &[Entry]) -> Self {
            let tmp = tempfile::tempdir().expect("tempdir");
            let outer = tmp.path().canonicalize().expect("canonical tempdir");
            let rootfs = outer.join("rootfs");
            std::fs::create_dir_all(outer.join("outside")).expect("mkdir outside");
            std::fs::write(outer.join("outside/secret"), "secret").expect("write secret");
            std::fs::create_dir(&rootfs).expect("mkdir rootfs");
            for entry in entries {
                let (path, link) = match entry {
                    Dir(p) => (rootfs.join(p), None),
                    File(p) => (rootfs.join(p), None),
                    Link(p, to) => (rootfs.join(p), Some(to)),
                };
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).expect("mkdir parent");
                }
                match (entry, link) {
                    (Dir(_), _) => std::fs::create_dir_all(&path).expect("mkdir"),
                    (File(_), _) => std::fs::write(&path, "").expect("write"),
                    (_, Some(to)) => symlink(to, &path).expect("symlink"),
                    _ => unreachable!(),
                }
            }
            Self {
                _tmp: tmp,
                outer,
                rootfs,
            }
        }

        fn resolve(
            &self,
            resolver: Resolver,
            path: &str,
            create: Create<'_>,
        ) -> io::Result<PathBuf> {
            let root = RootDir::with_resolver(&self.rootfs, resolver).expect("open rootfs");
            let target = root.resolve(Path::new(path), create)?;
            Ok(std::fs::read_link(target.proc_path()).expect("readlink the target"))
        }

        /// Nothing outside the rootfs was created or changed.
        fn assert_outside_untouched(&self) {
            let mut outside: Vec<_> = std::fs::read_dir(self.outer.join("outside"))
                .expect("read outside")
                .map(|e| e.expect("entry").file_name())
                .collect();
            outside.sort();
            assert_eq!(outside, [OsString::from("secret")]);
            assert_eq!(
                std::fs::read_to_string(self.outer.join("outside/secret")).expect("secret"),
                "secret"
            );
            let mut top: Vec<_> = std::fs::read_dir(&self.outer)
                .expect("read tmp")
                .map(|e| e.expect("entry").file_name())
                .collect();
            top.sort();
            assert_eq!(top, [OsString::from("outside"), OsString::from("rootfs")]);
        }
    }

    #[derive(Debug, Clone, Copy)]
    enum Want {
        Dir,
        File,
        Any,
    }

    #[rstest]
    #[case::existing_dir(&[Dir("a/b")], "/a/b", "Nothing", "a/b", Want::Dir)]
    #[case::the_root_itself(&[], "/", "Nothing", "", Want::Dir)]
    #[case::relative_request(&[Dir("a")], "a", "Nothing", "a", Want::Dir)]
    #[case::missing_dirs_are_made(&[], "/x/y/z", "Dir", "x/y/z", Want::Dir)]
    #[case::missing_file_is_made(&[], "/etc/hosts", "File", "etc/hosts", Want::File)]
    #[case::existing_file(&[File("etc/hosts")], "/etc/hosts", "File", "etc/hosts", Want::File)]
    #[case::absolute_symlink(&[Dir("target/dir"), Link("link", "/target/dir")], "/link/sub", "Dir", "target/dir/sub", Want::Dir)]
    #[case::relative_dotdot_symlink(&[Dir("a"), Dir("b"), Link("a/l", "../b")], "/a/l/c", "Dir", "b/c", Want::Dir)]
    #[case::relative_symlink_escaping_the_rootfs(&[Link("esc", "../../../../outside")], "/esc/x", "Dir", "outside/x", Want::Dir)]
    #[case::absolute_symlink_to_a_host_file(&[Link("passwd", "/outside/secret")], "/passwd", "File", "outside/secret", Want::File)]
    #[case::symlink_to_the_host_root(&[Link("proc", "/")], "/proc", "Dir", "", Want::Dir)]
    #[case::symlink_escape_in_the_middle(&[Dir("a"), Link("a/up", "../../..")], "/a/up/outside/secret", "File", "outside/secret", Want::File)]
    #[case::dotdot_above_the_root_stays(&[], "/../../x", "Dir", "x", Want::Dir)]
    #[case::dotdot_after_a_symlink_is_physical(&[Dir("b/c"), Link("a", "/b/c")], "/a/../d", "Dir", "b/d", Want::Dir)]
    #[case::dangling_absolute_symlink(&[Link("d", "/made/here")], "/d", "Dir", "made/here", Want::Dir)]
    #[case::dangling_relative_symlink(&[Dir("a"), Link("a/d", "../m")], "/a/d/f", "File", "m/f", Want::File)]
    #[case::dangling_escaping_symlink(&[Link("d", "../../outside/new")], "/d", "File", "outside/new", Want::File)]
    #[case::final_symlink_to_a_file(&[File("etc/real"), Link("etc/link", "real")], "/etc/link", "File", "etc/real", Want::File)]
    // A file is wanted but a directory is there: opened as it is; the mount reports the mismatch.
    #[case::directory_where_a_file_is_wanted(&[Dir("d")], "/d", "File", "d", Want::Dir)]
    #[case::device_node_made_by_the_caller(&[], "/dev/pipe", "Fifo", "dev/pipe", Want::Any)]
    fn resolves_inside_the_root(
        #[values(Resolver::Kernel, Resolver::Userspace)] resolver: Resolver,
        #[case] entries: &[Entry],
        #[case] path: &str,
        #[case] create: &str,
        #[case] expected: &str,
        #[case] want: Want,
    ) {
        let f = Fixture::new(entries);
        let fifo = |parent: BorrowedFd<'_>, name: &OsStr| {
            rustix::fs::mknodat(
                parent,
                name,
                rustix::fs::FileType::Fifo,
                Mode::from_bits_truncate(0o600),
                0,
            )
            .map_err(io::Error::from)
        };
        let create = match create {
            "Nothing" => Create::Nothing,
            "Dir" => Create::Dir,
            "File" => Create::File,
            _ => Create::With(&fifo),
        };
        let got = f.resolve(resolver, path, create).expect("resolves");
        let expected = if expected.is_empty() {
            f.rootfs.clone()
        } else {
            f.rootfs.join(expected)
        };
        assert_eq!(got, expected);
        let md = std::fs::metadata(&got).expect("it exists");
        match want {
            Want::Dir => assert!(md.is_dir()),
            Want::File => assert!(md.is_file()),
            Want::Any => assert!(md.file_type().is_fifo()),
        }
        f.assert_outside_untouched();
    }

    #[rstest]
    #[case::missing_without_create(&[], "/nope", "Nothing", &[libc::ENOENT])]
    #[case::dangling_without_create(&[Link("d", "/nope")], "/d", "Nothing", &[libc::ENOENT])]
    #[case::symlink_loop(&[Link("a", "b"), Link("b", "a")], "/a/x", "Dir", &[libc::ELOOP])]
    #[case::symlink_to_itself(&[Link("l", "l")], "/l", "Nothing", &[libc::ELOOP])]
    #[case::dangling_loop(&[Link("a", "/b/x"), Link("b", "/a/y")], "/a", "Dir", &[libc::ELOOP])]
    #[case::directory_wanted_where_a_file_is(&[File("f")], "/f", "Dir", &[libc::ENOTDIR, libc::EEXIST])]
    #[case::path_through_a_file(&[File("f")], "/f/x", "Dir", &[libc::ENOTDIR, libc::EEXIST])]
    fn refuses(
        #[values(Resolver::Kernel, Resolver::Userspace)] resolver: Resolver,
        #[case] entries: &[Entry],
        #[case] path: &str,
        #[case] create: &str,
        #[case] errnos: &[i32],
    ) {
        let f = Fixture::new(entries);
        let create = match create {
            "Nothing" => Create::Nothing,
            _ => Create::Dir,
        };
        let err = f.resolve(resolver, path, create).expect_err("refused");
        assert!(
            err.raw_os_error().is_some_and(|e| errnos.contains(&e)),
            "{err} is not one of {errnos:?}"
        );
        f.assert_outside_untouched();
    }

    #[rstest]
    fn many_missing_components_are_not_mistaken_for_a_loop(
        #[values(Resolver::Kernel, Resolver::Userspace)] resolver: Resolver,
    ) {
        let f = Fixture::new(&[]);
        let deep: String = (0..60).map(|i| format!("/d{i}")).collect();
        let got = f.resolve(resolver, &deep, Create::Dir).expect("resolves");
        assert_eq!(got, f.rootfs.join(deep.trim_start_matches('/')));
    }

    #[rstest]
    fn a_maker_that_makes_nothing_fails_instead_of_looping(
        #[values(Resolver::Kernel, Resolver::Userspace)] resolver: Resolver,
    ) {
        let f = Fixture::new(&[]);
        let nothing = |_: BorrowedFd<'_>, _: &OsStr| Ok(());
        let err = f
            .resolve(resolver, "/dev/x", Create::With(&nothing))
            .expect_err("nothing to open");
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    }

    #[test]
    fn this_kernel_has_openat2() {
        let f = Fixture::new(&[]);
        let root = RootDir::open(&f.rootfs).expect("open");
        assert_eq!(root.resolver(), Resolver::Kernel);
    }

    #[test]
    fn targets_show_their_host_path() {
        let f = Fixture::new(&[Dir("a")]);
        let root = RootDir::open(&f.rootfs).expect("open");
        let target = root.resolve(Path::new("/a"), Create::Nothing).expect("a");
        assert_eq!(target.shown(), f.rootfs.join("a"));
        assert!(target.proc_path().starts_with("/proc/self/fd/"));
    }
}
