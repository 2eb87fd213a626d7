//! `tcpprobe`: per-connection TCP health of the snooped processes (`tcp_metric`, entity
//! `tcp_link`) and per-flow receive/send delays (`proc_flow_perf`), from tracepoints
//! (`tp_btf`) with CO-RE reads. See `probes/tcp/README.md` for what each field means. The
//! binary (`src/main.rs`) only runs [`TcpProbe`].

mod cluster_ip;
mod events;
mod probe;
mod procnet;
mod record;
mod subitems;
pub mod toa;
mod tracker;

gala_ebpf::skel_module!(
    /// The BPF skeleton generated from `src/bpf/tcp.bpf.c`; its `types` are the record layouts.
    "tcp"
);

pub use probe::{TcpProbe, NAME};
pub use subitems::SUBITEMS;

/// The probe's meta file.
pub const META: (&str, &str) = ("tcp_link.meta", include_str!("../tcp_link.meta"));

#[cfg(test)]
mod tests {
    #[test]
    fn meta_parses_with_the_row_width() {
        let tables = gala_meta::parse_meta_file(
            std::path::Path::new(super::META.0),
            super::META.1,
            &Default::default(),
        )
        .expect("tcp_link.meta");
        let width = |name: &str| {
            tables
                .iter()
                .find(|t| t.name == name)
                .map(|t| t.fields.len())
        };
        assert_eq!(width("tcp_metric"), Some(45));
        assert_eq!(width("proc_flow_perf"), Some(6));
    }
}
