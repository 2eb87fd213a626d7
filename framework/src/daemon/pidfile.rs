//! The singleton lock: an exclusive `flock` on the pid file, which holds the daemon's pid.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use super::DaemonError;

/// The locked pid file; [`PidFile::remove`] deletes it at the end of the shutdown.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    /// Held for the life of the daemon: the lock ends when the file is closed.
    _lock: Flock<File>,
}

impl PidFile {
    /// Creates the run directory (0750) and the pid file (0640) if missing, takes the lock
    /// without waiting (another daemon holding it is an error) and writes our pid.
    pub fn lock(path: &Path) -> Result<Self, DaemonError> {
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(dir)
                .map_err(|source| DaemonError::RunDir {
                    path: dir.to_owned(),
                    source,
                })?;
        }
        let pid_file_error = |source| DaemonError::PidFile {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o640)
            .open(path)
            .map_err(pid_file_error)?;
        let mut lock =
            Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
                DaemonError::AlreadyRunning {
                    path: path.to_owned(),
                    errno,
                }
            })?;
        // Truncated only now: the file of a running daemon keeps its pid.
        lock.set_len(0).map_err(pid_file_error)?;
        writeln!(lock, "{}", std::process::id()).map_err(pid_file_error)?;
        Ok(PidFile {
            path: path.to_owned(),
            _lock: lock,
        })
    }

    /// Deletes the pid file, then releases the lock.
    pub fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
