//! A probe's configuration as the PUT body that recreates it: what the daemon writes to
//! `probes.init` at shutdown, so that the next start restores it (GET hides the labels and some
//! params, so its answer cannot serve).

use serde_json::{Map, Value};

use super::get::{entries_json, subitems_json};
use super::settings::{DesiredState, ProbeSettings, SnooperMode};
use crate::probes::catalogue::ProbeKind;
use crate::probes::params::render_changed_params;

/// The PUT body that brings a never-configured `kind` to `settings`, with `state`.
pub fn persist_body(kind: &ProbeKind, settings: &ProbeSettings, state: DesiredState) -> Value {
    let mut root = Map::new();
    let mut cmd = Map::new();
    cmd.insert("probe".into(), subitems_json(settings));
    if kind.is_custom() {
        cmd.insert("bin".into(), kind.bin.to_string_lossy().into_owned().into());
    }
    root.insert("cmd".into(), Value::Object(cmd));

    let mut snoopers = match entries_json(&settings.snoopers) {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let labelled = settings.snooper_mode == SnooperMode::Whitelist
        && !(settings.custom_labels.is_empty() && settings.pod_labels.is_empty());
    if labelled {
        let labels = settings
            .custom_labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect();
        snoopers.insert("custom_labels".into(), Value::Object(labels));
        let pods = settings.pod_labels.iter().map(|p| Value::from(p.as_str()));
        snoopers.insert("pod_labels".into(), pods.collect());
    }
    match settings.snooper_mode {
        SnooperMode::Blacklist => {
            root.insert("blacklist".into(), Value::Object(snoopers));
        }
        SnooperMode::Whitelist if !snoopers.is_empty() => {
            root.insert("snoopers".into(), Value::Object(snoopers));
        }
        SnooperMode::Whitelist => {}
    }

    let custom = kind
        .custom_params()
        .map(|declared| (declared, &settings.custom_params));
    let params = render_changed_params(&settings.params, custom);
    if !params.is_empty() {
        root.insert("params".into(), Value::Object(params));
    }
    root.insert("state".into(), state.name().into());
    Value::Object(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{apply_put, PutContext};
    use crate::probes::catalogue::Catalogue;

    /// Applies `body` to a fresh probe, saves it, and applies the saved body to another fresh
    /// probe: both must end up configured alike.
    fn round_trip(probe: &str, body: &str) {
        let catalogue = Catalogue::builtins(std::path::Path::new("/opt/gala-gopher/extend_probes"));
        let kind = catalogue.lookup(probe).expect("probe");
        let ctx = PutContext { running: false };
        let first =
            apply_put(kind, &ProbeSettings::new(kind), body.as_bytes(), ctx).expect("first PUT");
        let saved = persist_body(kind, &first.settings, DesiredState::Running);
        let again = apply_put(
            kind,
            &ProbeSettings::new(kind),
            saved.to_string().as_bytes(),
            ctx,
        )
        .unwrap_or_else(|e| panic!("saved body {saved} refused: {}", e.message));
        assert_eq!(again.settings, first.settings, "saved as {saved}");
        assert_eq!(again.state, Some(DesiredState::Running));
    }

    #[test]
    fn saved_bodies_restore_the_same_configuration() {
        round_trip("baseinfo", r#"{"cmd": {"probe": ["cpu", "fs"]}}"#);
        round_trip(
            "tcp",
            r#"{"cmd": {"probe": ["tcp_abnormal", "tcp_rtt"]},
                "snoopers": {"proc_id": [1, 2], "proc_name": [{"comm": "^ngi.x$", "cmdline": "a b", "label": {"app": "web"}}],
                             "container_id": ["0123456789ab"], "custom_labels": {"team": "sre"}},
                "params": {"report_period": 30, "latency_thr": 20, "sample_period": 200}}"#,
        );
        round_trip(
            "tcp",
            r#"{"cmd": {"probe": ["tcp_rtt"]}, "blacklist": {"proc_id": [7]}}"#,
        );
        round_trip("tcp", r#"{"cmd": {"probe": ["tcp_rtt"]}, "blacklist": {}}"#);
        round_trip(
            "l7",
            r#"{"cmd": {"probe": ["l7_bytes_metrics"]}, "snoopers": {"proc_id": [1]},
                "params": {"l7_protocol": ["http", "redis"], "support_ssl": 1}}"#,
        );
        round_trip(
            "tprofiling",
            r#"{"cmd": {"probe": ["oncpu"]}, "snoopers": {"proc_id": [1]},
                "params": {"profiling_channel": "kafka", "min_aggr_dur": 500}}"#,
        );
    }
}
