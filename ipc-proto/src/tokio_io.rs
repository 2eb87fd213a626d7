//! Asynchronous message I/O for the daemon, on any tokio stream (typically a
//! `tokio::io::BufReader` over the daemon's end of the socket).

use tokio::io::{self, AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::blocking::LineAccumulator;
use crate::encoding::Encoding;
use crate::error::{DecodeError, ReadError, WriteError};
use crate::frame::{self, LEN_PREFIX, MAX_FRAME_LEN};
use crate::WireMessage;

/// Reads the next message. Returns `Ok(None)` when the peer closed the stream between messages.
///
/// The reader must be buffered and kept across calls: it holds bytes already read past the
/// current message. A [`ReadError::Decode`] concerns one frame only; the next call reads the
/// following message.
///
/// Not cancel-safe: a future dropped mid-frame (e.g. by losing a `select!`) leaves the stream out
/// of sync. Where reads race other events, read into a [`FrameDecoder`](crate::FrameDecoder)
/// instead, which keeps partial frames across reads.
pub async fn read_message<M: WireMessage, R: AsyncBufRead + Unpin>(
    reader: &mut R,
    encoding: Encoding,
) -> Result<Option<M>, ReadError> {
    match encoding {
        Encoding::Proto => read_proto(reader).await,
        Encoding::Json => loop {
            let Some(line) = read_line(reader).await? else {
                return Ok(None);
            };
            if let Some(message) = frame::decode_json_line(&line)? {
                return Ok(Some(message));
            }
        },
    }
}

/// Writes `message` as one frame and flushes the writer.
pub async fn write_message<M: WireMessage, W: AsyncWrite + Unpin>(
    writer: &mut W,
    message: &M,
    encoding: Encoding,
) -> Result<(), WriteError> {
    let frame = frame::encode(message, encoding)?;
    writer.write_all(&frame).await?;
    writer.flush().await?;
    Ok(())
}

async fn read_proto<M: WireMessage, R: AsyncBufRead + Unpin>(
    reader: &mut R,
) -> Result<Option<M>, ReadError> {
    let mut prefix = [0u8; LEN_PREFIX];
    if !read_exact_or_eof(reader, &mut prefix).await? {
        return Ok(None);
    }
    let len = frame::body_len(prefix);
    if len > MAX_FRAME_LEN as u64 {
        let skipped = io::copy(&mut reader.take(len), &mut io::sink()).await?;
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
    if !read_exact_or_eof(reader, &mut body).await? {
        return Err(ReadError::Truncated);
    }
    Ok(Some(frame::decode_proto_body(&body)?))
}

/// Fills `buf`; `Ok(false)` if the stream ended before its first byte, [`ReadError::Truncated`]
/// if it ended after.
async fn read_exact_or_eof<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut [u8],
) -> Result<bool, ReadError> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]).await {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(ReadError::Truncated),
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(true)
}

/// Reads one line without its `\n`, holding at most [`MAX_FRAME_LEN`] bytes of it.
async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<Option<Vec<u8>>, ReadError> {
    let mut line = LineAccumulator::default();
    loop {
        let available = match reader.fill_buf().await {
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
