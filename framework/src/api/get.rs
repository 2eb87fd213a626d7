//! The body of a REST GET (or `gopher-ctl probe get`) for one probe (docs/reference/rest-api.md §7): compact
//! JSON, keys sorted at every level, trailing newline, plus our `runtime` object.

use serde_json::{Map, Value};

use super::json::write_sorted;
use super::settings::{DesiredState, ProbeSettings, SnooperEntries, SnooperMode};
use crate::probes::catalogue::ProbeKind;
use crate::probes::params::render_params;

/// What the supervisor knows about the probe's process (our addition to the GET answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeView<'a> {
    /// `stopped`, `starting`, `running`, `restarting` or `failed`.
    pub status: &'a str,
    /// Process id while there is a process.
    pub pid: Option<u32>,
    /// Restarts since the operator last started the probe.
    pub restarts: u32,
    /// How the last process ended (`exit status 1`, `signal 9`…), if one did.
    pub last_exit: Option<String>,
}

/// The state shown for a probe besides its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeView<'a> {
    /// Whether the operator wants it running (`state`).
    pub state: DesiredState,
    /// Process information; rendered as `"runtime"` when present.
    pub runtime: Option<RuntimeView<'a>>,
}

/// Renders probe `kind`'s GET answer; `settings` is `None` for a probe never configured,
/// which renders as `{}`.
///
/// `runtime` holds `status`, `pid`, `restarts` and `last_exit`; absent values are `null`.
/// `custom_param` (custom probes) lists the labels that have a value, in declaration order,
/// in the same `[{"label":"value"}]` shape a PUT takes.
pub fn render_get(
    kind: &ProbeKind,
    settings: Option<&ProbeSettings>,
    view: &ProbeView<'_>,
) -> String {
    let Some(settings) = settings else {
        return "{}\n".to_string();
    };
    let mut root = Map::new();

    let mut cmd = Map::new();
    cmd.insert("bin".into(), kind.bin.to_string_lossy().into_owned().into());
    cmd.insert("probe".into(), subitems_json(settings));
    root.insert("cmd".into(), Value::Object(cmd));

    let custom = kind
        .custom_params()
        .map(|declared| (declared, &settings.custom_params));
    let params = render_params(&settings.params, &kind.shown_params, custom);
    root.insert("params".into(), Value::Object(params));

    let section = match settings.snooper_mode {
        SnooperMode::Whitelist => "snoopers",
        SnooperMode::Blacklist => "blacklist",
    };
    root.insert(section.into(), entries_json(&settings.snoopers));

    root.insert("state".into(), view.state.name().into());

    if let Some(rt) = &view.runtime {
        let mut runtime = Map::new();
        runtime.insert("status".into(), rt.status.into());
        runtime.insert("pid".into(), rt.pid.map_or(Value::Null, Value::from));
        runtime.insert("restarts".into(), rt.restarts.into());
        runtime.insert(
            "last_exit".into(),
            rt.last_exit.as_deref().map_or(Value::Null, Value::from),
        );
        root.insert("runtime".into(), Value::Object(runtime));
    }

    let mut out = String::new();
    write_sorted(&Value::Object(root), &mut out);
    out.push('\n');
    out
}

/// The enabled sub-items as a JSON array.
pub(super) fn subitems_json(settings: &ProbeSettings) -> Value {
    settings
        .subitems
        .iter()
        .map(|s| Value::from(s.as_str()))
        .collect()
}

/// `{}` without entries; otherwise all five arrays, possibly empty.
pub(super) fn entries_json(entries: &SnooperEntries) -> Value {
    let mut out = Map::new();
    if entries.is_empty() {
        return Value::Object(out);
    }
    let strings = |v: &[String]| v.iter().map(|s| Value::from(s.as_str())).collect();
    out.insert("container_id".into(), strings(&entries.container_id));
    out.insert("container_name".into(), strings(&entries.container_name));
    out.insert("pod_id".into(), strings(&entries.pod_id));
    out.insert(
        "proc_id".into(),
        entries.proc_id.iter().map(|&p| Value::from(p)).collect(),
    );
    let proc_name = entries
        .proc_name
        .iter()
        .map(|e| {
            let mut o = Map::new();
            o.insert("cmdline".into(), e.cmdline.as_str().into());
            o.insert("comm".into(), e.comm.as_str().into());
            if let Some((k, v)) = &e.label {
                let mut label = Map::new();
                label.insert(k.clone(), v.as_str().into());
                o.insert("label".into(), Value::Object(label));
            }
            Value::Object(o)
        })
        .collect();
    out.insert("proc_name".into(), proc_name);
    Value::Object(out)
}
