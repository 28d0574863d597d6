//! A pipelined file sink: the async side gathers incoming bytes into 1 MiB buffers and hands
//! them to a blocking worker that hashes and writes them, so receiving, hashing and writing
//! overlap (on 2 cores, the difference between one core and two). A third, blocking helper
//! flushes written data to disk every [`SYNC_EVERY`] bytes while the worker goes on, so the
//! final fsync has little left to do. Memory stays at a few buffers whatever the size.

use std::io::Write;

use sha2::{Digest as _, Sha256, Sha512};

/// Bytes gathered before a hand-over to the worker.
const BUFFER: usize = 1024 * 1024;
/// Buffers in flight between the async side and the worker.
const DEPTH: usize = 4;
/// Written bytes between background flushes.
const SYNC_EVERY: u64 = 64 * 1024 * 1024;

/// What the worker returns: the file and the hashes, past everything it was given.
pub(crate) struct Sunk {
    pub file: std::fs::File,
    pub sha256: Option<Sha256>,
    pub sha512: Option<Sha512>,
}

pub(crate) struct Sink {
    tx: Option<tokio::sync::mpsc::Sender<Vec<u8>>>,
    worker: tokio::task::JoinHandle<std::io::Result<Sunk>>,
    pending: Vec<u8>,
}

impl Sink {
    /// Starts a worker appending to `file` (at its current position) and continuing the hashes.
    /// With `flush`, written data goes to disk in the background as it accumulates (a spool
    /// that is uploaded elsewhere does without).
    pub fn start(file: std::fs::File, sha256: Option<Sha256>, sha512: Option<Sha512>, flush: bool) -> Sink {
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(DEPTH);
        let worker = tokio::task::spawn_blocking(move || run(file, sha256, sha512, flush, rx));
        Sink { tx: Some(tx), worker, pending: Vec::with_capacity(BUFFER) }
    }

    pub async fn write(&mut self, mut chunk: &[u8]) -> std::io::Result<()> {
        while !chunk.is_empty() {
            let n = (BUFFER - self.pending.len()).min(chunk.len());
            self.pending.extend_from_slice(&chunk[..n]);
            chunk = &chunk[n..];
            if self.pending.len() == BUFFER {
                self.hand_over().await?;
            }
        }
        Ok(())
    }

    async fn hand_over(&mut self) -> std::io::Result<()> {
        let buf = std::mem::replace(&mut self.pending, Vec::with_capacity(BUFFER));
        let Some(tx) = &self.tx else { return Err(std::io::Error::other("write after finish")) };
        if tx.send(buf).await.is_err() {
            // The worker stopped: its error says why.
            self.tx = None;
            return Err(std::io::Error::other("the writer stopped"));
        }
        Ok(())
    }

    /// Hands over the rest and waits for the worker; the file is written (not yet fsynced).
    pub async fn finish(mut self) -> std::io::Result<Sunk> {
        let handed = if self.pending.is_empty() { Ok(()) } else { self.hand_over().await };
        self.tx = None;
        let sunk = self.worker.await.map_err(std::io::Error::other)?;
        handed.and(sunk)
    }
}

fn run(
    mut file: std::fs::File,
    mut sha256: Option<Sha256>,
    mut sha512: Option<Sha512>,
    flush: bool,
    mut rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
) -> std::io::Result<Sunk> {
    let syncer = file.try_clone()?;
    let (sync_tx, sync_rx) = std::sync::mpsc::sync_channel::<()>(1);
    std::thread::scope(|scope| {
        let flusher = scope.spawn(move || -> std::io::Result<()> {
            while sync_rx.recv().is_ok() {
                syncer.sync_data()?;
            }
            Ok(())
        });
        let mut since_sync = 0u64;
        let mut outcome = Ok(());
        while let Some(buf) = rx.blocking_recv() {
            if let Some(h) = sha256.as_mut() {
                h.update(&buf);
            }
            if let Some(h) = sha512.as_mut() {
                h.update(&buf);
            }
            if let Err(e) = file.write_all(&buf) {
                outcome = Err(e);
                break;
            }
            since_sync += buf.len() as u64;
            if flush && since_sync >= SYNC_EVERY {
                since_sync = 0;
                // A flush already running is enough: skip rather than wait.
                let _ = sync_tx.try_send(());
            }
        }
        drop(sync_tx);
        let flushed = flusher.join().map_err(|_| std::io::Error::other("the flusher panicked"))?;
        outcome.and(flushed)
    })?;
    Ok(Sunk { file, sha256, sha512 })
}
