//! Host identity: the system UUID and host IP that make up the `machine_id` label.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Why the host identity could not be determined.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// None of the UUID sources gave a value.
    #[error("no system UUID: none of {tried:?} is readable and non-empty")]
    NoUuid {
        /// The files tried, in order.
        tried: Vec<PathBuf>,
    },
}

/// Who this host is, as the labels and metadata name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostIdentity {
    /// The DMI product UUID (or the machine-id fallback).
    pub system_uuid: String,
    /// The first non-loopback IPv4 address (see [`host_ip`]).
    pub ip: String,
    /// The kernel host name.
    pub hostname: String,
}

impl HostIdentity {
    /// The `machine_id` label value: `<system_uuid>-<ip>`, as the original.
    pub fn machine_id(&self) -> String {
        format!("{}-{}", self.system_uuid, self.ip)
    }

    /// Detects the identity of the host whose root is `host_root` (`/`, or `GOPHER_HOST_PATH`
    /// in a container). The UUID comes from the DMI product UUID, else `machine_id_file`,
    /// else `/etc/machine-id`.
    pub fn detect(host_root: &Path, machine_id_file: &Path) -> Result<Self, IdentityError> {
        let tried = vec![
            host_root.join("sys/class/dmi/id/product_uuid"),
            machine_id_file.to_path_buf(),
            host_root.join("etc/machine-id"),
        ];
        let system_uuid = tried
            .iter()
            .find_map(|p| first_line(p))
            .ok_or(IdentityError::NoUuid { tried })?;
        let hostname = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default();
        Ok(HostIdentity {
            system_uuid,
            ip: host_ip().to_string(),
            hostname,
        })
    }
}

/// The first line of a file, trimmed, if non-empty.
fn first_line(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().next()?.trim();
    (!line.is_empty()).then(|| line.to_string())
}

/// The host's address for `machine_id`: the first non-loopback IPv4 address of an interface
/// (the original's choice), else the first global IPv6 one, else `127.0.0.1`. The original
/// dropped every record when it found no IPv4 address; we keep exporting.
pub fn host_ip() -> IpAddr {
    let addrs: Vec<IpAddr> = nix::ifaddrs::getifaddrs()
        .map(|it| {
            it.filter_map(|a| {
                let a = a.address?;
                a.as_sockaddr_in()
                    .map(|s| IpAddr::V4(s.ip()))
                    .or_else(|| a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))
            })
            .collect()
        })
        .unwrap_or_default();
    pick_ip(&addrs)
}

/// Chooses the address [`host_ip`] reports among an interface list.
fn pick_ip(addrs: &[IpAddr]) -> IpAddr {
    let v4 = addrs.iter().find(|a| a.is_ipv4() && !a.is_loopback());
    let v6 = addrs.iter().find(|a| match a {
        IpAddr::V6(v6) => !v6.is_loopback() && (v6.segments()[0] & 0xffc0) != 0xfe80,
        IpAddr::V4(_) => false,
    });
    v4.or(v6)
        .copied()
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefers_ipv4_then_global_ipv6_then_loopback() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let ll: IpAddr = "fe80::1".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(pick_ip(&[lo, ll, v6, v4]), v4);
        assert_eq!(pick_ip(&[lo, ll, v6]), v6);
        assert_eq!(pick_ip(&[lo, ll]), lo);
    }

    #[test]
    fn uuid_falls_back_to_machine_id_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("machine_id");
        std::fs::write(&file, "abc-123\n").unwrap();
        let id = HostIdentity::detect(dir.path(), &file).unwrap();
        assert_eq!(id.system_uuid, "abc-123");
        assert!(id.machine_id().starts_with("abc-123-"));
    }

    #[test]
    fn no_uuid_is_an_error_naming_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let err = HostIdentity::detect(dir.path(), &dir.path().join("nope")).unwrap_err();
        assert!(err.to_string().contains("product_uuid"));
    }
}
