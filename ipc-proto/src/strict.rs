//! Strict reading of a `ProbeConfig` that a person wrote (a probe's offline configuration,
//! `GALA_GOPHER_CONFIG`). The generated JSON decoders skip unknown fields, as the wire must
//! for a newer daemon; in hand-written text an unknown field is a typo (`"processes"` for
//! `"snoopers"`) that would otherwise be ignored silently.

use prost_reflect::DynamicMessage;

use crate::schema::message_descriptor;

/// Why a hand-written `ProbeConfig` was refused.
#[derive(Debug, thiserror::Error)]
pub enum StrictJsonError {
    /// The text is not JSON, names a field the schema does not have, or gives a field a value
    /// of the wrong type; the message names the field and its line and column.
    #[error("{0}")]
    Json(serde_json::Error),
    /// The compiled schema has no `ProbeConfig` (a broken build).
    #[error("ProbeConfig is not in the schema")]
    NoProbeConfig,
}

/// Checks that `text` is a proto3-JSON `ProbeConfig` naming only fields of the schema; the
/// error names the field and its line and column.
pub fn check_probe_config_json(text: &str) -> Result<(), StrictJsonError> {
    let message = message_descriptor("ProbeConfig").ok_or(StrictJsonError::NoProbeConfig)?;
    let mut de = serde_json::Deserializer::from_str(text);
    DynamicMessage::deserialize(message, &mut de).map_err(StrictJsonError::Json)?;
    de.end().map_err(StrictJsonError::Json)
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
        check_probe_config_json(text).unwrap();
        check_probe_config_json("{}").unwrap();
    }

    #[test]
    fn unknown_fields_are_named_with_their_place() {
        let err = |text| match check_probe_config_json(text) {
            Err(StrictJsonError::Json(e)) => e,
            other => panic!("{text}: {other:?}"),
        };
        let e = err("{\n \"processes\": [{\"pid\": 1}]\n}");
        assert!(e.to_string().contains("processes"), "{e}");
        assert_eq!(e.line(), 2, "{e}");
        let e = err(r#"{"params":{"report_periode":5}}"#);
        assert!(e.to_string().contains("report_periode"), "{e}");
        let e = err(r#"{"snoopers":[{"process":{"tgid":1}}]}"#);
        assert!(e.to_string().contains("tgid"), "{e}");
    }

    #[test]
    fn wrong_types_and_trailing_text_are_errors() {
        for text in [r#"{"params":{"report_period":"x"}}"#, "{} {}"] {
            assert!(
                matches!(check_probe_config_json(text), Err(StrictJsonError::Json(_))),
                "{text}"
            );
        }
    }
}
