//! The calling process's mount table, as procfs's [`MountInfo`] with unescaped paths (the one
//! reader all of Palisade uses: `palisade_common::mountinfo`).

use procfs::process::{MountInfo, Process};

pub use palisade_common::mountinfo::is_shared;

/// The mounts of this process's mount namespace (`/proc/self/mountinfo`), mount points unescaped.
pub fn own() -> procfs::ProcResult<Vec<MountInfo>> {
    let mounts = Process::myself()?.mountinfo()?;
    Ok(mounts
        .into_iter()
        .map(palisade_common::mountinfo::unescaped)
        .collect())
}

#[cfg(test)]
pub fn parse(line: &str) -> MountInfo {
    palisade_common::mountinfo::unescaped(MountInfo::from_line(line).expect("a mountinfo line"))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn parses_through_procfs() {
        let m = parse(
            "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue",
        );
        assert_eq!(m.mount_point, PathBuf::from("/mnt/with space"));
        assert!(is_shared(&m));
        let m = parse("22 1 0:21 / /sys rw,nosuid - sysfs sysfs rw");
        assert!(!is_shared(&m));
    }

    #[test]
    fn reads_its_own_table() {
        let mounts = own().expect("/proc/self/mountinfo");
        // Not "/": in a chroot the root is no mount point. /proc is, or nothing could be read.
        assert!(mounts.iter().any(|m| m.fs_type == "proc"), "{mounts:?}");
    }
}
