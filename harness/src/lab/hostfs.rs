//! Host-side filesystem mechanism for containment scenarios: marker files, mount tables, and
//! guards that undo host-side mounts whatever happens.

use std::path::{Path, PathBuf};

use crate::error::HarnessError;
use crate::run::env::RunEnv;

/// A file on the host, outside every bundle, holding a random token: if a container can read the
/// token, it can reach the host's filesystem. Removed on drop.
pub struct Marker {
    pub path: PathBuf,
    pub token: String,
}

impl Marker {
    /// Writes `<run dir>/marker-<what>` with a fresh random token.
    pub fn plant(run: &RunEnv, what: &str) -> Result<Marker, HarnessError> {
        let io = |what: &'static str| move |source| HarnessError::Io { what, source };
        let token = std::fs::read_to_string("/proc/sys/kernel/random/uuid")
            .map_err(io("reading a random token"))?
            .trim()
            .to_owned();
        let path = run.dir.join(format!("marker-{what}-{token}"));
        std::fs::write(&path, &token).map_err(io("writing the host marker"))?;
        Ok(Marker { path, token })
    }

    /// The marker's host path, as a string to hand to the probe.
    pub fn host_path(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }
}

impl Drop for Marker {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

pub use palisade_common::mountinfo::{MountInfo, parse};

/// The mount table of the calling thread's mount namespace (the "host" side of a scenario).
pub fn thread_mounts() -> Result<Vec<MountInfo>, HarnessError> {
    palisade_common::mountinfo::read("thread-self").map_err(|message| HarnessError::Io {
        what: "reading the host's mount table",
        source: std::io::Error::other(message),
    })
}

/// The mount points at or below `dir` in the mount namespace of `/proc/<pid>` (`self`, a pid),
/// deepest first so that each can be detached before its parent.
pub fn mount_points_below(pid: &str, dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut points: Vec<PathBuf> = palisade_common::mountinfo::read(pid)?
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    Ok(points)
}

/// Where, in `mounts`, something with source `tag` is mounted.
pub fn mount_points_of(mounts: &[MountInfo], tag: &str) -> Vec<PathBuf> {
    mounts
        .iter()
        .filter(|m| m.mount_source.as_deref() == Some(tag))
        .map(|m| m.mount_point.clone())
        .collect()
}

/// Unmounts, in the calling thread's mount namespace, every mount whose source is `tag`, when
/// dropped: host-side mounts a scenario made or received never outlive it.
pub struct UnmountTagged {
    pub tag: String,
}

impl UnmountTagged {
    pub fn new(tag: &str) -> UnmountTagged {
        UnmountTagged {
            tag: tag.to_owned(),
        }
    }
}

impl Drop for UnmountTagged {
    fn drop(&mut self) {
        let Ok(mounts) = thread_mounts() else { return };
        // Innermost first.
        for point in mount_points_of(&mounts, &self.tag).iter().rev() {
            let _ = nix::mount::umount2(point, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// Mounts a small tmpfs named `tag` at `target` (created if needed) in the calling thread's mount
/// namespace; the returned guard unmounts it.
pub fn mount_tmpfs(target: &Path, tag: &str) -> Result<UnmountTagged, HarnessError> {
    let io = |source: std::io::Error| HarnessError::Io {
        what: "mounting a tmpfs on the host side",
        source,
    };
    std::fs::create_dir_all(target).map_err(io)?;
    let guard = UnmountTagged::new(tag);
    nix::mount::mount(
        Some(tag),
        target,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=64k"),
    )
    .map_err(|e| io(e.into()))?;
    Ok(guard)
}

/// A host-side tmpfs named `tag` at `target`, made a shared mount: a volume that a container can
/// bind with `rshared` propagation, so mounts under it travel both ways (Kubernetes calls it
/// Bidirectional). The guard unmounts it.
pub fn shared_volume(target: &Path, tag: &str) -> Result<UnmountTagged, HarnessError> {
    let guard = mount_tmpfs(target, tag)?;
    nix::mount::mount(
        None::<&str>,
        target,
        None::<&str>,
        nix::mount::MsFlags::MS_SHARED,
        None::<&str>,
    )
    .map_err(|e| HarnessError::Io {
        what: "making the host-side volume shared",
        source: e.into(),
    })?;
    Ok(guard)
}
