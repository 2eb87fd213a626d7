//! Where the host's `/proc`, `/sys` and `/etc` are read from: `/` normally, the host's root
//! mounted into a container (`GOPHER_HOST_PATH`, e.g. `/host`), or a fixture tree in tests.

use std::path::{Path, PathBuf};

use crate::error::CollectError;

/// Variable naming the host root, as the container image sets it.
pub const ENV_HOST_PATH: &str = "GOPHER_HOST_PATH";

/// The root every host file is read under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRoot {
    root: PathBuf,
}

impl Default for HostRoot {
    fn default() -> Self {
        HostRoot::new("/")
    }
}

impl HostRoot {
    /// Files are read under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        HostRoot { root: root.into() }
    }

    /// `GOPHER_HOST_PATH` if set and not empty, else `/`.
    pub fn from_env() -> Self {
        match std::env::var_os(ENV_HOST_PATH) {
            Some(p) if !p.is_empty() => HostRoot::new(p),
            _ => HostRoot::default(),
        }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The host path `abs` (e.g. `/proc/stat`) under this root.
    pub fn path(&self, abs: impl AsRef<Path>) -> PathBuf {
        let abs = abs.as_ref();
        self.root.join(abs.strip_prefix("/").unwrap_or(abs))
    }

    /// Reads the host file `abs` as text.
    pub fn read(&self, abs: impl AsRef<Path>) -> Result<String, CollectError> {
        let path = self.path(abs);
        std::fs::read_to_string(&path).map_err(|source| CollectError::Read { path, source })
    }

    /// Reads the host file `abs` as text; `None` if it does not exist.
    pub fn read_optional(&self, abs: impl AsRef<Path>) -> Result<Option<String>, CollectError> {
        match self.read(abs) {
            Ok(text) => Ok(Some(text)),
            Err(CollectError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_joined_under_the_root() {
        let r = HostRoot::new("/host");
        assert_eq!(r.path("/proc/stat"), Path::new("/host/proc/stat"));
        assert_eq!(r.path("proc/stat"), Path::new("/host/proc/stat"));
        assert_eq!(
            HostRoot::default().path("/proc/stat"),
            Path::new("/proc/stat")
        );
    }

    #[test]
    fn errors_name_the_file() {
        let r = HostRoot::new("/nonexistent-root");
        let e = r.read("/proc/stat").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("read /nonexistent-root/proc/stat: "),
            "{e}"
        );
        assert!(r.read_optional("/proc/stat").unwrap().is_none());
    }
}
