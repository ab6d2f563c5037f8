//! Mount tables, read with procfs's types. procfs keeps the kernel's octal escapes (`\040` for a
//! space) in paths; every table read here is unescaped, so a path compares equal to the real one.

use std::path::{Path, PathBuf};

use procfs::FromBufRead;
pub use procfs::process::{MountInfo, MountOptFields};

/// Parses mountinfo text (as read from `/proc/<pid>/mountinfo`, possibly by another process).
pub fn parse(text: &str) -> Result<Vec<MountInfo>, String> {
    let infos = procfs::process::MountInfos::from_buf_read(text.as_bytes())
        .map_err(|e| format!("not a mountinfo table: {e}"))?;
    Ok(infos.0.into_iter().map(unescaped).collect())
}

/// The mount table of `/proc/<which>/mountinfo` (`self`, `thread-self` or a pid).
pub fn read(which: &str) -> Result<Vec<MountInfo>, String> {
    let path = format!("/proc/{which}/mountinfo");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))?;
    parse(&text).map_err(|e| format!("{path}: {e}"))
}

/// The mount holding `path`: the one with the longest mount point that is a prefix of it (the
/// last such, as later mounts stack on earlier ones).
pub fn holding<'a>(mounts: &'a [MountInfo], path: &Path) -> Option<&'a MountInfo> {
    mounts
        .iter()
        .filter(|m| path.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.as_os_str().len())
}

/// Whether the mount is in a shared peer group (`shared:N`).
pub fn is_shared(mount: &MountInfo) -> bool {
    mount
        .opt_fields
        .iter()
        .any(|f| matches!(f, MountOptFields::Shared(_)))
}

/// Whether the mount receives mounts from a peer group (`master:N`).
pub fn is_slave(mount: &MountInfo) -> bool {
    mount
        .opt_fields
        .iter()
        .any(|f| matches!(f, MountOptFields::Master(_)))
}

/// A table entry as procfs parsed it, with every path unescaped.
pub fn unescaped(mut info: MountInfo) -> MountInfo {
    info.mount_point = unescape_path(&info.mount_point);
    info.root = unescape(&info.root);
    info.mount_source = info.mount_source.as_deref().map(unescape);
    info
}

/// A path unescaped byte for byte (a mount point need not be UTF-8).
pub fn unescape_path(path: &Path) -> PathBuf {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    PathBuf::from(std::ffi::OsString::from_vec(unescape_bytes(
        path.as_os_str().as_bytes(),
    )))
}

/// The kernel escapes space, tab, newline and backslash in mountinfo as `\ooo` octal.
pub fn unescape(field: &str) -> String {
    String::from_utf8_lossy(&unescape_bytes(field.as_bytes())).into_owned()
}

fn unescape_bytes(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|_| bytes[i] == b'\\');
        match octal.and_then(|o| u8::from_str_radix(std::str::from_utf8(o).ok()?, 8).ok()) {
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
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("/tmp/a\\040b", "/tmp/a b")]
    #[case("/plain", "/plain")]
    #[case("/tab\\011x", "/tab\tx")]
    #[case("/back\\134slash", "/back\\slash")]
    #[case("/not\\9octal", "/not\\9octal")]
    #[case("/trailing\\04", "/trailing\\04")]
    fn unescapes_the_kernels_octal(#[case] field: &str, #[case] plain: &str) {
        assert_eq!(unescape(field), plain);
    }

    #[test]
    fn tables_parse_with_optional_fields_and_escapes() {
        let text = "70 45 254:0 /tmp/b/rootfs / rw,relatime - ext4 /dev/vda rw\n\
                    71 70 0:41 / /my\\040dir rw shared:3 master:2 - tmpfs palisade-x rw\n";
        let mounts = parse(text).expect("parses");
        assert_eq!(mounts.len(), 2);
        assert_eq!(mounts[1].mount_point, Path::new("/my dir"));
        assert_eq!(mounts[1].fs_type, "tmpfs");
        assert_eq!(mounts[1].mount_source.as_deref(), Some("palisade-x"));
        assert!(
            mounts[1]
                .opt_fields
                .iter()
                .any(|f| matches!(f, MountOptFields::Master(2)))
        );
        assert_eq!(
            holding(&mounts, Path::new("/my dir/x")).map(|m| m.mnt_id),
            Some(71)
        );
        assert!(parse("garbage line\n").is_err());
    }
}
