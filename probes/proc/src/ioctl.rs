//! The parts of an ioctl request code (`_IOC_DIR`, `_IOC_TYPE`, `_IOC_NR`, `_IOC_SIZE` of
//! the generic Linux encoding used by x86 and arm64), as the `proc_syscall_ioctl` labels.

/// An ioctl request code taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoctlCmd {
    /// `--` none, `-w` write, `r-` read, `rw` both (the original's notation).
    pub dir: &'static str,
    /// The type byte as a character, or `0xNN` when it is not a printable one (or is `|`).
    pub kind: String,
    /// The command number.
    pub nr: u32,
    /// The argument size, bytes.
    pub size: u32,
}

/// Decodes `cmd` (only its low 32 bits are the request code).
pub fn decode(cmd: u64) -> IoctlCmd {
    let cmd = cmd as u32;
    let dir = match cmd >> 30 {
        0 => "--",
        1 => "-w",
        2 => "r-",
        _ => "rw",
    };
    let byte = ((cmd >> 8) & 0xff) as u8;
    let kind = if byte.is_ascii_graphic() && byte != b'|' {
        char::from(byte).to_string()
    } else {
        format!("0x{byte:02x}")
    };
    IoctlCmd {
        dir,
        kind,
        nr: cmd & 0xff,
        size: (cmd >> 16) & 0x3fff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_codes_come_apart() {
        // TCGETS = 0x5401: no direction bits, type 'T', nr 1.
        assert_eq!(
            decode(0x5401),
            IoctlCmd {
                dir: "--",
                kind: "T".into(),
                nr: 1,
                size: 0
            }
        );
        // FIONREAD = 0x541B; BLKGETSIZE64 = _IOR(0x12, 114, size_t) = 0x80081272.
        assert_eq!(decode(0x541B).nr, 0x1b);
        assert_eq!(
            decode(0x8008_1272),
            IoctlCmd {
                dir: "r-",
                kind: "0x12".into(),
                nr: 114,
                size: 8
            }
        );
        // _IOWR('|', 1, 4): '|' cannot go into a record.
        let c = decode((3 << 30) | (4 << 16) | (u64::from(b'|') << 8) | 1);
        assert_eq!((c.dir, c.kind.as_str(), c.size), ("rw", "0x7c", 4));
        assert_eq!(decode((1 << 30) | (0x41 << 8)).dir, "-w");
        // Upper bits of a 64-bit register are not part of the code.
        assert_eq!(decode(0xffff_ffff_0000_5401), decode(0x5401));
    }
}
