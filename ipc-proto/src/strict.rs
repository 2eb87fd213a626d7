//! Strict reading of a `ProbeConfig` that a person wrote (a probe's offline configuration,
//! `GALA_GOPHER_CONFIG`). The generated JSON decoders skip unknown fields, as the wire must
//! for a newer daemon; in hand-written text an unknown field is a typo (`"processes"` for
//! `"snoopers"`) that would otherwise be ignored silently.

use prost_reflect::{DescriptorPool, DynamicMessage};

/// The compiled schema, written by the build script.
const DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/control.fds"));

/// Checks that `text` is a proto3-JSON `ProbeConfig` naming only fields of the schema; the
/// error names the field and its line and column.
pub fn check_probe_config_json(text: &str) -> Result<(), String> {
    let pool = DescriptorPool::decode(DESCRIPTORS).map_err(|e| e.to_string())?;
    let message = pool
        .get_message_by_name("gala_gopher.ipc.v1.ProbeConfig")
        .ok_or("ProbeConfig is not in the schema")?;
    let mut de = serde_json::Deserializer::from_str(text);
    DynamicMessage::deserialize(message, &mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_fields_in_either_spelling_pass() {
        let text = r#"{"subitems":["a"],"snooperMode":"SNOOPER_MODE_BLACKLIST",
            "params":{"report_period":5,"samplePeriod":100,"dev_name":"sda"},
            "snoopers":[{"process":{"pid":1}},{"container":{"id":"abc","libc_path":"/x"}}],
            "custom_labels":{"k":"v"},"custom":{"params":{"p":"1"}}}"#;
        assert_eq!(check_probe_config_json(text), Ok(()));
        assert_eq!(check_probe_config_json("{}"), Ok(()));
    }

    #[test]
    fn unknown_fields_are_named_with_their_place() {
        let err = check_probe_config_json("{\n \"processes\": [{\"pid\": 1}]\n}").unwrap_err();
        assert!(err.contains("processes") && err.contains("line 2"), "{err}");
        let err = check_probe_config_json(r#"{"params":{"report_periode":5}}"#).unwrap_err();
        assert!(err.contains("report_periode"), "{err}");
        let err = check_probe_config_json(r#"{"snoopers":[{"process":{"tgid":1}}]}"#).unwrap_err();
        assert!(err.contains("tgid"), "{err}");
    }

    #[test]
    fn wrong_types_and_trailing_text_are_errors() {
        assert!(check_probe_config_json(r#"{"params":{"report_period":"x"}}"#).is_err());
        assert!(check_probe_config_json("{} {}").is_err());
    }
}
