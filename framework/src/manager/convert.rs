//! A probe's accepted configuration and resolved snooper objects as the control message
//! `ProbeConfig` (ipc-proto), which carries everything the original's message did and more
//! (comm, cmdline, exe, container and pod of each process; the container name).

use gala_ipc_proto::v1::{
    snooper_object, Container, CustomPayload, Params as WireParams, ProbeConfig, Process,
    SnooperMode as WireMode, SnooperObject,
};

use crate::api::{ProbeSettings, SnooperMode};
use crate::probes::catalogue::ProbeKind;
use crate::probes::params::{Params, L7_PROTOCOLS};
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

fn params(p: &Params) -> WireParams {
    WireParams {
        report_period: p.period,
        sample_period: p.sample_period,
        latency_thr: p.latency_thr,
        offline_thr: p.offline_thr,
        drops_thr: p.drops_count_thr,
        kafka_port: p.kafka_port,
        report_event: p.logs != 0,
        ringbuf_map_size: u32::from(p.ringbuf_map_size),
        report_cport: p.report_cport != 0,
        metrics_flags: u32::from(p.metrics_flags),
        env_flags: u32::from(p.env_flags),
        support_ssl: p.support_ssl != 0,
        res_upper_thr: u32::from(p.res_percent_upper),
        res_lower_thr: u32::from(p.res_percent_lower),
        continuous_sampling: p.continuous_sampling_flag != 0,
        multi_instance: p.multi_instance_flag != 0,
        native_stack: p.native_stack_flag != 0,
        cluster_ip_backend: u32::from(p.cluster_ip_backend),
        dev_name: p.target_dev.clone(),
        elf_path: p.elf_path.clone(),
        l7_probe_proto_flags: p.l7_probe_proto_flags,
        l7_protocols: L7_PROTOCOLS
            .iter()
            .filter(|(_, bit)| p.l7_probe_proto_flags & bit != 0)
            .map(|(name, _)| name.to_string())
            .collect(),
        svg_period: p.svg_period,
        perf_sample_period: p.perf_sample_period,
        pyroscope_server: p.pyroscope_server.clone(),
        output_dir: p.output_dir.clone(),
        flame_dir: p.flame_dir.clone(),
        cadvisor_port: p.cadvisor_port,
        profiling_channel: p.profiling_chan.name().to_string(),
        min_exec_dur: p.min_exec_dur,
        min_aggr_dur: p.min_aggr_dur,
    }
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
