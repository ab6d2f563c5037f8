//! The guest kernel: which one, its release, and its uncompressed image when TCG can use it.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::qemu::VmError;

/// The guest kernel: `explicit`, or the newest `/boot/vmlinuz-*`.
pub fn find_kernel(explicit: Option<&Path>) -> Result<PathBuf, VmError> {
    if let Some(path) = explicit {
        return if path.is_file() {
            Ok(path.to_owned())
        } else {
            Err(VmError::NoKernel(format!(
                "{} does not exist",
                path.display()
            )))
        };
    }
    let mut kernels: Vec<PathBuf> = fs::read_dir("/boot")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("vmlinuz-"))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    kernels.sort();
    kernels.pop().ok_or_else(|| {
        VmError::NoKernel(
            "no /boot/vmlinuz-*; install one (`apt-get install linux-image-amd64`) or pass --kernel"
                .to_owned(),
        )
    })
}

/// The kernel release from a bzImage's setup header (so `--kernel` may point anywhere), else from
/// a `vmlinuz-<release>` file name.
pub fn kernel_release(kernel: &Path) -> Option<String> {
    let mut head = vec![0u8; 0x4000];
    let n = File::open(kernel)
        .and_then(|mut f| f.read(&mut head))
        .ok()?;
    head.truncate(n);
    let from_header = (|| {
        if head.get(0x202..0x206)? != b"HdrS" {
            return None;
        }
        let offset = u16::from_le_bytes([*head.get(0x20e)?, *head.get(0x20f)?]) as usize + 0x200;
        let text = head.get(offset..)?;
        let end = text.iter().position(|&b| b == 0 || b == b' ')?;
        String::from_utf8(text[..end].to_vec()).ok()
    })();
    from_header.or_else(|| {
        kernel
            .file_name()?
            .to_string_lossy()
            .strip_prefix("vmlinuz-")
            .map(str::to_owned)
    })
}

/// Extracts the uncompressed ELF kernel from a bzImage, when the kernel can boot it directly (PVH):
/// TCG then skips the emulated decompression, which takes as long as the rest of the boot.
pub(super) fn extract_vmlinux(kernel: &Path, release: Option<&str>, dir: &Path) -> Option<PathBuf> {
    let config = kernel.parent()?.join(format!("config-{}", release?));
    if !fs::read_to_string(config).ok()?.contains("CONFIG_PVH=y") {
        return None;
    }
    let image = fs::read(kernel).ok()?;
    let formats: [(&[u8], &str); 3] = [
        (b"\xfd7zXZ\x00", "xz"),
        (b"\x28\xb5\x2f\xfd", "zstd"),
        (b"\x1f\x8b\x08\x00", "gzip"),
    ];
    let (start, tool) = formats.iter().find_map(|(magic, tool)| {
        let at = image.windows(magic.len()).position(|w| w == *magic)?;
        Some((at, *tool))
    })?;
    let out = dir.join("vmlinux");
    let file = File::create(&out).ok()?;
    let mut child = Command::new(tool)
        .args(["-dc", "-q"])
        .stdin(Stdio::piped())
        .stdout(file)
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    if let Some(mut stdin) = child.stdin.take() {
        // The payload is followed by the rest of the image: the tool stops at its stream's end and
        // complains about the trailer, so its exit status says nothing; the ELF header does.
        let _ = stdin.write_all(&image[start..]);
    }
    let _ = child.wait();
    let mut magic = [0u8; 4];
    File::open(&out).ok()?.read_exact(&mut magic).ok()?;
    (&magic == b"\x7fELF").then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file that starts like a bzImage: the setup header's magic and the offset of the version
    /// string, which follows it.
    fn fake_bzimage(dir: &Path, name: &str, version: &str) -> PathBuf {
        let mut image = vec![0u8; 0x4000];
        image[0x202..0x206].copy_from_slice(b"HdrS");
        let at = 0x1000usize;
        image[0x20e..0x210].copy_from_slice(&((at - 0x200) as u16).to_le_bytes());
        image[at..at + version.len()].copy_from_slice(version.as_bytes());
        let path = dir.join(name);
        fs::write(&path, image).expect("write the image");
        path
    }

    #[test]
    fn the_setup_header_names_the_release_whatever_the_file_is_called() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kernel = fake_bzimage(
            dir.path(),
            "my-kernel",
            "6.1.0-57-amd64 (debian-kernel@lists.debian.org) #1 SMP",
        );
        assert_eq!(kernel_release(&kernel).as_deref(), Some("6.1.0-57-amd64"));
    }

    #[test]
    fn without_a_header_the_file_name_names_the_release() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kernel = dir.path().join("vmlinuz-5.10.0-9-amd64");
        fs::write(&kernel, b"not a bzImage").expect("write");
        assert_eq!(kernel_release(&kernel).as_deref(), Some("5.10.0-9-amd64"));
        let other = dir.path().join("bzImage");
        fs::write(&other, b"not a bzImage").expect("write");
        assert_eq!(kernel_release(&other), None);
    }

    #[test]
    fn an_explicit_kernel_must_exist() {
        let err = find_kernel(Some(Path::new("/nonexistent/vmlinuz"))).expect_err("missing");
        assert!(
            err.to_string()
                .contains("/nonexistent/vmlinuz does not exist"),
            "{err}"
        );
    }
}
