//! The response body of every listener: a list of byte chunks sent one by one, so that a
//! large `/metrics` exposition goes out as the buffers it was rendered in — never copied into
//! one more buffer — and each buffer is freed as soon as it is written to the socket.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

/// Pieces smaller than this are copied together into one chunk (fewer, larger writes);
/// larger ones are sent as they are.
pub const COALESCE_BELOW: usize = 64 << 10;

/// A response body made of chunks, with an exact length (`Content-Length`).
#[derive(Debug, Default)]
pub struct Chunks {
    parts: VecDeque<Bytes>,
    /// Small pieces not yet sealed into a chunk.
    small: Vec<u8>,
    len: u64,
}

impl Chunks {
    /// An empty body.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a copy of `piece` (small pieces share one chunk).
    pub fn push_copy(&mut self, piece: &[u8]) {
        if piece.len() >= COALESCE_BELOW {
            return self.push_owned(piece.to_vec());
        }
        self.small.extend_from_slice(piece);
        self.len += piece.len() as u64;
        if self.small.len() >= COALESCE_BELOW {
            self.seal();
        }
    }

    /// Appends `buf` without copying it when it is large.
    pub fn push_owned(&mut self, buf: Vec<u8>) {
        if buf.len() < COALESCE_BELOW {
            return self.push_copy(&buf);
        }
        self.seal();
        self.len += buf.len() as u64;
        self.parts.push_back(Bytes::from(buf));
    }

    /// Appends `part` as it is.
    pub fn push_bytes(&mut self, part: Bytes) {
        self.seal();
        self.len += part.len() as u64;
        self.parts.push_back(part);
    }

    /// The body's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The whole body in one buffer (for callers that want text, not a stream).
    pub fn concat(mut self) -> Vec<u8> {
        self.seal();
        let mut out = Vec::with_capacity(self.len as usize);
        for part in self.parts {
            out.extend_from_slice(&part);
        }
        out
    }

    fn seal(&mut self) {
        if !self.small.is_empty() {
            let small = std::mem::take(&mut self.small);
            self.parts.push_back(Bytes::from(small));
        }
    }
}

/// Asks the kernel to back `buf`'s spare capacity with transparent huge pages, where it
/// allows them (`madvise` mode): a fresh buffer of tens of MB then costs tens of page faults
/// instead of thousands. Only worth it for buffers of several MB.
pub fn advise_huge_pages(buf: &mut Vec<u8>) {
    const PAGE: usize = 4096;
    let start = buf.as_mut_ptr() as usize;
    let aligned = start.next_multiple_of(PAGE);
    let end = (start + buf.capacity()) / PAGE * PAGE;
    if end > aligned {
        // SAFETY: the range lies inside the vector's allocation; MADV_HUGEPAGE changes no
        // contents, only how the kernel backs the pages.
        unsafe {
            nix::libc::madvise(
                aligned as *mut nix::libc::c_void,
                end - aligned,
                nix::libc::MADV_HUGEPAGE,
            );
        }
    }
}

impl From<Bytes> for Chunks {
    fn from(b: Bytes) -> Self {
        let len = b.len() as u64;
        Chunks {
            parts: VecDeque::from([b]),
            small: Vec::new(),
            len,
        }
    }
}

impl From<&'static str> for Chunks {
    fn from(text: &'static str) -> Self {
        Chunks::from(Bytes::from_static(text.as_bytes()))
    }
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.seal();
        let next = self.parts.pop_front();
        if let Some(part) = &next {
            self.len -= part.len() as u64;
        }
        Poll::Ready(next.map(|part| Ok(Frame::data(part))))
    }

    fn is_end_stream(&self) -> bool {
        self.len == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn small_pieces_are_coalesced_large_ones_kept_and_the_length_is_exact() {
        let mut c = Chunks::new();
        c.push_copy(b"# HELP a\n");
        c.push_owned(b"a 1\n".to_vec());
        let big = vec![b'x'; COALESCE_BELOW + 1];
        c.push_owned(big.clone());
        c.push_copy(b"tail\n");
        let want = [&b"# HELP a\na 1\n"[..], &big, b"tail\n"].concat();
        assert_eq!(c.len(), want.len() as u64);
        assert_eq!(c.size_hint().exact(), Some(want.len() as u64));
        let mut frames = Vec::new();
        while let Some(f) = c.frame().await {
            frames.push(f.unwrap().into_data().unwrap());
        }
        assert_eq!(frames.len(), 3, "small, big, small");
        assert_eq!(frames.concat(), want);
        assert!(c.is_end_stream());
    }

    #[test]
    fn concat_gives_the_whole_body() {
        let mut c = Chunks::from("abc");
        c.push_copy(b"def");
        assert_eq!(c.concat(), b"abcdef");
    }
}
