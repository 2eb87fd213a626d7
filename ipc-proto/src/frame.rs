//! Framing of messages in both encodings: building one frame, and an incremental decoder that
//! splits an arbitrary sequence of reads back into messages.

use std::marker::PhantomData;

use crate::encoding::Encoding;
use crate::error::{DecodeError, EncodeError};
use crate::WireMessage;

/// Longest accepted protobuf body or JSON line (without its `\n`): 16 MiB. A full configuration
/// with 1000 snooper objects is a few hundred KiB, so only a broken or hostile peer gets near it.
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// Buffer capacity a decoder keeps between frames: enough for typical configurations.
const RETAINED_CAPACITY: usize = 64 * 1024;

/// Size of the big-endian length that precedes each protobuf body.
pub(crate) const LEN_PREFIX: usize = 4;

/// Encodes `message` as one complete frame: length prefix + protobuf, or a JSON line with its
/// `\n`.
pub fn encode<M: WireMessage>(message: &M, encoding: Encoding) -> Result<Vec<u8>, EncodeError> {
    let (frame, body_len) = match encoding {
        Encoding::Proto => {
            let body_len = message.encoded_len();
            let mut frame = Vec::with_capacity(LEN_PREFIX + body_len);
            // Bodies above u32::MAX also exceed MAX_FRAME_LEN and are rejected below.
            let prefix = u32::try_from(body_len).unwrap_or(u32::MAX);
            frame.extend_from_slice(&prefix.to_be_bytes());
            message.encode_raw(&mut frame);
            (frame, body_len)
        }
        Encoding::Json => {
            // Compact serde_json output escapes every control character, so the only `\n` in the
            // frame is the terminator.
            let mut frame = serde_json::to_vec(message)?;
            let body_len = frame.len();
            frame.push(b'\n');
            (frame, body_len)
        }
    };
    if body_len > MAX_FRAME_LEN {
        return Err(EncodeError::FrameTooLarge {
            len: body_len,
            max: MAX_FRAME_LEN,
        });
    }
    Ok(frame)
}

/// Reads the body length from a protobuf frame's prefix.
pub(crate) fn body_len(prefix: [u8; LEN_PREFIX]) -> u64 {
    u64::from(u32::from_be_bytes(prefix))
}

/// Decodes one protobuf frame body.
pub(crate) fn decode_proto_body<M: WireMessage>(body: &[u8]) -> Result<M, DecodeError> {
    Ok(M::decode(body)?)
}

/// Decodes one JSON line (without its `\n`). Returns `None` for a blank line, which hand-written
/// probes may produce and which carries nothing to report.
pub(crate) fn decode_json_line<M: WireMessage>(line: &[u8]) -> Result<Option<M>, DecodeError> {
    // A probe writing CRLF (e.g. from a Windows-edited script) is still understood.
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    Ok(Some(serde_json::from_slice(line)?))
}

/// Splits a byte stream into messages of type `M`, whatever the boundaries of the reads.
///
/// Feed it with [`push`](Self::push) after every read, then call [`next`](Self::next) until it
/// returns `Ok(None)`. A [`DecodeError`] concerns one frame only: the decoder stays in sync and
/// the following frames decode normally. An oversized frame is never buffered: its bytes are
/// dropped as they arrive.
#[derive(Debug)]
pub struct FrameDecoder<M> {
    encoding: Encoding,
    max_frame_len: usize,
    buf: Vec<u8>,
    /// Bytes of `buf` before this index are consumed.
    start: usize,
    /// JSON: `buf[start..scanned]` holds no `\n`, so searching resumes at `scanned`.
    scanned: usize,
    /// Proto: bytes of an oversized body still to drop.
    skip: u64,
    /// JSON: the rest of an over-long line is dropped up to its `\n`.
    discarding_line: bool,
    _message: PhantomData<fn() -> M>,
}

impl<M: WireMessage> FrameDecoder<M> {
    /// A decoder for `encoding` with the standard [`MAX_FRAME_LEN`].
    pub fn new(encoding: Encoding) -> Self {
        Self::with_max_frame_len(encoding, MAX_FRAME_LEN)
    }

    /// A decoder for `encoding` that rejects protobuf bodies or JSON lines longer than
    /// `max_frame_len` bytes.
    pub fn with_max_frame_len(encoding: Encoding, max_frame_len: usize) -> Self {
        Self {
            encoding,
            max_frame_len,
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            skip: 0,
            discarding_line: false,
            _message: PhantomData,
        }
    }

    /// The encoding this decoder reads.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Number of bytes received but not yet returned as messages.
    pub fn buffered_len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Appends bytes just read from the stream.
    pub fn push(&mut self, mut bytes: &[u8]) {
        if self.skip > 0 {
            let dropped = bytes
                .len()
                .min(usize::try_from(self.skip).unwrap_or(usize::MAX));
            self.skip -= dropped as u64;
            bytes = &bytes[dropped..];
        }
        if self.discarding_line {
            match memchr::memchr(b'\n', bytes) {
                Some(newline) => {
                    self.discarding_line = false;
                    bytes = &bytes[newline + 1..];
                }
                None => return,
            }
        }
        if bytes.is_empty() {
            return;
        }
        if self.start > 0 {
            // Drop consumed bytes before growing, so the buffer holds at most one partial frame
            // plus one read.
            self.buf.drain(..self.start);
            // Only JSON mode advances `scanned`; in proto mode it stays behind `start`.
            self.scanned = self.scanned.saturating_sub(self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Returns the next complete message, `Ok(None)` if more bytes are needed, or the error of a
    /// bad frame (which is consumed; call again for the following frames).
    #[allow(clippy::should_implement_trait)] // fallible, so not an Iterator
    pub fn next(&mut self) -> Result<Option<M>, DecodeError> {
        match self.encoding {
            Encoding::Proto => self.next_proto(),
            Encoding::Json => self.next_json(),
        }
    }

    fn next_proto(&mut self) -> Result<Option<M>, DecodeError> {
        let available = &self.buf[self.start..];
        let Some(prefix) = available.first_chunk::<LEN_PREFIX>() else {
            return Ok(None);
        };
        let len = body_len(*prefix);
        if len > self.max_frame_len as u64 {
            let buffered = (available.len() - LEN_PREFIX) as u64;
            let dropped_now = len.min(buffered);
            // `dropped_now` is at most `available.len()`, so the cast cannot truncate.
            self.start += LEN_PREFIX + dropped_now as usize;
            self.skip = len - dropped_now;
            self.release_if_consumed();
            return Err(DecodeError::FrameTooLarge {
                len,
                max: self.max_frame_len,
            });
        }
        // `len <= max_frame_len`, which is a usize.
        let frame_end = LEN_PREFIX + len as usize;
        let Some(body) = available.get(LEN_PREFIX..frame_end) else {
            return Ok(None);
        };
        let decoded = decode_proto_body(body);
        self.start += frame_end;
        self.release_if_consumed();
        decoded.map(Some)
    }

    fn next_json(&mut self) -> Result<Option<M>, DecodeError> {
        loop {
            let search_from = self.scanned.max(self.start);
            let Some(offset) = memchr::memchr(b'\n', &self.buf[search_from..]) else {
                self.scanned = self.buf.len();
                if self.buf.len() - self.start > self.max_frame_len {
                    self.start = self.buf.len();
                    self.discarding_line = true;
                    self.release_if_consumed();
                    return Err(DecodeError::LineTooLong {
                        max: self.max_frame_len,
                    });
                }
                return Ok(None);
            };
            let line_end = search_from + offset;
            let line_start = self.start;
            self.start = line_end + 1;
            self.scanned = self.start;
            let result = if line_end - line_start > self.max_frame_len {
                Err(DecodeError::LineTooLong {
                    max: self.max_frame_len,
                })
            } else {
                decode_json_line(&self.buf[line_start..line_end])
            };
            self.release_if_consumed();
            match result {
                Ok(None) => continue,
                other => return other,
            }
        }
    }

    /// Empties the buffer once everything in it is consumed, and gives back memory beyond
    /// [`RETAINED_CAPACITY`] so an idle decoder does not keep the largest frame it ever saw.
    fn release_if_consumed(&mut self) {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.buf.shrink_to(RETAINED_CAPACITY);
            self.start = 0;
            self.scanned = 0;
        }
    }
}
