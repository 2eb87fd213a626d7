//! The probe's view of its configuration: one complete snapshot from the daemon (or the
//! offline defaults), with typed accessors and lookup of single values by path.

use std::collections::HashMap;

use gala_ipc_proto::prost_reflect::{DynamicMessage, Value};
use gala_ipc_proto::v1::{snooper_object, Container, Params, ProbeConfig, Process, SnooperMode};

use crate::error::ConfigError;

/// Variable holding an offline configuration: proto3-JSON `ProbeConfig` text, or `@path`.
pub const ENV_CONFIG: &str = "GALA_GOPHER_CONFIG";

/// Sets one parameter to its offline default.
type SetDefault = fn(&mut Params);

/// Offline defaults of the parameters that have non-zero defaults in the daemon.
const PARAM_DEFAULTS: [(&str, SetDefault); 4] = [
    ("report_period", |p| p.report_period = 60),
    ("sample_period", |p| p.sample_period = 5000),
    ("ringbuf_map_size", |p| p.ringbuf_map_size = 1),
    ("kafka_port", |p| p.kafka_port = 9092),
];

/// A complete configuration snapshot (see `probe-sdk/API.md`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    raw: ProbeConfig,
}

impl Config {
    /// Wraps a snapshot received from the daemon.
    pub fn from_proto(raw: ProbeConfig) -> Self {
        Config { raw }
    }

    /// The configuration of a probe not started by the daemon: the defaults, overlaid with
    /// `GALA_GOPHER_CONFIG` if set.
    pub fn offline(probe_name: &str) -> Result<Self, ConfigError> {
        let text = match std::env::var(ENV_CONFIG) {
            Err(_) => None,
            Ok(v) => match v.strip_prefix('@') {
                Some(path) => {
                    Some(
                        std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                            path: path.into(),
                            source,
                        })?,
                    )
                }
                None => Some(v),
            },
        };
        Self::offline_from(probe_name, text.as_deref())
    }

    /// [`Config::offline`] with the overlay given as text.
    pub fn offline_from(probe_name: &str, overlay: Option<&str>) -> Result<Self, ConfigError> {
        let (mut raw, given) = match overlay {
            None => (ProbeConfig::default(), serde_json::Value::Null),
            Some(text) => {
                // A person wrote it: a misspelt field is an error, not ignored as on the wire.
                gala_ipc_proto::check_probe_config_json(text)
                    .map_err(|e| ConfigError::Json(e.to_string()))?;
                let value: serde_json::Value =
                    serde_json::from_str(text).map_err(|e| ConfigError::Json(e.to_string()))?;
                let raw: ProbeConfig = serde_json::from_value(value.clone())
                    .map_err(|e| ConfigError::Json(e.to_string()))?;
                (raw, value)
            }
        };
        if raw.probe_name.is_empty() {
            raw.probe_name = probe_name.to_owned();
        }
        if raw.seq == 0 {
            raw.seq = 1;
        }
        if raw.change_flags == 0 {
            raw.change_flags = gala_ipc_proto::SNOOPER_CHG | gala_ipc_proto::PARAMS_CHG;
        }
        let params = raw.params.get_or_insert_with(Params::default);
        let given_params = given.get("params");
        let descriptor = gala_ipc_proto::message_descriptor("Params");
        for (name, set_default) in PARAM_DEFAULTS {
            // proto3 JSON names the field in lowerCamelCase; readers also take the proto name.
            let json_name = descriptor
                .as_ref()
                .and_then(|d| d.get_field_by_name(name))
                .map(|f| f.json_name().to_owned());
            let set = given_params.is_some_and(|p| {
                p.get(name).is_some() || json_name.as_deref().is_some_and(|j| p.get(j).is_some())
            });
            if !set {
                set_default(params);
            }
        }
        Ok(Config { raw })
    }

    /// The snapshot as received.
    pub fn raw(&self) -> &ProbeConfig {
        &self.raw
    }

    /// Name of the probe (REST path).
    pub fn probe_name(&self) -> &str {
        &self.raw.probe_name
    }

    /// Generation of this snapshot (1 for the first after a start).
    pub fn seq(&self) -> u64 {
        self.raw.seq
    }

    /// What changed since the previous snapshot (`SNOOPER_CHG`, `PARAMS_CHG`).
    pub fn change_flags(&self) -> u32 {
        self.raw.change_flags
    }

    /// Enabled sub-items of a built-in probe, by name.
    pub fn subitems(&self) -> &[String] {
        &self.raw.subitems
    }

    /// Whether sub-item `name` is enabled (built-in or custom).
    pub fn has_subitem(&self, name: &str) -> bool {
        self.raw.subitems.iter().any(|s| s == name)
            || self.custom_subitems().iter().any(|s| s == name)
    }

    /// The enabled sub-items as the original's bit mask.
    pub fn subitem_mask(&self) -> u32 {
        self.raw.subitem_mask
    }

    /// Whether the snoopers select what to observe or what to skip.
    pub fn snooper_mode(&self) -> SnooperMode {
        SnooperMode::try_from(self.raw.snooper_mode).unwrap_or(SnooperMode::Whitelist)
    }

    /// All parameters, defaults filled in.
    pub fn params(&self) -> &Params {
        static EMPTY: std::sync::OnceLock<Params> = std::sync::OnceLock::new();
        self.raw
            .params
            .as_ref()
            .unwrap_or_else(|| EMPTY.get_or_init(Params::default))
    }

    /// The snooped processes.
    pub fn processes(&self) -> impl Iterator<Item = &Process> {
        self.raw.snoopers.iter().filter_map(|s| match &s.object {
            Some(snooper_object::Object::Process(p)) => Some(p),
            _ => None,
        })
    }

    /// The snooped containers.
    pub fn containers(&self) -> impl Iterator<Item = &Container> {
        self.raw.snoopers.iter().filter_map(|s| match &s.object {
            Some(snooper_object::Object::Container(c)) => Some(c),
            _ => None,
        })
    }

    /// Pids of the snooped processes.
    pub fn pids(&self) -> Vec<u32> {
        self.processes().map(|p| p.pid).collect()
    }

    /// Labels the operator asked to attach to this probe's records.
    pub fn custom_labels(&self) -> &HashMap<String, String> {
        &self.raw.custom_labels
    }

    /// Enabled sub-items of a custom probe.
    pub fn custom_subitems(&self) -> &[String] {
        self.raw.custom.as_ref().map_or(&[], |c| &c.subitems)
    }

    /// Value of custom parameter `label` (REST `custom_param`), if set.
    pub fn custom_param(&self, label: &str) -> Option<&str> {
        self.raw
            .custom
            .as_ref()
            .and_then(|c| c.params.get(label))
            .map(String::as_str)
    }

    /// All custom parameters, by label.
    pub fn custom_params(&self) -> Option<&HashMap<String, String>> {
        self.raw.custom.as_ref().map(|c| &c.params)
    }

    /// One value by path, as text (see `probe-sdk/API.md`): `probe_name`, `seq`,
    /// `change_flags`, `subitems`, `subitem_mask`, `snooper_mode`, `params.<name>`, `pids`,
    /// `custom.subitems`, `custom.params.<label>` (empty if unset), `custom_labels.<key>`.
    pub fn get(&self, path: &str) -> Result<String, ConfigError> {
        let unknown = || ConfigError::UnknownPath(path.to_owned());
        let join = |items: &[String]| items.join(" ");
        Ok(match path {
            "probe_name" => self.raw.probe_name.clone(),
            "seq" => self.raw.seq.to_string(),
            "change_flags" => self.raw.change_flags.to_string(),
            "subitems" => join(&self.raw.subitems),
            "subitem_mask" => self.raw.subitem_mask.to_string(),
            "snooper_mode" => match self.snooper_mode() {
                SnooperMode::Whitelist => "whitelist".to_owned(),
                SnooperMode::Blacklist => "blacklist".to_owned(),
            },
            "pids" => {
                let pids: Vec<String> = self.pids().iter().map(u32::to_string).collect();
                pids.join(" ")
            }
            "custom.subitems" => join(self.custom_subitems()),
            _ => {
                if let Some(name) = path.strip_prefix("params.") {
                    param_text(self.params(), name).ok_or_else(unknown)?
                } else if let Some(label) = path.strip_prefix("custom.params.") {
                    self.custom_param(label).unwrap_or_default().to_owned()
                } else if let Some(key) = path.strip_prefix("custom_labels.") {
                    self.raw.custom_labels.get(key).cloned().unwrap_or_default()
                } else {
                    return Err(unknown());
                }
            }
        })
    }

    /// The snapshot as one proto3-JSON object.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.raw).unwrap_or_default()
    }
}

/// The value of parameter `name` (a field of the proto `Params`, which is named after its REST
/// key) as text: numbers in decimal, booleans `true`/`false`, lists space-separated. `None`
/// if there is no such parameter. The schema is read by reflection, so every field of the
/// proto is readable under its name and there is no second list to keep in step.
pub fn param_text(p: &Params, name: &str) -> Option<String> {
    let descriptor = gala_ipc_proto::message_descriptor("Params")?;
    let field = descriptor.get_field_by_name(name)?;
    let mut message = DynamicMessage::new(descriptor);
    message.transcode_from(p).ok()?;
    Some(value_text(&message.get_field(&field)))
}

fn value_text(value: &Value) -> String {
    match value {
        Value::Bool(b) => b.to_string(),
        Value::I32(n) | Value::EnumNumber(n) => n.to_string(),
        Value::I64(n) => n.to_string(),
        Value::U32(n) => n.to_string(),
        Value::U64(n) => n.to_string(),
        Value::F32(n) => n.to_string(),
        Value::F64(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Value::List(items) => items.iter().map(value_text).collect::<Vec<_>>().join(" "),
        // `Params` has neither maps nor nested messages.
        Value::Map(_) | Value::Message(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gala_ipc_proto::v1::{CustomPayload, SnooperObject};

    #[test]
    fn offline_defaults_and_overlay() {
        let c = Config::offline_from("mine", None).unwrap();
        assert_eq!(c.probe_name(), "mine");
        assert_eq!(c.seq(), 1);
        assert_eq!(c.change_flags(), 3);
        assert_eq!(c.params().report_period, 60);
        assert_eq!(c.params().sample_period, 5000);

        let c = Config::offline_from(
            "mine",
            Some(r#"{"params":{"report_period":5,"latencyThr":7},"custom":{"params":{"level":"3"}}}"#),
        )
        .unwrap();
        assert_eq!(c.params().report_period, 5);
        assert_eq!(c.params().latency_thr, 7);
        assert_eq!(c.params().sample_period, 5000);
        assert_eq!(c.custom_param("level"), Some("3"));
        assert!(matches!(
            Config::offline_from("mine", Some("{nope")),
            Err(ConfigError::Json(_))
        ));
        // A default given under the JSON name stays as given.
        let c = Config::offline_from("mine", Some(r#"{"params":{"samplePeriod":0}}"#)).unwrap();
        assert_eq!(c.params().sample_period, 0);
        assert_eq!(c.params().report_period, 60);
    }

    #[test]
    fn every_field_of_the_schema_is_readable_by_its_name() {
        let p = Params {
            report_event: true,
            kafka_port: 9093,
            dev_name: "eth0".into(),
            l7_probe_proto_flags: 0x3,
            l7_protocol: vec!["http".into(), "dns".into()],
            ..Params::default()
        };
        let descriptor = gala_ipc_proto::message_descriptor("Params").expect("Params");
        for field in descriptor.fields() {
            assert!(param_text(&p, field.name()).is_some(), "{}", field.name());
        }
        let text = |name| param_text(&p, name);
        assert_eq!(text("report_event").as_deref(), Some("true"));
        assert_eq!(text("support_ssl").as_deref(), Some("false"));
        assert_eq!(text("kafka_port").as_deref(), Some("9093"));
        assert_eq!(text("dev_name").as_deref(), Some("eth0"));
        assert_eq!(text("elf_path").as_deref(), Some(""));
        assert_eq!(text("l7_probe_proto_flags").as_deref(), Some("3"));
        assert_eq!(text("l7_protocol").as_deref(), Some("http dns"));
        // Paths use the proto (= REST) names only.
        assert_eq!(text("kafkaPort"), None);
        assert_eq!(text("l7_protocols"), None);
        assert_eq!(text(""), None);
    }

    #[test]
    fn an_unknown_offline_field_is_an_error() {
        let err = Config::offline_from("mine", Some(r#"{"processes":[{"pid":1}]}"#))
            .expect_err("refused");
        let text = err.to_string();
        assert!(
            text.contains("GALA_GOPHER_CONFIG") && text.contains("processes"),
            "{text}"
        );
    }

    #[test]
    fn camel_case_json_with_omitted_defaults_and_string_int64() {
        let raw: ProbeConfig = serde_json::from_str(
            r#"{"probeName":"tcp","seq":"7","changeFlags":1,"snooperMode":"SNOOPER_MODE_BLACKLIST",
                "subitems":["tcp_rtt"],"params":{"reportPeriod":30},
                "snoopers":[{"process":{"pid":42,"comm":"nginx"}},{"container":{"id":"abc","cpucgInode":"99"}}]}"#,
        )
        .unwrap();
        let c = Config::from_proto(raw);
        assert_eq!(c.seq(), 7);
        assert_eq!(c.snooper_mode(), SnooperMode::Blacklist);
        assert_eq!(c.pids(), vec![42]);
        assert_eq!(c.containers().next().unwrap().cpucg_inode, 99);
        assert!(c.has_subitem("tcp_rtt"));
        assert!(!c.has_subitem("tcp_abnormal"));
        assert_eq!(c.get("params.report_period").unwrap(), "30");
        assert_eq!(c.get("params.report_event").unwrap(), "false");
        assert_eq!(c.get("snooper_mode").unwrap(), "blacklist");
        assert_eq!(c.get("pids").unwrap(), "42");
        assert_eq!(c.get("subitems").unwrap(), "tcp_rtt");
    }

    #[test]
    fn paths() {
        let c = Config::from_proto(ProbeConfig {
            probe_name: "pg".into(),
            custom: Some(CustomPayload {
                subitems: vec!["a".into(), "b".into()],
                params: [("host".to_string(), "db1".to_string())].into(),
            }),
            snoopers: vec![
                SnooperObject {
                    object: Some(snooper_object::Object::Process(Process {
                        pid: 1,
                        ..Default::default()
                    })),
                },
                SnooperObject {
                    object: Some(snooper_object::Object::Process(Process {
                        pid: 22,
                        ..Default::default()
                    })),
                },
            ],
            ..Default::default()
        });
        assert_eq!(c.get("custom.params.host").unwrap(), "db1");
        assert_eq!(c.get("custom.params.port").unwrap(), "");
        assert_eq!(c.get("custom.subitems").unwrap(), "a b");
        assert_eq!(c.get("pids").unwrap(), "1 22");
        assert!(c.has_subitem("b"));
        assert_eq!(c.get("params.dev_name").unwrap(), "");
        for bad in ["params.nope", "nope", "custom", ""] {
            assert!(
                matches!(c.get(bad), Err(ConfigError::UnknownPath(_))),
                "{bad}"
            );
        }
    }
}
