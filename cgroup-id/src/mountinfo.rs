//! The mount table of a process (`/proc/<pid>/mountinfo`): its lines parsed and unescaped,
//! for the filesystems baseinfo reports and the cgroup hierarchies the daemon and the probes
//! look for.

/// One line of `/proc/<pid>/mountinfo`, unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// `major:minor` of the filesystem (the same for every bind mount of it).
    pub device: String,
    /// The directory of the filesystem that is mounted (`/` unless a bind of a subtree).
    pub root: String,
    /// Where it is mounted.
    pub mount_point: String,
    /// Read-only by the mount's flags or the superblock's (e.g. ext4 after
    /// `errors=remount-ro`).
    pub read_only: bool,
    /// Filesystem type (`ext4`, `nfs4`, `fuse.sshfs`).
    pub fstype: String,
    /// Mount source (`/dev/sda1`, `server:/export`, `tmpfs`).
    pub source: String,
    /// The superblock's options (a v1 cgroup hierarchy's controllers are among them).
    pub super_options: String,
}

/// Undoes the kernel's octal escapes (`\040` space, `\011` tab, `\012` newline, `\134`
/// backslash) of a mountinfo field; `None` if the result is not UTF-8.
pub fn unescape_octal(field: &str) -> Option<String> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|d| {
            bytes[i] == b'\\' && d[0] <= b'3' && d.iter().all(|b| (b'0'..=b'7').contains(b))
        });
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Parses one mountinfo line: `id parent major:minor root mount-point options [optional...]
/// - fstype source super-options`. `None` for a line that does not have that shape.
pub fn parse_line(line: &str) -> Option<Mount> {
    let (mount, fs) = line.split_once(" - ")?;
    let mut left = mount.split_ascii_whitespace().skip(2);
    let device = left.next()?;
    let root = unescape_octal(left.next()?)?;
    let mount_point = unescape_octal(left.next()?)?;
    let options = left.next()?;
    let mut right = fs.split_ascii_whitespace();
    let fstype = unescape_octal(right.next()?)?;
    let source = unescape_octal(right.next()?)?;
    let super_options = right.next().unwrap_or_default();
    let ro = |opts: &str| opts.split(',').any(|o| o == "ro");
    device.split_once(':')?;
    Some(Mount {
        device: device.to_owned(),
        root,
        mount_point,
        read_only: ro(options) || ro(super_options),
        fstype,
        source,
        super_options: super_options.to_owned(),
    })
}

/// The mounts of a mountinfo text, lines that do not have the shape skipped.
pub fn parse(text: &str) -> impl Iterator<Item = Mount> + '_ {
    text.lines().filter_map(parse_line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_escapes_are_undone() {
        assert_eq!(
            unescape_octal("/data\\040disk").as_deref(),
            Some("/data disk")
        );
        assert_eq!(
            unescape_octal("/a\\011b\\012c\\134d").as_deref(),
            Some("/a\tb\nc\\d")
        );
        // Not an escape: kept as written.
        assert_eq!(unescape_octal("/a\\x\\04").as_deref(), Some("/a\\x\\04"));
        assert_eq!(unescape_octal("/a\\777").as_deref(), Some("/a\\777"));
        assert_eq!(unescape_octal("/caf\\303\\251").as_deref(), Some("/café"));
        assert_eq!(unescape_octal("/bad\\377"), None);
    }

    #[test]
    fn mountinfo_lines() {
        let m = parse_line(
            "36 35 98:0 /mnt1 /mnt/my\\040disk rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue",
        )
        .unwrap();
        assert_eq!(
            m,
            Mount {
                device: "98:0".into(),
                root: "/mnt1".into(),
                mount_point: "/mnt/my disk".into(),
                read_only: false,
                fstype: "ext3".into(),
                source: "/dev/root".into(),
                super_options: "rw,errors=continue".into(),
            }
        );
        // No optional fields; read-only by the mount's flags or by the superblock's.
        let ro = parse_line("22 1 8:2 / / ro,relatime - ext4 /dev/sda2 rw").unwrap();
        assert!(ro.read_only);
        let sb = parse_line("22 1 8:2 / /srv rw - ext4 /dev/sda3 ro,errors=remount-ro").unwrap();
        assert!(sb.read_only);
        // Columns a later kernel might add after the super options do not matter.
        assert!(parse_line("22 1 8:2 / / rw - ext4 /dev/sda2 rw extra").is_some());
        assert_eq!(parse_line("22 1 8:2 / / rw ext4 /dev/sda2 rw"), None);
        assert_eq!(parse_line("22 1 8:2 / - ext4 /dev/sda2 rw"), None);
        assert_eq!(parse_line("22 1 82 / / rw - ext4 /dev/sda2 rw"), None);
        assert_eq!(parse_line("22 1 8:2 / / rw - ext4"), None);
        assert_eq!(parse_line(""), None);
    }

    #[test]
    fn a_table_gives_its_mounts() {
        let text = "25 1 0:22 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\ngarbage\n30 23 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        let mounts: Vec<Mount> = parse(text).collect();
        assert_eq!(mounts.len(), 2);
        assert_eq!(mounts[0].super_options, "rw,cpu");
        assert_eq!(mounts[1].fstype, "cgroup2");
    }
}
