//! Writing a download to disk without the page cache where the file system allows it.
//!
//! A downloaded file is not read back by the download (it was hashed as it arrived), so copying
//! every byte into the page cache, and having the kernel find and fill fresh pages for it, is
//! work for nothing: on the project's VM a buffered, fsynced GiB cost 0.85-1.64 s of system CPU
//! against 0.35 s with `O_DIRECT` (docs/BENCHMARKS.md). So the bytes are gathered into one
//! 8 MiB buffer aligned for direct I/O and written from it with `O_DIRECT` at aligned offsets;
//! what cannot be aligned (a resumed file's odd head, the last block's tail) goes through the
//! page cache, and a file system that refuses `O_DIRECT` gets every byte that way.

use std::io::{Seek, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// Direct I/O alignment of offsets, lengths and memory (the usual logical block size is 512;
/// 4096 suits every device).
const ALIGN: usize = 4096;
/// Bytes gathered before a direct write.
const CAP: usize = 8 * 1024 * 1024;

pub(crate) struct DownloadWriter {
    /// The file through the page cache: the head and tail, and everything when `direct` is off.
    file: std::fs::File,
    direct: Option<std::fs::File>,
    /// `CAP` aligned bytes from `start` (the allocation has room to align them).
    buf: Vec<u8>,
    start: usize,
    filled: usize,
    /// Where the next byte goes in the file (the buffer's first byte when `filled > 0`).
    offset: u64,
}

impl DownloadWriter {
    /// Opens `path` for writing from `offset` (what is there past it is cut).
    pub(crate) fn open(path: &Path, offset: u64) -> std::io::Result<DownloadWriter> {
        let mut file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
        file.set_len(offset)?;
        file.seek(std::io::SeekFrom::Start(offset))?;
        let direct = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(path).ok();
        let (buf, start) = match direct {
            Some(_) => {
                let buf = vec![0u8; CAP + ALIGN];
                let start = buf.as_ptr().align_offset(ALIGN);
                (buf, start)
            }
            None => (Vec::new(), 0),
        };
        Ok(DownloadWriter { file, direct, buf, start, filled: 0, offset })
    }

    /// A handle for background `sync_data` calls.
    pub(crate) fn try_clone(&self) -> std::io::Result<std::fs::File> {
        self.file.try_clone()
    }

    /// Appends `pieces`.
    pub(crate) fn push(&mut self, pieces: &[bytes::Bytes]) -> std::io::Result<()> {
        if self.direct.is_none() {
            crate::blobs::write_pieces(&mut self.file, pieces)?;
            self.offset += pieces.iter().map(|p| p.len() as u64).sum::<u64>();
            return Ok(());
        }
        for piece in pieces {
            let mut data: &[u8] = piece;
            // An unaligned start (a resumed file) is brought to alignment through the cache.
            if self.filled == 0 && !(self.offset as usize).is_multiple_of(ALIGN) {
                let n = data.len().min(ALIGN - self.offset as usize % ALIGN);
                self.file.write_all_at(&data[..n], self.offset)?;
                self.offset += n as u64;
                data = &data[n..];
            }
            while !data.is_empty() {
                let n = data.len().min(CAP - self.filled);
                let at = self.start + self.filled;
                self.buf[at..at + n].copy_from_slice(&data[..n]);
                self.filled += n;
                data = &data[n..];
                if self.filled == CAP {
                    self.write_out(CAP)?;
                }
            }
        }
        Ok(())
    }

    /// Writes the buffer's first `n` bytes (a multiple of `ALIGN`) directly at `offset`, and
    /// moves what follows them to the front.
    fn write_out(&mut self, n: usize) -> std::io::Result<()> {
        let bytes = &self.buf[self.start..self.start + n];
        let written = match &self.direct {
            Some(d) => d.write_all_at(bytes, self.offset),
            None => self.file.write_all_at(bytes, self.offset),
        };
        if let Err(e) = written {
            if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(e);
            }
            // The file system took the open but not the write: the cache it is, from here on.
            self.direct = None;
            self.file.write_all_at(bytes, self.offset)?;
        }
        self.offset += n as u64;
        self.buf.copy_within(self.start + n..self.start + self.filled, self.start);
        self.filled -= n;
        if self.direct.is_none() && self.filled == 0 {
            self.file.seek(std::io::SeekFrom::Start(self.offset))?;
        }
        Ok(())
    }

    /// Writes what is left and makes the file durable.
    pub(crate) fn finish(mut self) -> std::io::Result<()> {
        let aligned = self.filled / ALIGN * ALIGN;
        if aligned > 0 {
            self.write_out(aligned)?;
        }
        if self.filled > 0 {
            let tail = &self.buf[self.start..self.start + self.filled];
            self.file.write_all_at(tail, self.offset)?;
        }
        self.file.flush()?;
        self.file.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(seed: u8, sizes: &[usize]) -> Vec<bytes::Bytes> {
        sizes.iter().enumerate().map(|(i, n)| bytes::Bytes::from(vec![seed.wrapping_add(i as u8); *n])).collect()
    }

    #[test]
    fn any_start_and_any_sizes_give_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        // Aligned and unaligned starts (a resumed download), pieces that cross the 8 MiB buffer
        // and the alignment, and a tail that is not a whole block.
        for start in [0u64, 1000, 4096, 12_345] {
            let path = dir.path().join(format!("f{start}"));
            let head = vec![7u8; start as usize];
            std::fs::write(&path, &head).unwrap();
            let mut w = DownloadWriter::open(&path, start).unwrap();
            let ps = pieces(start as u8, &[3, 4093, 70_000, CAP - 11, CAP, 5, 1 << 20, 4099, 0, 17]);
            for chunk in ps.chunks(3) {
                w.push(chunk).unwrap();
            }
            w.finish().unwrap();
            let want: Vec<u8> = head.iter().copied().chain(ps.iter().flat_map(|p| p.iter().copied())).collect();
            let got = std::fs::read(&path).unwrap();
            assert_eq!(got.len(), want.len(), "from {start}");
            assert!(got == want, "from {start}: the bytes differ");
        }
    }

    #[test]
    fn a_longer_file_is_cut_at_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![1u8; 10_000]).unwrap();
        let mut w = DownloadWriter::open(&path, 5000).unwrap();
        w.push(&pieces(9, &[100])).unwrap();
        w.finish().unwrap();
        let got = std::fs::read(&path).unwrap();
        assert_eq!(got.len(), 5100);
        assert!(got[..5000].iter().all(|b| *b == 1) && got[5000..].iter().all(|b| *b == 9));
    }
}
