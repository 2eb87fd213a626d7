//! Blocking message I/O for probe authors, on any `std` stream (typically a
//! `BufReader<&UnixStream>` and the `UnixStream` from [`from_env`](crate::from_env)).

use std::io::{self, BufRead, Read, Write};

use crate::encoding::Encoding;
use crate::error::{DecodeError, ReadError, WriteError};
use crate::frame::{self, LEN_PREFIX, MAX_FRAME_LEN};
use crate::WireMessage;

/// Reads the next message. Returns `Ok(None)` when the peer closed the stream between messages.
///
/// The reader must be buffered (e.g. `BufReader::new(&stream)`) and kept across calls: it holds
/// bytes already read past the current message. A [`ReadError::Decode`] concerns one frame only;
/// the next call reads the following message.
pub fn read_message<M: WireMessage, R: BufRead>(
    reader: &mut R,
    encoding: Encoding,
) -> Result<Option<M>, ReadError> {
    match encoding {
        Encoding::Proto => read_proto(reader),
        Encoding::Json => loop {
            let Some(line) = read_line(reader)? else {
                return Ok(None);
            };
            if let Some(message) = frame::decode_json_line(&line)? {
                return Ok(Some(message));
            }
        },
    }
}

/// Writes `message` as one frame and flushes the writer.
pub fn write_message<M: WireMessage, W: Write>(
    writer: &mut W,
    message: &M,
    encoding: Encoding,
) -> Result<(), WriteError> {
    let frame = frame::encode(message, encoding)?;
    writer.write_all(&frame)?;
    writer.flush()?;
    Ok(())
}

fn read_proto<M: WireMessage, R: BufRead>(reader: &mut R) -> Result<Option<M>, ReadError> {
    let mut prefix = [0u8; LEN_PREFIX];
    if !read_exact_or_eof(reader, &mut prefix)? {
        return Ok(None);
    }
    let len = frame::body_len(prefix);
    if len > MAX_FRAME_LEN as u64 {
        let skipped = io::copy(&mut reader.by_ref().take(len), &mut io::sink())?;
        if skipped < len {
            return Err(ReadError::Truncated);
        }
        return Err(DecodeError::FrameTooLarge {
            len,
            max: MAX_FRAME_LEN,
        }
        .into());
    }
    // `len <= MAX_FRAME_LEN`, which is a usize.
    let mut body = vec![0u8; len as usize];
    if !read_exact_or_eof(reader, &mut body)? {
        return Err(ReadError::Truncated);
    }
    Ok(Some(frame::decode_proto_body(&body)?))
}

/// Fills `buf`; `Ok(false)` if the stream ended before its first byte, [`ReadError::Truncated`]
/// if it ended after.
fn read_exact_or_eof<R: Read>(reader: &mut R, buf: &mut [u8]) -> Result<bool, ReadError> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(ReadError::Truncated),
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(true)
}

/// Reads one line without its `\n`, never holding more than [`MAX_FRAME_LEN`] bytes of it: a
/// longer line is consumed up to its `\n` and reported as [`DecodeError::LineTooLong`].
fn read_line<R: BufRead>(reader: &mut R) -> Result<Option<Vec<u8>>, ReadError> {
    let mut line = LineAccumulator::default();
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err.into()),
        };
        let (consumed, complete) = line.absorb(available);
        reader.consume(consumed);
        if complete {
            return line.finish().map(Some);
        }
        if consumed == 0 {
            return line.at_eof();
        }
    }
}

/// State of one JSON line being read from a buffered stream; shared with the tokio helpers.
#[derive(Default)]
pub(crate) struct LineAccumulator {
    line: Vec<u8>,
    too_long: bool,
    started: bool,
}

impl LineAccumulator {
    /// Takes what `available` holds of the line; returns how many bytes to consume and whether
    /// the line is complete. An empty `available` (end of stream) consumes nothing.
    pub(crate) fn absorb(&mut self, available: &[u8]) -> (usize, bool) {
        if available.is_empty() {
            return (0, false);
        }
        self.started = true;
        let (part, consumed, complete) = match memchr::memchr(b'\n', available) {
            Some(newline) => (&available[..newline], newline + 1, true),
            None => (available, available.len(), false),
        };
        if !self.too_long {
            if self.line.len() + part.len() > MAX_FRAME_LEN {
                self.too_long = true;
                self.line = Vec::new();
            } else {
                self.line.extend_from_slice(part);
            }
        }
        (consumed, complete)
    }

    /// The complete line, or the error of an over-long one.
    pub(crate) fn finish(self) -> Result<Vec<u8>, ReadError> {
        if self.too_long {
            return Err(DecodeError::LineTooLong { max: MAX_FRAME_LEN }.into());
        }
        Ok(self.line)
    }

    /// The stream ended: clean between lines, truncated inside one.
    pub(crate) fn at_eof(self) -> Result<Option<Vec<u8>>, ReadError> {
        if self.started {
            Err(ReadError::Truncated)
        } else {
            Ok(None)
        }
    }
}
