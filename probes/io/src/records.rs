//! The records of the `io_events` ring buffer, laid out as `src/bpf/io.bpf.c` writes them.

use gala_ebpf::{read_pod, Pod};

use crate::skel::types;

/// `struct io_lat_rec`: a completed sampled request (kind `REC_LATENCY`): the disk
/// (`dev`, the kernel `dev_t` of major, first_minor), the three stages in ns, the process
/// that started it (`pid` 0: a kernel thread) and its `comm`, `len` bytes, the request's
/// `cmd_flags` (`op`).
pub type LatencyRecord = types::io_lat_rec;

/// `struct io_err_rec`: a failed request (kind `REC_ERROR`): `status` is the
/// `blk_status_t`; `pid`/`comm` are the submitter's when `submitter` is 1 (the request was
/// sampled), else the task the completion ran in (a kernel worker, an interrupted task).
pub type ErrorRecord = types::io_err_rec;

// SAFETY: generated from the object's BTF: integers and byte arrays only, no implicit
// padding (the C structs spell out theirs).
unsafe impl Pod for LatencyRecord {}
// SAFETY: as above.
unsafe impl Pod for ErrorRecord {}

/// The kind tag every record starts with: [`parse`] reads it before it knows the record.
const _: () = assert!(
    std::mem::offset_of!(types::io_lat_rec, kind) == 0
        && std::mem::offset_of!(types::io_err_rec, kind) == 0
);

/// One ring buffer record.
#[derive(Debug, Clone, Copy)]
pub enum Record {
    /// A completed sampled request.
    Latency(LatencyRecord),
    /// A failed request.
    Error(ErrorRecord),
}

/// Decodes one record; `None` for a short or unknown one (counted by the caller).
pub fn parse(data: &[u8]) -> Option<Record> {
    let kind = types::io_rec_kind(u32::from_ne_bytes(data.get(..4)?.try_into().ok()?));
    match kind {
        types::io_rec_kind::REC_LATENCY => read_pod(data).map(Record::Latency),
        types::io_rec_kind::REC_ERROR => read_pod(data).map(Record::Error),
        _ => None,
    }
}

/// A NUL-terminated command name as text (lossy; `|` would be refused by the SDK, so it
/// becomes `/`).
pub fn comm_text(comm: &[i8; 16]) -> String {
    let comm = gala_ebpf::char_bytes(comm);
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..end]).replace(['|', '\n', '\r'], "/")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `text` as a C `char[16]`.
    fn comm(text: &[u8]) -> [i8; 16] {
        let mut out = [0i8; 16];
        for (o, b) in out.iter_mut().zip(text) {
            *o = *b as i8;
        }
        out
    }

    #[test]
    fn parses_and_rejects() {
        let mut rec = LatencyRecord {
            kind: types::io_rec_kind::REC_LATENCY.0,
            dev: 7 << 20 | 3,
            req_ns: 30,
            driver_ns: 10,
            device_ns: 20,
            pid: 1,
            len: 4096,
            comm: comm(b"dd"),
            ..Default::default()
        };
        let bytes = |r: &LatencyRecord| gala_ebpf::bytes_of(r).to_vec();
        match parse(&bytes(&rec)) {
            Some(Record::Latency(r)) => {
                assert_eq!(r.req_ns, 30);
                assert_eq!(comm_text(&r.comm), "dd");
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(&bytes(&rec)[..40]).is_none());
        rec.kind = 99;
        assert!(parse(&bytes(&rec)).is_none());
        assert!(parse(&[1, 0]).is_none());
        assert_eq!(comm_text(&comm(b"a|b\0xxxxxxxxxxxx")), "a/b");
    }
}
