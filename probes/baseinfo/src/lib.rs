//! The baseinfo probe: host-wide CPU, memory, NIC, network stack, disk and filesystem
//! metrics, per-process and per-container metrics for the snooped ones, and the host's
//! identity — read from procfs/sysfs under a [`HostRoot`], one module per sub-item.
//!
//! A sub-item is one module with a [`Collector`], one meta file in `meta/`, and one line in
//! [`SUBITEMS`]. [`Baseinfo`] runs the enabled ones each round; a collector that fails
//! degrades alone (one log line, `success 0` in the `baseinfo_collector` table) while the
//! others keep reporting.

#![warn(missing_docs)]

pub mod collector;
pub mod error;
pub mod root;
mod runner;

pub mod con;
pub mod cpu;
pub mod disk;
pub mod fs;
pub mod host;
pub mod mem;
pub mod net;
pub mod nic;
pub mod proc;

pub use collector::{Collector, Context, EventRecord, Previous, Record, Report, SystemInfo};
pub use error::CollectError;
pub use root::{HostRoot, ENV_HOST_PATH};
pub use runner::{Baseinfo, Round};

/// One sub-item: its REST name, its meta file and how to make its collector.
pub struct SubItem {
    /// Name in `cmd.probe`.
    pub name: &'static str,
    /// File name and text of its meta file.
    pub meta: (&'static str, &'static str),
    /// A collector with no history.
    pub new: fn() -> Box<dyn Collector>,
}

/// `(file name, text)` of `meta/<name>.meta`.
macro_rules! meta {
    ($name:literal) => {
        (
            concat!($name, ".meta"),
            include_str!(concat!("../meta/", $name, ".meta")),
        )
    };
}

/// A [`SubItem`] named `$name` with `meta/$name.meta`, whose collector is `$new`.
macro_rules! subitem {
    ($name:literal, $new:expr) => {
        SubItem {
            name: $name,
            meta: meta!($name),
            new: || Box::new($new),
        }
    };
}

/// Every sub-item, in the catalogue's order: one line each.
#[rustfmt::skip]
pub const SUBITEMS: &[SubItem] = &[
    subitem!("cpu", cpu::CpuCollector::default()),
    subitem!("mem", mem::MemCollector),
    subitem!("nic", nic::NicCollector::default()),
    subitem!("net", net::NetCollector::default()),
    subitem!("disk", disk::DiskCollector::default()),
    subitem!("fs", fs::FsCollector::default()),
    subitem!("proc", proc::ProcCollector::default()),
    subitem!("host", host::HostCollector::default()),
    subitem!("con", con::ConCollector::default()),
];

/// The meta file of the probe's own table (`baseinfo_collector`).
pub const SELF_META: (&str, &str) = meta!("baseinfo");
