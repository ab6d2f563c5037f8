//! The calling process's mount table, as procfs's [`MountInfo`].

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use procfs::process::{MountInfo, MountOptFields, Process};

/// The mounts of this process's mount namespace (`/proc/self/mountinfo`), mount points unescaped.
pub fn own() -> procfs::ProcResult<Vec<MountInfo>> {
    let mounts = Process::myself()?.mountinfo()?;
    Ok(mounts.into_iter().map(unescaped).collect())
}

/// procfs keeps the kernel's octal escapes (`\040` for a space; also tab, newline and backslash)
/// in mount points.
fn unescaped(mut mount: MountInfo) -> MountInfo {
    mount.mount_point = unescape(&mount.mount_point);
    mount
}

fn unescape(path: &Path) -> PathBuf {
    let bytes = path.as_os_str().as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let code = bytes.get(i + 1..i + 4).filter(|_| bytes[i] == b'\\');
        let octal = code
            .and_then(|c| std::str::from_utf8(c).ok())
            .and_then(|c| u8::from_str_radix(c, 8).ok());
        match octal {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

/// Whether the mount is in a shared peer group (`shared:N`).
pub fn is_shared(mount: &MountInfo) -> bool {
    mount
        .opt_fields
        .iter()
        .any(|f| matches!(f, MountOptFields::Shared(_)))
}

#[cfg(test)]
pub fn parse(line: &str) -> MountInfo {
    unescaped(MountInfo::from_line(line).expect("a mountinfo line"))
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case::plain("/plain", "/plain")]
    #[case::space("/tmp/a\\040b", "/tmp/a b")]
    #[case::tab_newline_backslash("/x\\011y\\012z\\134", "/x\ty\nz\\")]
    #[case::not_octal("/a\\x", "/a\\x")]
    #[case::short_at_end("/a\\04", "/a\\04")]
    fn unescapes_mount_points(#[case] escaped: &str, #[case] expected: &str) {
        assert_eq!(unescape(Path::new(escaped)), PathBuf::from(expected));
    }

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
        assert!(mounts.iter().any(|m| m.mount_point == Path::new("/")));
    }
}
