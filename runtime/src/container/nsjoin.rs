//! Joining existing namespaces: those `create` is given by path, and every namespace of the
//! container's init for `exec`.
//!
//! The user namespace is joined first, so that the namespaces it owns are entered with the
//! privileges it gives. Namespaces it does not own (a container that shares the host's network
//! namespace, say) are entered before it, while the runtime still has its host privileges over
//! their owner: after joining the user namespace it has none left outside it. Every descriptor is
//! opened before the first setns(2), and the mount namespace comes last in its group, as in runc:
//! joining it changes what paths name.

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;

use super::init::InitError;
use crate::sys;
use crate::syscall::Syscall;

/// Namespace types in the order they are joined within a group.
const ORDER: [CloneFlags; 8] = [
    CloneFlags::CLONE_NEWUSER,
    CloneFlags::CLONE_NEWIPC,
    CloneFlags::CLONE_NEWUTS,
    CloneFlags::CLONE_NEWNET,
    CloneFlags::CLONE_NEWPID,
    CloneFlags::CLONE_NEWCGROUP,
    // CLONE_NEWTIME (nix 0.30 has no constant for it).
    CloneFlags::from_bits_retain(0x80),
    CloneFlags::CLONE_NEWNS,
];

/// An opened namespace file.
pub struct NsFile {
    pub flag: CloneFlags,
    pub file: File,
    /// Where it was opened, for messages.
    pub path: PathBuf,
}

impl NsFile {
    pub fn open(flag: CloneFlags, path: &Path) -> Result<Self, InitError> {
        let file = File::open(path).map_err(|source| InitError::Io {
            what: format!("open namespace {}", path.display()),
            source,
        })?;
        Ok(Self {
            flag,
            file,
            path: path.to_owned(),
        })
    }

    /// (device, inode): the identity of the namespace.
    pub fn id(&self) -> Option<(u64, u64)> {
        ns_id(&self.file)
    }
}

pub fn ns_id(file: &File) -> Option<(u64, u64)> {
    file.metadata().ok().map(|m| (m.dev(), m.ino()))
}

fn rank(flag: CloneFlags) -> usize {
    ORDER.iter().position(|f| *f == flag).unwrap_or(ORDER.len())
}

/// The order to join namespaces in, as indices into `namespaces`, whose entries are (type,
/// owned by the user namespace being joined). Not owned, in [`ORDER`]; then the user namespace;
/// then the owned ones, in [`ORDER`].
pub fn join_order(namespaces: &[(CloneFlags, bool)]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..namespaces.len()).collect();
    order.sort_by_key(|&i| {
        let (flag, owned) = namespaces[i];
        let group = if flag == CloneFlags::CLONE_NEWUSER {
            1
        } else if owned {
            2
        } else {
            0
        };
        (group, rank(flag), i)
    });
    order
}

/// Whether the user namespace `user` owns the namespace `ns`. If the kernel cannot say (before
/// Linux 4.9), it is assumed to, which is the order runc always uses.
fn owned_by(ns: &File, user: &File) -> bool {
    match sys::ns_owner(ns.as_fd()) {
        Ok(owner) => ns_id(&File::from(owner)) == ns_id(user),
        Err(_) => true,
    }
}

/// setns(2) into every namespace of `files`, in [`join_order`]. `at_user` runs once, right after
/// the user namespace is joined, or after the others if there is none to join (where `create`
/// unshares a new one).
pub fn join(
    sys: &dyn Syscall,
    files: &[NsFile],
    at_user: &mut dyn FnMut() -> Result<(), InitError>,
) -> Result<(), InitError> {
    let user = files.iter().find(|f| f.flag == CloneFlags::CLONE_NEWUSER);
    let keys: Vec<(CloneFlags, bool)> = files
        .iter()
        .map(|f| {
            let owned = match user {
                Some(u) if f.flag != CloneFlags::CLONE_NEWUSER => owned_by(&f.file, &u.file),
                _ => false,
            };
            (f.flag, owned)
        })
        .collect();
    let mut user_done = false;
    for i in join_order(&keys) {
        let f = &files[i];
        sys.setns(f.file.as_fd(), f.flag)
            .map_err(|source| InitError::Syscall {
                what: format!("setns {}", f.path.display()),
                source,
            })?;
        if f.flag == CloneFlags::CLONE_NEWUSER {
            at_user()?;
            user_done = true;
        }
    }
    if !user_done {
        at_user()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const USER: CloneFlags = CloneFlags::CLONE_NEWUSER;
    const MNT: CloneFlags = CloneFlags::CLONE_NEWNS;
    const NET: CloneFlags = CloneFlags::CLONE_NEWNET;
    const PID: CloneFlags = CloneFlags::CLONE_NEWPID;
    const IPC: CloneFlags = CloneFlags::CLONE_NEWIPC;
    const CGROUP: CloneFlags = CloneFlags::CLONE_NEWCGROUP;
    const TIME: CloneFlags = CloneFlags::from_bits_retain(0x80);

    fn ordered(namespaces: &[(CloneFlags, bool)]) -> Vec<CloneFlags> {
        join_order(namespaces)
            .into_iter()
            .map(|i| namespaces[i].0)
            .collect()
    }

    #[rstest]
    // An exec into a container with its own user namespace: it owns everything else.
    #[case::user_first_mount_last(
        &[(MNT, true), (NET, true), (USER, false), (PID, true), (TIME, true), (CGROUP, true), (IPC, true)],
        &[USER, IPC, NET, PID, CGROUP, TIME, MNT]
    )]
    // The container shares a network namespace the host's user namespace owns: joined first.
    #[case::host_owned_before_user(
        &[(MNT, true), (NET, false), (USER, false), (PID, true)],
        &[NET, USER, PID, MNT]
    )]
    // No user namespace to join (a new one, or the host's): mount still last.
    #[case::without_user(&[(MNT, false), (NET, false), (IPC, false)], &[IPC, NET, MNT])]
    #[case::empty(&[], &[])]
    fn namespaces_are_joined_user_first_and_mount_last(
        #[case] namespaces: &[(CloneFlags, bool)],
        #[case] expected: &[CloneFlags],
    ) {
        assert_eq!(ordered(namespaces), expected);
    }

    #[test]
    fn this_process_s_namespaces_are_owned_by_its_user_namespace() {
        let user = File::open("/proc/self/ns/user").expect("open user ns");
        let net = File::open("/proc/self/ns/net").expect("open net ns");
        assert!(owned_by(&net, &user));
    }
}
