//! Readable text for a failed request: the kernel's `blk_status_t` names (block/blk-core.c
//! `blk_errors[]`), also reached from a negative errno as older tracepoints reported, and
//! the request's operation (`rwbs`-style).

/// A block status and its text, with the errno the kernel maps it to.
struct Status {
    status: i32,
    errno: i32,
    text: &'static str,
}

/// `blk_status_t` values of Linux 6.18 (`include/linux/blk_types.h`).
const STATUSES: &[Status] = &[
    Status {
        status: 1,
        errno: libc::EOPNOTSUPP,
        text: "operation not supported",
    },
    Status {
        status: 2,
        errno: libc::ETIMEDOUT,
        text: "timeout",
    },
    Status {
        status: 3,
        errno: libc::ENOSPC,
        text: "no space (critical space allocation)",
    },
    Status {
        status: 4,
        errno: libc::ENOLINK,
        text: "recoverable transport",
    },
    Status {
        status: 5,
        errno: libc::EREMOTEIO,
        text: "critical target",
    },
    Status {
        status: 6,
        errno: libc::EBADE,
        text: "reservation conflict",
    },
    Status {
        status: 7,
        errno: libc::ENODATA,
        text: "critical medium",
    },
    Status {
        status: 8,
        errno: libc::EILSEQ,
        text: "protection",
    },
    Status {
        status: 9,
        errno: libc::ENOMEM,
        text: "kernel resource",
    },
    Status {
        status: 10,
        errno: libc::EIO,
        text: "I/O error",
    },
    Status {
        status: 11,
        errno: libc::EREMCHG,
        text: "dm internal retry",
    },
    Status {
        status: 12,
        errno: libc::EAGAIN,
        text: "nonblocking retry",
    },
    Status {
        status: 13,
        errno: libc::EBUSY,
        text: "device resource",
    },
    Status {
        status: 14,
        errno: libc::ETOOMANYREFS,
        text: "open zones exceeded",
    },
    Status {
        status: 15,
        errno: libc::EOVERFLOW,
        text: "active zones exceeded",
    },
    Status {
        status: 16,
        errno: libc::ENODEV,
        text: "device offline",
    },
    Status {
        status: 17,
        errno: libc::ETIME,
        text: "duration limit exceeded",
    },
    Status {
        status: 19,
        errno: libc::EINVAL,
        text: "invalid",
    },
];

/// The text of `code`: a `blk_status_t` (positive, what `tp_btf` programs see) or a
/// negative errno (what the classic tracepoint's `error` field holds). 0 is "OK".
pub fn error_text(code: i32) -> &'static str {
    if code == 0 {
        return "OK";
    }
    let found = if code > 0 {
        STATUSES.iter().find(|s| s.status == code)
    } else {
        STATUSES.iter().find(|s| s.errno == -code)
    };
    // The kernel maps every unknown status to -EIO.
    found.map_or("I/O error", |s| s.text)
}

/// `code` as a `blk_status_t`: itself when positive (or 0), the status of a negative errno
/// (what `block_rq_complete` passes on kernels before `blk_status_t` reached it, 5.10),
/// so that `err_code` means the same on every kernel. Unknown errnos are I/O errors, as
/// the kernel's own `errno_to_blk_status`.
pub fn block_status(code: i32) -> i32 {
    if code >= 0 {
        return code;
    }
    STATUSES
        .iter()
        .find(|s| s.errno == -code)
        .map_or(10, |s| s.status)
}

/// The operation of a request's `cmd_flags`, as blktrace's rwbs letter: R, W, D (discard),
/// E (secure erase), F (flush), Z (write zeroes), N (other).
pub fn op_text(cmd_flags: u32) -> &'static str {
    match cmd_flags & 0xff {
        0 => "R",
        1 => "W",
        2 => "F",
        3 => "D",
        5 => "E",
        9 => "Z",
        _ => "N",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_errno_give_the_same_text() {
        assert_eq!(error_text(10), "I/O error");
        assert_eq!(error_text(-libc::EIO), "I/O error");
        assert_eq!(error_text(2), "timeout");
        assert_eq!(error_text(-libc::ETIMEDOUT), "timeout");
        assert!(error_text(3).starts_with("no space"));
        assert!(error_text(-libc::ENOSPC).starts_with("no space"));
        assert_eq!(error_text(0), "OK");
        assert_eq!(error_text(200), "I/O error");
        assert_eq!(error_text(-9999), "I/O error");
    }

    #[test]
    fn negative_errnos_become_block_statuses() {
        assert_eq!(block_status(-libc::EIO), 10);
        assert_eq!(block_status(-libc::ENOSPC), 3);
        assert_eq!(block_status(-libc::EOPNOTSUPP), 1);
        assert_eq!(block_status(-9999), 10);
        assert_eq!(block_status(3), 3);
        assert_eq!(block_status(0), 0);
    }

    #[test]
    fn operations() {
        assert_eq!(op_text(0), "R");
        assert_eq!(op_text(1 | (1 << 11)), "W"); // REQ_SYNC set
        assert_eq!(op_text(2), "F");
        assert_eq!(op_text(3), "D");
        assert_eq!(op_text(0x22), "N");
    }
}
