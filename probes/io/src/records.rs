//! The records of the `io_events` ring buffer, laid out as `src/bpf/io.bpf.c` writes them.

use gala_ebpf::{read_pod, Pod};

/// `kind` of a completed sampled request.
const REC_LATENCY: u32 = 1;
/// `kind` of a failed request.
const REC_ERROR: u32 = 2;

/// `struct io_lat_rec`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct LatencyRecord {
    /// Always [`REC_LATENCY`].
    pub kind: u32,
    /// The disk (kernel `dev_t` of major, first_minor).
    pub dev: u32,
    /// Request stage, ns.
    pub req_ns: u64,
    /// Driver stage, ns.
    pub driver_ns: u64,
    /// Device stage, ns.
    pub device_ns: u64,
    /// Process that started the request (0: a kernel thread).
    pub pid: u32,
    /// Bytes of the request.
    pub len: u32,
    /// The request's `cmd_flags`.
    pub op: u32,
    /// Padding.
    pub pad: u32,
    /// Command name of that process.
    pub comm: [u8; 16],
}

/// `struct io_err_rec`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ErrorRecord {
    /// Always [`REC_ERROR`].
    pub kind: u32,
    /// The disk.
    pub dev: u32,
    /// `blk_status_t` of the failure.
    pub status: i32,
    /// The submitting process when `submitter` is 1 (the request was sampled), else the
    /// task the completion ran in (a kernel worker, an interrupted task).
    pub pid: u32,
    /// Bytes the completion covered.
    pub len: u32,
    /// The request's `cmd_flags`.
    pub op: u32,
    /// 1 when `pid`/`comm` are the submitter's.
    pub submitter: u32,
    /// Padding.
    pub pad: u32,
    /// First sector of the request.
    pub sector: u64,
    /// Command name of that process.
    pub comm: [u8; 16],
}

// SAFETY: integers and byte arrays only.
unsafe impl Pod for LatencyRecord {}
// SAFETY: integers and byte arrays only.
unsafe impl Pod for ErrorRecord {}

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
    let kind = u32::from_ne_bytes(data.get(..4)?.try_into().ok()?);
    match kind {
        REC_LATENCY => read_pod(data).map(Record::Latency),
        REC_ERROR => read_pod(data).map(Record::Error),
        _ => None,
    }
}

/// A NUL-terminated command name as text (lossy; `|` would be refused by the SDK, so it
/// becomes `/`).
pub fn comm_text(comm: &[u8; 16]) -> String {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..end]).replace(['|', '\n', '\r'], "/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_bpf_structs() {
        assert_eq!(std::mem::size_of::<LatencyRecord>(), 64);
        assert_eq!(std::mem::size_of::<ErrorRecord>(), 56);
    }

    #[test]
    fn parses_and_rejects() {
        let mut rec = LatencyRecord {
            kind: REC_LATENCY,
            dev: 7 << 20 | 3,
            req_ns: 30,
            driver_ns: 10,
            device_ns: 20,
            pid: 1,
            len: 4096,
            op: 1,
            pad: 0,
            comm: *b"dd\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
        };
        // SAFETY: viewing a Pod as bytes.
        let bytes = |r: &LatencyRecord| unsafe {
            std::slice::from_raw_parts((r as *const LatencyRecord).cast::<u8>(), 64).to_vec()
        };
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
        assert_eq!(comm_text(b"a|b\0xxxxxxxxxxxx"), "a/b");
    }
}
