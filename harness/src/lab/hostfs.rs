//! Host-side filesystem mechanism for containment scenarios: marker files, mount tables, and
//! guards that undo host-side mounts whatever happens.

use std::path::{Path, PathBuf};

use crate::error::HarnessError;
use crate::run::RunEnv;

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

/// One line of a mountinfo table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_point: String,
    pub fs_type: String,
    pub source: String,
}

/// Parses `/proc/<pid>/mountinfo` text (mount point is field 5; type and source follow ` - `).
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount_point = unescape(left.split_whitespace().nth(4)?);
            let mut right = right.split_whitespace();
            let fs_type = right.next()?.to_owned();
            let source = unescape(right.next().unwrap_or_default());
            Some(MountEntry {
                mount_point,
                fs_type,
                source,
            })
        })
        .collect()
}

/// The kernel escapes space, tab, newline and backslash in mountinfo as octal.
fn unescape(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// The mount table of the calling thread's mount namespace (the "host" side of a scenario).
pub fn thread_mounts() -> Result<Vec<MountEntry>, HarnessError> {
    let text = std::fs::read_to_string("/proc/thread-self/mountinfo").map_err(|source| {
        HarnessError::Io {
            what: "reading /proc/thread-self/mountinfo",
            source,
        }
    })?;
    Ok(parse_mountinfo(&text))
}

/// Where, in `mounts`, something with source `tag` is mounted.
pub fn mount_points_of(mounts: Vec<MountEntry>, tag: &str) -> Vec<String> {
    mounts
        .into_iter()
        .filter(|m| m.source == tag)
        .map(|m| m.mount_point)
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
        for entry in mounts.iter().rev().filter(|m| m.source == self.tag) {
            let _ = nix::mount::umount2(
                Path::new(&entry.mount_point),
                nix::mount::MntFlags::MNT_DETACH,
            );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_parse() {
        let text = "70 45 254:0 /tmp/b/rootfs / rw,relatime - ext4 /dev/vda rw\n\
                    71 70 0:41 / /my\\040dir rw shared:3 - tmpfs palisade-x rw\n";
        let mounts = parse_mountinfo(text);
        assert_eq!(mounts.len(), 2);
        assert_eq!(mounts[0].mount_point, "/");
        assert_eq!(mounts[1].mount_point, "/my dir");
        assert_eq!(mounts[1].fs_type, "tmpfs");
        assert_eq!(mounts[1].source, "palisade-x");
    }
}
