//! A size-bounded log file: `<dir>/<name>` plus one backup `<dir>/<name>.1`.
//!
//! Shared by the daemon's debug log ([`crate::logging`], 100 MB per file) and egress's event
//! and meta logs (docs/reference/config-and-egress.md §9), so it belongs to neither. When a
//! write would push the current file past its limit, the file is renamed to `<name>.1`
//! (replacing the previous backup) and a fresh file is started, so the pair never holds more
//! than twice the limit. Nothing but the own backup is ever deleted.

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of the directories created for log files.
pub const DIR_MODE: u32 = 0o750;
/// Mode of the log files created.
pub const FILE_MODE: u32 = 0o640;

/// A log file operation that failed, naming the path it failed on.
#[derive(Debug, thiserror::Error)]
pub enum LogFileError {
    /// The log directory could not be created.
    #[error("create directory {}: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The log file could not be opened or created.
    #[error("open {}: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The full log file could not be renamed to its backup.
    #[error("rotate {} to {}: {source}", path.display(), backup.display())]
    Rotate {
        /// The file being rotated.
        path: PathBuf,
        /// The backup it was renamed to.
        backup: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Writing to the log file failed.
    #[error("write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

impl From<LogFileError> for io::Error {
    fn from(e: LogFileError) -> Self {
        let kind = match &e {
            LogFileError::CreateDir { source, .. }
            | LogFileError::Open { source, .. }
            | LogFileError::Rotate { source, .. }
            | LogFileError::Write { source, .. } => source.kind(),
        };
        io::Error::new(kind, e)
    }
}

/// Creates `dir` and its missing parents; a directory created here gets exactly
/// [`DIR_MODE`], whatever the umask. An existing directory is left as it is.
pub fn create_dir(dir: &Path) -> Result<(), LogFileError> {
    let err = |source| LogFileError::CreateDir {
        path: dir.to_owned(),
        source,
    };
    if dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(err)?;
    std::fs::set_permissions(dir, Permissions::from_mode(DIR_MODE)).map_err(err)
}

/// Opens `path` for appending; a file created here gets exactly [`FILE_MODE`], whatever the
/// umask. An existing file keeps its mode.
pub fn open_append(path: &Path) -> Result<File, LogFileError> {
    let err = |source| LogFileError::Open {
        path: path.to_owned(),
        source,
    };
    let created = OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path);
    match created {
        Ok(file) => {
            file.set_permissions(Permissions::from_mode(FILE_MODE))
                .map_err(err)?;
            Ok(file)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            OpenOptions::new().append(true).open(path).map_err(err)
        }
        Err(e) => Err(err(e)),
    }
}

/// An append-only file that rotates to a single `.1` backup when it would exceed its limit.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    backup: PathBuf,
    file: File,
    len: u64,
    max_file_bytes: u64,
}

impl RotatingFile {
    /// Opens (appending) or creates `<dir>/<name>`, creating `dir` if needed. Each of the
    /// current file and its backup stays within `max_file_bytes` (at least 1).
    pub fn open(dir: &Path, name: &str, max_file_bytes: u64) -> Result<Self, LogFileError> {
        create_dir(dir)?;
        let path = dir.join(name);
        let backup = dir.join(format!("{name}.1"));
        let file = open_append(&path)?;
        let len = file
            .metadata()
            .map_err(|source| LogFileError::Open {
                path: path.clone(),
                source,
            })?
            .len();
        Ok(RotatingFile {
            path,
            backup,
            file,
            len,
            max_file_bytes: max_file_bytes.max(1),
        })
    }

    /// The current file, `<dir>/<name>`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The backup file, `<dir>/<name>.1`.
    pub fn backup_path(&self) -> &Path {
        &self.backup
    }

    /// Bytes in the current file, as far as this writer knows.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the current file is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `buf` whole, rotating first if it would not fit. A single `buf` larger than the
    /// limit goes alone into a fresh file, cut to the limit: the size bound is kept even then.
    pub fn append(&mut self, buf: &[u8]) -> Result<(), LogFileError> {
        if buf.is_empty() {
            return Ok(());
        }
        if self.len > 0 && self.len.saturating_add(buf.len() as u64) > self.max_file_bytes {
            self.rotate()?;
        }
        let room =
            usize::try_from(self.max_file_bytes.saturating_sub(self.len)).unwrap_or(usize::MAX);
        let buf = &buf[..buf.len().min(room)];
        self.file
            .write_all(buf)
            .map_err(|source| LogFileError::Write {
                path: self.path.clone(),
                source,
            })?;
        self.len += buf.len() as u64;
        Ok(())
    }

    /// Renames the current file to the backup (replacing it) and starts an empty file.
    pub fn rotate(&mut self) -> Result<(), LogFileError> {
        match std::fs::rename(&self.path, &self.backup) {
            Ok(()) => {}
            // Someone removed the file under us: nothing to keep, just start afresh.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(LogFileError::Rotate {
                    path: self.path.clone(),
                    backup: self.backup.clone(),
                    source,
                })
            }
        }
        self.file = open_append(&self.path)?;
        self.len = 0;
        Ok(())
    }
}

impl Write for RotatingFile {
    /// Appends `buf` whole (see [`RotatingFile::append`]).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.append(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap_or_default()
    }

    #[test]
    fn creates_dir_and_file_with_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        let mut f = RotatingFile::open(&dir, "x.log", 100).unwrap();
        f.append(b"hello\n").unwrap();
        assert_eq!(read(&dir.join("x.log")), "hello\n");
        let fmode = std::fs::metadata(dir.join("x.log"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(fmode & 0o777, FILE_MODE);
        let dmode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(dmode & 0o777, DIR_MODE);
        // Rotation creates the new file with the same mode.
        f.rotate().unwrap();
        let fmode = std::fs::metadata(dir.join("x.log"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(fmode & 0o777, FILE_MODE);
    }

    #[test]
    fn appends_to_existing_file() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("x.log"), "old\n").unwrap();
        let mut f = RotatingFile::open(tmp.path(), "x.log", 100).unwrap();
        assert_eq!(f.len(), 4);
        f.append(b"new\n").unwrap();
        assert_eq!(read(&tmp.path().join("x.log")), "old\nnew\n");
    }

    #[test]
    fn rotates_to_single_backup() {
        let tmp = tempfile::tempdir().unwrap();
        let mut f = RotatingFile::open(tmp.path(), "x.log", 10).unwrap();
        f.append(b"aaaa\n").unwrap();
        f.append(b"bbbb\n").unwrap(); // exactly 10: still fits
        f.append(b"cccc\n").unwrap(); // would be 15: rotate
        assert_eq!(read(&tmp.path().join("x.log")), "cccc\n");
        assert_eq!(read(&tmp.path().join("x.log.1")), "aaaa\nbbbb\n");
        f.append(b"dddd\n").unwrap();
        f.append(b"eeee\n").unwrap(); // rotate again: old backup replaced
        assert_eq!(read(&tmp.path().join("x.log")), "eeee\n");
        assert_eq!(read(&tmp.path().join("x.log.1")), "cccc\ndddd\n");
    }

    #[test]
    fn never_exceeds_twice_the_limit_and_deletes_nothing_else() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("other"), "keep").unwrap();
        std::fs::write(tmp.path().join("x.log.2"), "keep").unwrap();
        let mut f = RotatingFile::open(tmp.path(), "x.log", 64).unwrap();
        for i in 0..1000u32 {
            let line = format!("line {i} {}\n", "z".repeat((i % 70) as usize));
            f.append(line.as_bytes()).unwrap();
            let cur = std::fs::metadata(tmp.path().join("x.log")).unwrap().len();
            let bak = std::fs::metadata(tmp.path().join("x.log.1")).map_or(0, |m| m.len());
            assert!(cur <= 64 && bak <= 64, "{cur} {bak}");
        }
        assert_eq!(read(&tmp.path().join("other")), "keep");
        assert_eq!(read(&tmp.path().join("x.log.2")), "keep");
        let mut names: Vec<String> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["other", "x.log", "x.log.1", "x.log.2"]);
    }

    #[test]
    fn oversized_write_is_cut_to_the_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let mut f = RotatingFile::open(tmp.path(), "x.log", 8).unwrap();
        f.append(b"ab\n").unwrap();
        f.append(b"0123456789abcdef\n").unwrap();
        assert_eq!(read(&tmp.path().join("x.log")), "01234567");
        assert_eq!(read(&tmp.path().join("x.log.1")), "ab\n");
    }

    #[test]
    fn survives_removed_file() {
        let tmp = tempfile::tempdir().unwrap();
        let mut f = RotatingFile::open(tmp.path(), "x.log", 8).unwrap();
        f.append(b"1234567\n").unwrap();
        std::fs::remove_file(tmp.path().join("x.log")).unwrap();
        f.append(b"next\n").unwrap();
        assert_eq!(read(&tmp.path().join("x.log")), "next\n");
    }

    #[test]
    fn open_error_names_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let blocker = tmp.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let err = RotatingFile::open(&blocker.join("sub"), "x.log", 8).unwrap_err();
        assert!(
            err.to_string().contains(&*blocker.to_string_lossy()),
            "{err}"
        );
    }
}
