//! Writing a download to disk without the page cache where the file system allows it.
//!
//! A downloaded file is not read back by the download (it was hashed as it arrived), so copying
//! every byte into the page cache, and having the kernel find and fill fresh pages for it, is
//! work for nothing: on the project's VM a buffered, fsynced GiB cost 0.85-1.64 s of system CPU
//! against 0.35 s with `O_DIRECT` (docs/BENCHMARKS.md). So the bytes are gathered into 8 MiB
//! buffers aligned for direct I/O and written from them with `O_DIRECT` at aligned offsets, by a
//! thread of their own while the next buffer fills (two buffers, 16 MiB in all); what cannot be
//! aligned (a resumed file's odd head, the last block's tail) goes through the page cache, and a
//! file system that refuses `O_DIRECT` gets every byte that way.

use std::io::{Seek, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::mpsc;

/// Direct I/O alignment of offsets, lengths and memory (the usual logical block size is 512;
/// 4096 suits every device).
const ALIGN: usize = 4096;
/// Bytes gathered before a direct write.
const CAP: usize = 8 * 1024 * 1024;

/// `CAP` bytes aligned for direct I/O (the allocation has room to align them).
struct Aligned {
    mem: Vec<u8>,
    start: usize,
}

impl Aligned {
    fn new() -> Aligned {
        let mem = vec![0u8; CAP + ALIGN];
        let start = mem.as_ptr().align_offset(ALIGN);
        Aligned { mem, start }
    }
    fn bytes(&self) -> &[u8] {
        &self.mem[self.start..self.start + CAP]
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.mem[self.start..self.start + CAP]
    }
}

/// A full buffer on its way to the disk: its first `len` bytes go at `offset`.
struct Full {
    buf: Aligned,
    offset: u64,
    len: usize,
}

/// The thread that writes full buffers with `O_DIRECT`, one after the other in file order,
/// while the next buffer fills: gathering 8 MiB and writing them no longer take turns (on the
/// project's VM a direct write of 8 MiB takes about as long as the bytes take to arrive).
struct DiskThread {
    to_disk: Option<mpsc::SyncSender<Full>>,
    written: mpsc::Receiver<std::io::Result<Aligned>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DiskThread {
    /// Writes with `direct`; a file system that takes the open but refuses a direct write
    /// (EINVAL) gets that buffer and every later one through `cached`.
    fn start(direct: std::fs::File, cached: std::fs::File) -> DiskThread {
        let (to_disk, from_main) = mpsc::sync_channel::<Full>(1);
        let (done, written) = mpsc::sync_channel(2);
        let thread = std::thread::spawn(move || {
            let mut direct = Some(direct);
            while let Ok(Full { buf, offset, len }) = from_main.recv() {
                let bytes = &buf.bytes()[..len];
                let outcome = match &direct {
                    Some(d) => match d.write_all_at(bytes, offset) {
                        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                            direct = None;
                            cached.write_all_at(bytes, offset)
                        }
                        other => other,
                    },
                    None => cached.write_all_at(bytes, offset),
                };
                // After a failed write, nothing more is written: the file's length must stay the
                // length of a correct prefix (what a resumed download carries on from).
                let failed = outcome.is_err();
                if done.send(outcome.map(|()| buf)).is_err() || failed {
                    return;
                }
            }
        });
        DiskThread { to_disk: Some(to_disk), written, thread: Some(thread) }
    }

    fn send(&self, full: Full) -> std::io::Result<()> {
        if let Some(tx) = &self.to_disk
            && tx.send(full).is_ok()
        {
            return Ok(());
        }
        // The thread stopped at a failed write: that write's error, which is waiting.
        while let Ok(r) = self.written.try_recv() {
            r?;
        }
        Err(std::io::Error::other("the disk writer stopped"))
    }

    /// A buffer back from the disk, once written (or the write's error).
    fn written(&self) -> std::io::Result<Aligned> {
        self.written.recv().map_err(|_| std::io::Error::other("the disk writer stopped"))?
    }

    /// Waits for the writes in flight; the first error, if any.
    fn stop(&mut self) -> std::io::Result<()> {
        self.to_disk = None;
        let mut outcome = Ok(());
        while let Ok(r) = self.written.recv() {
            if let (Err(e), Ok(())) = (r, &outcome) {
                outcome = Err(e);
            }
        }
        if let Some(t) = self.thread.take()
            && t.join().is_err()
            && outcome.is_ok()
        {
            outcome = Err(std::io::Error::other("the disk writer failed"));
        }
        outcome
    }
}

impl Drop for DiskThread {
    fn drop(&mut self) {
        // Writes in flight finish on their own; an abandoned download keeps its prefix.
        self.to_disk = None;
    }
}

pub(crate) struct DownloadWriter {
    /// The file through the page cache: the head and tail, and everything when there is no
    /// disk thread (a file system that refuses `O_DIRECT` at open).
    file: std::fs::File,
    disk: Option<DiskThread>,
    /// The buffer filling, and the one not at the disk thread, if it is back.
    buf: Option<Aligned>,
    spare: Option<Aligned>,
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
        let (disk, buf, spare) = match direct {
            Some(d) => (Some(DiskThread::start(d, file.try_clone()?)), Some(Aligned::new()), Some(Aligned::new())),
            None => (None, None, None),
        };
        Ok(DownloadWriter { file, disk, buf, spare, filled: 0, offset })
    }

    /// A handle for background `sync_data` calls.
    pub(crate) fn try_clone(&self) -> std::io::Result<std::fs::File> {
        self.file.try_clone()
    }

    /// Appends `pieces`.
    pub(crate) fn push(&mut self, pieces: &[bytes::Bytes]) -> std::io::Result<()> {
        if self.disk.is_none() {
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
                let at = self.filled;
                self.current()?.bytes_mut()[at..at + n].copy_from_slice(&data[..n]);
                self.filled += n;
                data = &data[n..];
                if self.filled == CAP {
                    self.hand_over(CAP)?;
                }
            }
        }
        Ok(())
    }

    /// The buffer to fill: the spare one, or the one the disk thread gives back (waiting for
    /// its write).
    fn current(&mut self) -> std::io::Result<&mut Aligned> {
        if self.buf.is_none() {
            self.buf = match self.spare.take() {
                Some(b) => Some(b),
                None => Some(self.disk.as_ref().ok_or_else(|| std::io::Error::other("no disk writer"))?.written()?),
            };
        }
        self.buf.as_mut().ok_or_else(|| std::io::Error::other("no buffer"))
    }

    /// Sends the buffer's first `n` bytes (all it holds, a multiple of `ALIGN`) to the disk
    /// thread, to be written at `offset`.
    fn hand_over(&mut self, n: usize) -> std::io::Result<()> {
        let (Some(buf), Some(disk)) = (self.buf.take(), &self.disk) else { return Ok(()) };
        disk.send(Full { buf, offset: self.offset, len: n })?;
        self.offset += n as u64;
        self.filled = 0;
        // The other buffer, if the disk thread is done with it, without waiting.
        if self.spare.is_none()
            && let Ok(back) = disk.written.try_recv()
        {
            self.spare = Some(back?);
        }
        Ok(())
    }

    /// Writes what is left and makes the file durable.
    pub(crate) fn finish(mut self) -> std::io::Result<()> {
        // The tail past the last aligned length goes through the cache, at its place, once all
        // before it is on the disk: the file never gets longer than what was written in order.
        let mut tail = None;
        if self.filled > 0
            && let Some(buf) = &self.buf
        {
            let aligned = self.filled / ALIGN * ALIGN;
            tail = Some((buf.bytes()[aligned..self.filled].to_vec(), self.offset + aligned as u64));
            if aligned > 0 {
                self.hand_over(aligned)?;
            }
        }
        if let Some(disk) = &mut self.disk {
            disk.stop()?;
        }
        if let Some((bytes, at)) = tail {
            self.file.write_all_at(&bytes, at)?;
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
