//! The initramfs archive: the kernel unpacks a "newc" cpio into its root
//! tmpfs before running `/init`. Uncompressed, so a guest under TCG does not
//! spend seconds inflating it.

use std::io::{self, Write};

/// Builds a newc archive in memory; [`Archive::finish`] adds the trailer.
#[derive(Default)]
pub struct Archive {
    bytes: Vec<u8>,
    next_inode: u32,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

impl Archive {
    pub fn dir(&mut self, path: &str) {
        self.entry(path, S_IFDIR | 0o755, 2, &[]);
    }

    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) {
        self.entry(path, S_IFREG | mode, 1, data);
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        self.entry(path, S_IFLNK | 0o777, 1, target.as_bytes());
    }

    pub fn finish(mut self, out: &mut impl Write) -> io::Result<()> {
        self.entry("TRAILER!!!", 0, 1, &[]);
        out.write_all(&self.bytes)
    }

    /// One header, the NUL-terminated name and the data, each padded to 4.
    fn entry(&mut self, path: &str, mode: u32, nlink: u32, data: &[u8]) {
        self.next_inode += 1;
        let name = path.trim_start_matches('/');
        let fields = [
            self.next_inode,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            data.len() as u32,
            0, // devmajor
            0, // devminor
            0, // rdevmajor
            0, // rdevminor
            name.len() as u32 + 1,
            0, // check
        ];
        self.bytes.extend_from_slice(b"070701");
        for field in fields {
            self.bytes
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_newc_and_aligned() {
        let mut archive = Archive::default();
        archive.dir("/bin");
        archive.file("/bin/x", 0o755, b"hello");
        archive.symlink("/bin/sh", "busybox");
        let mut out = Vec::new();
        archive.finish(&mut out).unwrap();
        assert_eq!(out.len() % 4, 0);
        assert!(out.starts_with(b"070701"));
        // Header (110 bytes) + "bin\0" padded: the file entry starts at 116.
        assert_eq!(&out[116..122], b"070701");
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("bin/x\0"));
        assert!(text.contains("hello"));
        assert!(text.contains("TRAILER!!!\0"));
        // The file's size field (7th) is 5.
        assert_eq!(&out[116 + 6 + 6 * 8..116 + 6 + 7 * 8], b"00000005");
    }
}
