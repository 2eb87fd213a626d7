//! `tcpprobe`: per-connection TCP health of the snooped processes (`tcp_metric`, entity
//! `tcp_link`) and per-flow receive/send delays (`proc_flow_perf`), from tracepoints
//! (`tp_btf`) with CO-RE reads. See `probes/tcp/README.md` for what each field means.

mod events;
mod probe;
mod procnet;
mod record;
mod subitems;
mod tracker;

/// The BPF skeleton generated from `src/bpf/tcp.bpf.c`.
#[allow(dead_code, clippy::all, clippy::pedantic, missing_docs, unused_imports)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/tcp.skel.rs"));
}

/// The probe's meta file.
const META: (&str, &str) = ("tcp_link.meta", include_str!("../tcp_link.meta"));

fn main() {
    if let Err(e) = gala_ebpf::run(probe::TcpProbe::new(), &[META]) {
        gala_ebpf::log(gala_probe_sdk::Level::Error, probe::NAME, &e.to_string());
        std::process::exit(1);
    }
}

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
