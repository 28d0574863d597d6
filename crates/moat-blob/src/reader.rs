//! [`BlobReader`]: stored bytes being read. Local files are read ahead on a blocking thread in
//! 1 MiB chunks that go out as they are (an HTTP body takes them without another copy, and
//! without zero-filling a buffer first), one chunk being read while the one before is sent, in
//! buffers from the sink's pool that go back to it once sent;
//! remote objects stream from the object store.

use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use tokio::io::{AsyncRead, ReadBuf};

/// Bytes read from a local file at a time: a pooled buffer's size.
const CHUNK: u64 = crate::sink::BUFFER as u64;

/// Stored bytes being read: an [`AsyncRead`], or, for an HTTP body, a stream of chunks
/// ([`BlobReader::into_stream`]).
pub struct BlobReader(Inner);

enum Inner {
    /// Local files, not read yet.
    Local(Vec<Segment>),
    Reading(Pin<Box<dyn AsyncRead + Send>>),
}

/// `len` bytes of a local file from `offset` (`u64::MAX`: to its end, whatever its size); the
/// file is opened when reading reaches it, unless it is open already.
pub(crate) struct Segment {
    pub path: PathBuf,
    pub file: Option<std::fs::File>,
    pub offset: u64,
    pub len: u64,
}

/// A stream of byte chunks.
pub type ChunkStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

impl std::fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobReader").finish_non_exhaustive()
    }
}

impl BlobReader {
    /// A reader over any byte source.
    pub fn new(r: impl AsyncRead + Send + 'static) -> BlobReader {
        BlobReader(Inner::Reading(Box::pin(r)))
    }

    pub(crate) fn local(segments: Vec<Segment>) -> BlobReader {
        BlobReader(Inner::Local(segments))
    }

    /// The bytes as chunks: local files in 1 MiB chunks read ahead, anything else in chunks of
    /// up to 256 KiB. A local file shorter than its recorded size is an error, not a short end.
    pub fn into_stream(self) -> ChunkStream {
        match self.0 {
            Inner::Local(segments) => Box::pin(local_chunks(segments)),
            Inner::Reading(r) => Box::pin(tokio_util::io::ReaderStream::with_capacity(r, 256 * 1024)),
        }
    }
}

impl AsyncRead for BlobReader {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if let Inner::Local(segments) = &mut self.0 {
            let chunks = local_chunks(std::mem::take(segments));
            self.0 = Inner::Reading(Box::pin(tokio_util::io::StreamReader::new(chunks)));
        }
        match &mut self.0 {
            Inner::Reading(r) => r.as_mut().poll_read(cx, buf),
            Inner::Local(_) => Poll::Ready(Ok(())),
        }
    }
}

/// Reads segments in order, one chunk per call, on a blocking thread.
struct LocalRead {
    segments: std::collections::VecDeque<Segment>,
    /// The open segment.
    current: Option<Open>,
}

struct Open {
    file: std::fs::File,
    /// Where the next read starts.
    at: u64,
    /// The bytes left (`u64::MAX`: up to the file's end).
    left: u64,
}

impl LocalRead {
    fn next_chunk(&mut self) -> Option<std::io::Result<Bytes>> {
        loop {
            if self.current.is_none() {
                let s = self.segments.pop_front()?;
                if s.len == 0 {
                    continue;
                }
                let opened = match s.file {
                    Some(f) => Ok(f),
                    None => std::fs::File::open(&s.path),
                };
                match opened {
                    Ok(file) => self.current = Some(Open { file, at: s.offset, left: s.len }),
                    Err(e) => return Some(Err(e)),
                }
            }
            let open = self.current.as_mut()?;
            let to_end = open.left == u64::MAX;
            let want = CHUNK.min(open.left) as usize;
            // A whole chunk goes in a pooled buffer, which comes back to the pool once the chunk
            // has been sent; a segment's short last one in a buffer of its size.
            let mut v = crate::sink::Pooled(if want == CHUNK as usize { crate::sink::take_buffer() } else { Vec::with_capacity(want) });
            return Some(match fill(&open.file, &mut v.0, want, open.at) {
                Ok(0) if to_end => {
                    self.current = None;
                    continue;
                }
                Ok(0) => Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "stored bytes are shorter than recorded")),
                Ok(n) => {
                    open.at += n as u64;
                    if !to_end {
                        open.left -= n as u64;
                    }
                    if open.left == 0 {
                        self.current = None;
                    }
                    Ok(Bytes::from_owner(v))
                }
                Err(e) => Err(e),
            });
        }
    }
}

/// Reads up to `want` bytes of `file` from `at` into `buf`'s spare capacity (without zeroing it
/// first), in as few `pread`s as the kernel allows: one for a chunk in the page cache. Returns
/// the bytes read, fewer than `want` only at the file's end. (`Read::read_to_end` started at
/// 8 KiB and doubled: nine reads per MiB.)
fn fill(file: &std::fs::File, buf: &mut Vec<u8>, want: usize, at: u64) -> std::io::Result<usize> {
    while buf.len() < want {
        let got = buf.len() as u64;
        match rustix::io::pread(file, rustix::buffer::spare_capacity(buf), at + got) {
            Ok(0) => break,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // A buffer with more room than asked for may have taken more.
    buf.truncate(want);
    Ok(buf.len())
}

type Pending = tokio::task::JoinHandle<(LocalRead, Option<std::io::Result<Bytes>>)>;

/// The chunks of `segments`, the next one read while the last one is consumed.
fn local_chunks(segments: Vec<Segment>) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let read = |mut r: LocalRead| -> Pending {
        tokio::task::spawn_blocking(move || {
            let chunk = r.next_chunk();
            (r, chunk)
        })
    };
    let first = LocalRead { segments: segments.into(), current: None };
    futures_util::stream::unfold((Some(first), None::<Pending>), move |(idle, pending)| async move {
        let pending = match (pending, idle) {
            (Some(p), _) => p,
            (None, Some(r)) => read(r),
            (None, None) => return None,
        };
        match pending.await {
            Ok((r, Some(Ok(chunk)))) => Some((Ok(chunk), (None, Some(read(r))))),
            Ok((_, Some(Err(e)))) => Some((Err(e), (None, None))),
            Ok((_, None)) => None,
            Err(e) => Some((Err(std::io::Error::other(e)), (None, None))),
        }
    })
}
