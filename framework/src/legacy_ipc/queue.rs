//! The System V message queue of the legacy channel: created (mode 0600) under the key
//! `ftok(path, 'g')`, replacing a stale one; sends never block; removed when dropped.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::libc;

/// The project id the original passes to `ftok`.
pub const PROJECT_ID: u8 = b'g';
/// The queue's permission bits.
const MODE: libc::c_int = 0o600;
/// `kernel.msgmax` when `/proc/sys/kernel/msgmax` cannot be read (the kernel's default).
const DEFAULT_MSGMAX: usize = 8192;

/// Why the queue could not be created.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// `ftok` failed (the key file is missing or unreadable).
    #[error("ftok({}, 'g'): {errno}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// What the system said.
        errno: Errno,
    },
    /// `msgget` or removing the stale queue failed.
    #[error("creating the message queue of key {key:#x} ({}): {errno}", path.display())]
    Create {
        /// The key file.
        path: PathBuf,
        /// The key.
        key: libc::key_t,
        /// What the system said.
        errno: Errno,
    },
}

/// Why a message was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The queue holds `kernel.msgmnb` bytes already (the probe does not read).
    #[error("queue full")]
    Full,
    /// Any other failure (`EINVAL` for a message above `kernel.msgmax`, `EIDRM`...).
    #[error("msgsnd: {0}")]
    Os(Errno),
}

/// One System V message queue, owned by the daemon.
#[derive(Debug)]
pub struct Queue {
    id: libc::c_int,
    key: libc::key_t,
    msgmax: usize,
    removed: AtomicBool,
}

impl Queue {
    /// Creates the queue of `ftok(path, 'g')`, mode 0600. A queue already there (left by a
    /// daemon that did not exit cleanly) is removed first, and that is logged.
    pub fn create(path: &Path) -> Result<Queue, QueueError> {
        let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| QueueError::Key {
            path: path.into(),
            errno: Errno::EINVAL,
        })?;
        // SAFETY: `c_path` is a valid NUL-terminated string for the duration of the call.
        let key = unsafe { libc::ftok(c_path.as_ptr(), libc::c_int::from(PROJECT_ID)) };
        if key == -1 {
            return Err(QueueError::Key {
                path: path.into(),
                errno: Errno::last(),
            });
        }
        let create_error = |errno| QueueError::Create {
            path: path.into(),
            key,
            errno,
        };
        let mut id = msgget(key, libc::IPC_CREAT | libc::IPC_EXCL | MODE);
        if id == Err(Errno::EEXIST) {
            let stale = msgget(key, 0).map_err(create_error)?;
            // SAFETY: IPC_RMID takes no buffer.
            if unsafe { libc::msgctl(stale, libc::IPC_RMID, std::ptr::null_mut()) } < 0 {
                return Err(create_error(Errno::last()));
            }
            tracing::warn!(
                "legacy IPC: removed the stale message queue {stale} of key {key:#x} ({}) left by an earlier run",
                path.display()
            );
            id = msgget(key, libc::IPC_CREAT | libc::IPC_EXCL | MODE);
        }
        let id = id.map_err(create_error)?;
        let msgmax = std::fs::read_to_string("/proc/sys/kernel/msgmax")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(DEFAULT_MSGMAX);
        tracing::info!(
            "legacy IPC: message queue {id} of key {key:#x} (ftok {}, 'g'), msgmax {msgmax}",
            path.display()
        );
        Ok(Queue {
            id,
            key,
            msgmax,
            removed: AtomicBool::new(false),
        })
    }

    /// The queue id (`msqid`).
    pub fn id(&self) -> libc::c_int {
        self.id
    }

    /// The key the queue was created with.
    pub fn key(&self) -> libc::key_t {
        self.key
    }

    /// The largest message text the kernel accepts (`kernel.msgmax`, read at creation).
    pub fn msgmax(&self) -> usize {
        self.msgmax
    }

    /// Queues `text` with message type `mtype` without blocking.
    pub fn send(&self, mtype: libc::c_long, text: &[u8]) -> Result<(), SendError> {
        let mut buf = Vec::with_capacity(std::mem::size_of::<libc::c_long>() + text.len());
        buf.extend_from_slice(&mtype.to_ne_bytes());
        buf.extend_from_slice(text);
        // SAFETY: `buf` holds the `long` type followed by `text.len()` bytes, as msgsnd reads.
        let rc =
            unsafe { libc::msgsnd(self.id, buf.as_ptr().cast(), text.len(), libc::IPC_NOWAIT) };
        if rc == 0 {
            return Ok(());
        }
        match Errno::last() {
            Errno::EAGAIN => Err(SendError::Full),
            e => Err(SendError::Os(e)),
        }
    }

    /// Removes every queued message of type `mtype` (`msgrcv` with `IPC_NOWAIT` until none is
    /// left); returns how many.
    pub fn clear(&self, mtype: libc::c_long) -> usize {
        // `long`-aligned room for the type and the longest text.
        let words = 1 + self.msgmax.div_ceil(std::mem::size_of::<libc::c_long>());
        let mut buf: Vec<libc::c_long> = vec![0; words];
        let mut removed = 0;
        loop {
            // SAFETY: `buf` has room for the type and `msgmax` bytes of text; MSG_NOERROR
            // truncates anything longer.
            let rc = unsafe {
                libc::msgrcv(
                    self.id,
                    buf.as_mut_ptr().cast(),
                    self.msgmax,
                    mtype,
                    libc::IPC_NOWAIT | libc::MSG_NOERROR,
                )
            };
            if rc < 0 {
                return removed;
            }
            removed += 1;
        }
    }

    /// Removes the queue (once; later calls do nothing).
    pub fn remove(&self) {
        if self.removed.swap(true, Ordering::SeqCst) {
            return;
        }
        // SAFETY: IPC_RMID takes no buffer.
        if unsafe { libc::msgctl(self.id, libc::IPC_RMID, std::ptr::null_mut()) } < 0 {
            tracing::warn!(
                "legacy IPC: removing message queue {}: {}",
                self.id,
                Errno::last()
            );
        } else {
            tracing::info!("legacy IPC: removed message queue {}", self.id);
        }
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.remove();
    }
}

/// `msgget(key, flags)`.
fn msgget(key: libc::key_t, flags: libc::c_int) -> Result<libc::c_int, Errno> {
    // SAFETY: plain system call on integers.
    let id = unsafe { libc::msgget(key, flags) };
    if id < 0 {
        Err(Errno::last())
    } else {
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real queue on a key file of our own: created, fed, drained, replaced when stale,
    /// gone when dropped.
    #[test]
    fn create_send_clear_replace_remove() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("key");
        std::fs::write(&key_file, "").unwrap();
        let q = Queue::create(&key_file).unwrap();
        q.send(101, b"one").unwrap();
        q.send(101, b"two").unwrap();
        q.send(102, b"other").unwrap();
        assert_eq!(q.clear(101), 2);
        assert_eq!(q.clear(101), 0);
        assert_eq!(
            q.send(101, &vec![0; q.msgmax() + 1]),
            Err(SendError::Os(Errno::EINVAL))
        );
        let first = q.id();
        // A crashed daemon's queue: the next one replaces it (its message goes with it).
        std::mem::forget(q);
        let q = Queue::create(&key_file).unwrap();
        assert_ne!(q.id(), first);
        assert!(msgget(q.key(), 0).is_ok());
        assert_eq!(q.clear(102), 0, "the stale queue's message is gone");
        let key = q.key();
        drop(q);
        assert_eq!(msgget(key, 0), Err(Errno::ENOENT));
    }

    #[test]
    fn a_full_queue_refuses_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("key");
        std::fs::write(&key_file, "").unwrap();
        let q = Queue::create(&key_file).unwrap();
        let text = vec![1u8; q.msgmax()];
        let mut sent = 0;
        let full = loop {
            match q.send(105, &text) {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
            assert!(sent < 10_000, "never full");
        };
        assert_eq!(full, SendError::Full);
        assert_eq!(q.clear(105), sent);
    }

    #[test]
    fn a_missing_key_file_is_an_error_naming_it() {
        let err = Queue::create(Path::new("/nonexistent/gala-gopher")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ftok(/nonexistent/gala-gopher, 'g'): ENOENT: No such file or directory"
        );
    }
}
