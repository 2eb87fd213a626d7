//! The host's block devices from `/sys/class/block`: which disk a device number belongs to
//! (a partition counts on its disk, as the original's `major, first_minor` keys do) and
//! the disk's name.

use std::collections::HashMap;
use std::path::Path;

/// Bits of the minor number in the kernel's internal `dev_t` (`MINORBITS`).
const MINORBITS: u32 = 20;

/// The kernel's internal encoding of a device number (`MKDEV`), as BPF programs see it.
pub fn mkdev(major: u32, minor: u32) -> u32 {
    (major << MINORBITS) | (minor & ((1 << MINORBITS) - 1))
}

/// The `(major, minor)` of a kernel-internal `dev_t`.
#[cfg(test)]
pub fn split_dev(dev: u32) -> (u32, u32) {
    (dev >> MINORBITS, dev & ((1 << MINORBITS) - 1))
}

/// A whole disk (a gendisk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// Major number.
    pub major: u32,
    /// First minor number (the disk's own minor).
    pub first_minor: u32,
    /// Kernel name (`sda`, `vda`, `loop3`, `nvme0n1`).
    pub name: String,
}

impl Disk {
    /// The entity id of events: `major_first_minor`, as the original.
    pub fn entity_id(&self) -> String {
        format!("{}_{}", self.major, self.first_minor)
    }

    /// The disk's key in the BPF maps.
    pub fn dev(&self) -> u32 {
        mkdev(self.major, self.first_minor)
    }
}

/// Device number → disk, for every block device and partition of one scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockDevs {
    by_dev: HashMap<u32, Disk>,
}

/// Parses the text of a sysfs `dev` file (`"8:1\n"`).
pub fn parse_dev(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.trim().split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

fn read_dev(dir: &Path) -> Option<(u32, u32)> {
    parse_dev(&std::fs::read_to_string(dir.join("dev")).ok()?)
}

impl BlockDevs {
    /// Scans `<sys>/class/block` (`sys` is `/sys` on a host). A device whose files cannot
    /// be read is skipped.
    pub fn scan(sys: &Path) -> Self {
        let mut by_dev = HashMap::new();
        let Ok(entries) = std::fs::read_dir(sys.join("class/block")) else {
            return BlockDevs { by_dev };
        };
        for entry in entries.flatten() {
            let link = entry.path();
            // The class entry is a symlink into /sys/devices; a partition's directory sits
            // inside its disk's.
            let Ok(dir) = std::fs::canonicalize(&link) else {
                continue;
            };
            let Some((major, minor)) = read_dev(&dir) else {
                continue;
            };
            let disk = if dir.join("partition").exists() {
                let Some(parent) = dir.parent() else { continue };
                let (Some((dmajor, dminor)), Some(name)) = (read_dev(parent), parent.file_name())
                else {
                    continue;
                };
                Disk {
                    major: dmajor,
                    first_minor: dminor,
                    name: name.to_string_lossy().into_owned(),
                }
            } else {
                Disk {
                    major,
                    first_minor: minor,
                    name: entry.file_name().to_string_lossy().into_owned(),
                }
            };
            by_dev.insert(mkdev(major, minor), disk);
        }
        BlockDevs { by_dev }
    }

    /// The disk device number `dev` (kernel encoding) is, or is a partition of.
    pub fn disk_of(&self, dev: u32) -> Option<&Disk> {
        self.by_dev.get(&dev)
    }

    /// The disk named `name` (a partition's name is not kept: see [`dev_filter`]).
    pub fn by_name(&self, name: &str) -> Option<&Disk> {
        self.by_dev.values().find(|d| d.name == name)
    }

    /// How many device numbers are known.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_dev.len()
    }
}

/// Which disk `dev_name` selects: `None` = every disk. A partition name selects its disk.
/// An unknown name selects nothing (`Some(None)`), so a typo shows as no records rather
/// than as every disk.
pub fn dev_filter(sys: &Path, devs: &BlockDevs, dev_name: &str) -> Option<Option<u32>> {
    let name = dev_name.trim().trim_start_matches("/dev/");
    if name.is_empty() {
        return None;
    }
    if let Some(d) = devs.by_name(name) {
        return Some(Some(d.dev()));
    }
    let dir = sys.join("class/block").join(name);
    let disk = read_dev(&dir)
        .and_then(|(ma, mi)| devs.disk_of(mkdev(ma, mi)))
        .map(Disk::dev);
    Some(disk)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A directory removed when dropped.
    struct TempTree(std::path::PathBuf);

    impl TempTree {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempTree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A fake sysfs: sda with partition sda1, loop3, and a broken entry.
    fn fixture(tag: &str) -> TempTree {
        let t = TempTree(
            std::env::temp_dir().join(format!("gala-ioprobe-sys-{}-{tag}", std::process::id())),
        );
        let _ = std::fs::remove_dir_all(t.path());
        let root = t.path();
        let sda = root.join("devices/pci0000:00/host0/block/sda");
        std::fs::create_dir_all(sda.join("sda1")).unwrap();
        std::fs::write(sda.join("dev"), "8:0\n").unwrap();
        std::fs::write(sda.join("sda1/dev"), "8:1\n").unwrap();
        std::fs::write(sda.join("sda1/partition"), "1\n").unwrap();
        let loop3 = root.join("devices/virtual/block/loop3");
        std::fs::create_dir_all(&loop3).unwrap();
        std::fs::write(loop3.join("dev"), "7:3\n").unwrap();
        let bad = root.join("devices/virtual/block/bad");
        std::fs::create_dir_all(&bad).unwrap();
        std::fs::write(bad.join("dev"), "garbage\n").unwrap();
        let class = root.join("class/block");
        std::fs::create_dir_all(&class).unwrap();
        symlink(
            "../../devices/pci0000:00/host0/block/sda",
            class.join("sda"),
        )
        .unwrap();
        symlink(
            "../../devices/pci0000:00/host0/block/sda/sda1",
            class.join("sda1"),
        )
        .unwrap();
        symlink("../../devices/virtual/block/loop3", class.join("loop3")).unwrap();
        symlink("../../devices/virtual/block/bad", class.join("bad")).unwrap();
        symlink("../../devices/virtual/block/gone", class.join("gone")).unwrap();
        t
    }

    #[test]
    fn partitions_map_to_their_disk() {
        let t = fixture("disks");
        let devs = BlockDevs::scan(t.path());
        assert_eq!(devs.len(), 3);
        let sda = Disk {
            major: 8,
            first_minor: 0,
            name: "sda".into(),
        };
        assert_eq!(devs.disk_of(mkdev(8, 0)), Some(&sda));
        assert_eq!(devs.disk_of(mkdev(8, 1)), Some(&sda));
        assert_eq!(devs.disk_of(mkdev(7, 3)).unwrap().name, "loop3");
        assert_eq!(devs.disk_of(mkdev(0, 42)), None);
        assert_eq!(sda.entity_id(), "8_0");
    }

    #[test]
    fn dev_name_selects_a_disk_or_nothing() {
        let t = fixture("filter");
        let devs = BlockDevs::scan(t.path());
        assert_eq!(dev_filter(t.path(), &devs, ""), None);
        assert_eq!(dev_filter(t.path(), &devs, "sda"), Some(Some(mkdev(8, 0))));
        assert_eq!(
            dev_filter(t.path(), &devs, "/dev/sda1"),
            Some(Some(mkdev(8, 0)))
        );
        assert_eq!(dev_filter(t.path(), &devs, "sdz"), Some(None));
    }

    #[test]
    fn dev_text_and_encoding() {
        assert_eq!(parse_dev("259:0\n"), Some((259, 0)));
        assert_eq!(parse_dev("8:x"), None);
        assert_eq!(parse_dev(""), None);
        assert_eq!(split_dev(mkdev(259, 7)), (259, 7));
        assert_eq!(mkdev(7, 3), (7 << 20) | 3);
    }

    #[test]
    fn missing_sysfs_is_empty() {
        assert_eq!(BlockDevs::scan(Path::new("/nonexistent-gala")).len(), 0);
    }
}
