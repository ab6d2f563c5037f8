//! A minimal writer of "newc" cpio archives, the format the kernel unpacks as an initramfs.
//!
//! A tiny writer rather than a crate: newc is a fixed 110-byte ASCII header per entry, the kernel
//! needs nothing else, and the `cpio` crates on crates.io are small and barely maintained.

use std::io::{self, Read, Write};

/// Writes entries one after another; `finish` appends the trailer.
pub struct CpioWriter<W: Write> {
    out: W,
    written: u64,
    next_ino: u32,
}

const DIR: u32 = 0o040000;
const FILE: u32 = 0o100000;
const SYMLINK: u32 = 0o120000;

impl<W: Write> CpioWriter<W> {
    pub fn new(out: W) -> Self {
        CpioWriter {
            out,
            written: 0,
            next_ino: 1,
        }
    }

    pub fn dir(&mut self, path: &str, mode: u32) -> io::Result<()> {
        self.entry(path, DIR | (mode & 0o7777), 2, &mut io::empty(), 0)
    }

    /// A regular file whose `len` bytes come from `data`.
    pub fn file(
        &mut self,
        path: &str,
        mode: u32,
        data: &mut dyn io::Read,
        len: u64,
    ) -> io::Result<()> {
        self.entry(path, FILE | (mode & 0o7777), 1, data, len)
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        let bytes = target.as_bytes();
        self.entry(
            path,
            SYMLINK | 0o777,
            1,
            &mut &bytes[..],
            bytes.len() as u64,
        )
    }

    /// Appends the `TRAILER!!!` entry and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.header("TRAILER!!!", 0, 1, 0, 0)?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn entry(
        &mut self,
        path: &str,
        mode: u32,
        nlink: u32,
        data: &mut dyn io::Read,
        len: u64,
    ) -> io::Result<()> {
        let len32 = u32::try_from(len)
            .map_err(|_| io::Error::other(format!("{path}: too large for cpio ({len} bytes)")))?;
        let ino = self.next_ino;
        self.next_ino += 1;
        self.header(path.trim_start_matches('/'), mode, nlink, len32, ino)?;
        let copied = io::copy(&mut Read::take(data, len), &mut self.out)?;
        if copied != len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{path}: expected {len} bytes, read {copied}"),
            ));
        }
        self.written += copied;
        self.pad()
    }

    fn header(&mut self, name: &str, mode: u32, nlink: u32, size: u32, ino: u32) -> io::Result<()> {
        let header = format!(
            "070701{ino:08x}{mode:08x}{uid:08x}{gid:08x}{nlink:08x}{mtime:08x}{size:08x}\
             {dmaj:08x}{dmin:08x}{rdmaj:08x}{rdmin:08x}{namesize:08x}{check:08x}",
            uid = 0,
            gid = 0,
            mtime = 0,
            dmaj = 0,
            dmin = 0,
            rdmaj = 0,
            rdmin = 0,
            namesize = name.len() + 1,
            check = 0,
        );
        self.out.write_all(header.as_bytes())?;
        self.out.write_all(name.as_bytes())?;
        self.out.write_all(&[0])?;
        self.written += header.len() as u64 + name.len() as u64 + 1;
        self.pad()
    }

    /// Header+name and data are each padded to a multiple of four bytes.
    fn pad(&mut self) -> io::Result<()> {
        let pad = (4 - (self.written % 4)) % 4;
        self.out.write_all(&[0u8; 3][..pad as usize])?;
        self.written += pad;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive() -> Vec<u8> {
        let mut w = CpioWriter::new(Vec::new());
        w.dir("/bin", 0o755).expect("dir");
        w.file("/bin/hello", 0o755, &mut &b"hello\n"[..], 6)
            .expect("file");
        w.symlink("/init", "bin/hello").expect("symlink");
        w.finish().expect("finish")
    }

    #[test]
    fn entries_are_aligned_and_end_with_the_trailer() {
        let bytes = archive();
        assert_eq!(&bytes[..6], b"070701");
        assert_eq!(bytes.len() % 4, 0);
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("TRAILER!!!"));
        assert!(text.contains("bin/hello\0"));
    }
}
