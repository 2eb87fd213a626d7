//! A probe's accepted configuration and resolved snooper objects as the control message
//! `ProbeConfig` (ipc-proto), which carries everything the original's message did and more
//! (comm, cmdline, exe, container and pod of each process; the container name).

use gala_ipc_proto::v1::{
    snooper_object, Container, CustomPayload, Params as WireParams, ProbeConfig, Process,
    SnooperMode as WireMode, SnooperObject,
};

use crate::api::{ProbeSettings, SnooperMode};
use crate::probes::catalogue::ProbeKind;
use crate::probes::params::{l7_protocol_names, Params};
use crate::snooper::Snooped;

/// The control message for `kind` with `settings` and the resolved `objects` (sequence number
/// and change flags are set when it is sent).
pub fn probe_config(
    kind: &ProbeKind,
    settings: &ProbeSettings,
    objects: &[Snooped],
) -> ProbeConfig {
    ProbeConfig {
        probe_name: kind.name.clone(),
        seq: 0,
        change_flags: 0,
        subitems: settings.subitems.clone(),
        subitem_mask: settings.subitem_mask(kind),
        snooper_mode: match settings.snooper_mode {
            SnooperMode::Whitelist => WireMode::Whitelist,
            SnooperMode::Blacklist => WireMode::Blacklist,
        } as i32,
        params: Some(params(&settings.params)),
        snoopers: objects.iter().map(object).collect(),
        custom_labels: settings
            .custom_labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        custom: kind.is_custom().then(|| CustomPayload {
            subitems: settings.subitems.clone(),
            params: settings
                .custom_params
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }),
    }
}

/// The wire record: the same names, so the mapping is one to one. The macro destructures
/// `p` without `..` and builds the wire record without `..`, so the compiler catches a
/// parameter added on one side only; each name is listed once.
fn params(p: &Params) -> WireParams {
    macro_rules! one_to_one {
        ($($same:ident),* ; $($differ:ident),* ; $($wire:ident: $value:expr),* $(,)?) => {{
            let Params { $($same,)* $($differ,)* } = p.clone();
            WireParams { $($same,)* $($wire: $value,)* }
        }};
    }
    one_to_one!(
        report_period,
        sample_period,
        latency_thr,
        offline_thr,
        drops_thr,
        kafka_port,
        report_event,
        ringbuf_map_size,
        report_cport,
        support_ssl,
        res_upper_thr,
        res_lower_thr,
        continuous_sampling,
        multi_instance,
        native_stack,
        cluster_ip_backend,
        dev_name,
        elf_path,
        svg_period,
        perf_sample_period,
        pyroscope_server,
        output_dir,
        flame_dir,
        cadvisor_port,
        min_exec_dur,
        min_aggr_dur;
        // Named differently or converted on the wire:
        l7_protocol, profiling_channel;
        // Not settable over REST (docs/reference/ipc-and-lifecycle.md §6.4).
        metrics_flags: 0,
        env_flags: 0,
        l7_probe_proto_flags: l7_protocol,
        l7_protocol: l7_protocol_names(l7_protocol).map(str::to_owned).collect(),
        profiling_channel: profiling_channel.name().to_owned(),
    )
}

fn object(o: &Snooped) -> SnooperObject {
    let object = match o {
        Snooped::Process(p) => snooper_object::Object::Process(Process {
            pid: p.pid,
            comm: p.comm.clone(),
            cmdline: p.cmdline.clone(),
            exe: p.exe.clone(),
            container_id: p.container_id.clone().unwrap_or_default(),
            pod_id: p.pod_id.clone().unwrap_or_default(),
        }),
        Snooped::Container(c) => snooper_object::Object::Container(Container {
            id: c.id.clone(),
            name: c.name.clone().unwrap_or_default(),
            pod_id: c.pod_id.clone().unwrap_or_default(),
            cpucg_inode: c.cpucg_inode,
            ..Container::default()
        }),
    };
    SnooperObject {
        object: Some(object),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::params::ProfilingChannel;

    #[test]
    fn parameters_go_out_under_the_same_names() {
        let p = Params {
            report_period: 30,
            report_event: true,
            dev_name: "eth0".into(),
            l7_protocol: 0x1 | 0x200,
            profiling_channel: ProfilingChannel::Kafka,
            ..Params::default()
        };
        let wire = params(&p);
        assert_eq!(wire.report_period, 30);
        assert!(wire.report_event && !wire.support_ssl);
        assert_eq!(wire.dev_name, "eth0");
        assert_eq!(wire.l7_probe_proto_flags, 0x201);
        assert_eq!(wire.l7_protocol, ["http", "crpc"]);
        assert_eq!(wire.profiling_channel, "kafka");
        assert_eq!((wire.metrics_flags, wire.env_flags), (0, 0));
        assert_eq!(wire.flame_dir, "/var/log/gala-gopher/flamegraph");
    }
}
