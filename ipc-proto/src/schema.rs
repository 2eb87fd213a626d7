//! The compiled schema at run time, for reflection: reading a field by its proto name (the
//! SDKs' `params.<name>` paths) and holding other lists of the same fields to the schema.

use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, MessageDescriptor};

/// The compiled schema, written by the build script.
const DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/control.fds"));

/// Package of every message of the schema.
const PACKAGE: &str = "gala_gopher.ipc.v1";

/// The schema's descriptors.
pub fn descriptor_pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        // The bytes were produced by this crate's build script from the same compiler run
        // that generated the types: failing to read them back is a broken build.
        DescriptorPool::decode(DESCRIPTORS).expect("the build script wrote a valid schema")
    })
}

/// The descriptor of message `name` of package `gala_gopher.ipc.v1` (e.g. `"Params"`).
pub fn message_descriptor(name: &str) -> Option<MessageDescriptor> {
    descriptor_pool().get_message_by_name(&format!("{PACKAGE}.{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_is_found_by_its_short_name() {
        for name in [
            "DaemonMessage",
            "ProbeConfig",
            "Params",
            "ProbeMessage",
            "Status",
        ] {
            let m = message_descriptor(name).unwrap_or_else(|| panic!("{name}"));
            assert_eq!(m.name(), name);
        }
        assert!(message_descriptor("Nope").is_none());
        let params = message_descriptor("Params").expect("Params");
        assert_eq!(
            params
                .get_field_by_name("report_period")
                .map(|f| f.number()),
            Some(1)
        );
    }
}
