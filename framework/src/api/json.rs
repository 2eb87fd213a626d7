//! JSON as the original's REST API spoke it: JsonCpp's reader (comments allowed, trailing
//! commas not) and its FastWriter (compact, object keys sorted).
//!
//! Decisions:
//! - `//` and `/* */` comments outside strings are accepted, as JsonCpp's legacy reader did,
//!   because drop-in users may keep commented bodies in scripts and `probes.init`.
//! - Unlike JsonCpp, text after the root value is refused (`invalid json format`) rather than
//!   silently ignored, and so is a number too large for a double (`1e400`).

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::error::ApiError;

/// Parses a PUT body (without `json=`) into its root object.
pub fn parse_object(json: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let text = strip_comments(json).ok_or_else(ApiError::invalid_json)?;
    match serde_json::from_slice::<Value>(&text) {
        Ok(Value::Object(root)) => Ok(root),
        _ => Err(ApiError::invalid_json()),
    }
}

/// Replaces each comment outside strings by one space; `None` if a `/* ... */` never ends.
pub fn strip_comments(input: &[u8]) -> Option<Cow<'_, [u8]>> {
    if !input.contains(&b'/') {
        return Some(Cow::Borrowed(input));
    }
    let mut out = Vec::with_capacity(input.len());
    let mut in_string = false;
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        if in_string {
            out.push(b);
            match b {
                b'\\' => {
                    // The escaped byte cannot end the string.
                    if let Some(&next) = input.get(i + 1) {
                        out.push(next);
                        i += 1;
                    }
                }
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        match (b, input.get(i + 1)) {
            (b'"', _) => {
                in_string = true;
                out.push(b);
                i += 1;
            }
            (b'/', Some(b'/')) => {
                let rest = &input[i..];
                i += rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
                out.push(b' ');
            }
            (b'/', Some(b'*')) => {
                let body = &input[i + 2..];
                let end = body.windows(2).position(|w| w == b"*/")?;
                i += 2 + end + 2;
                out.push(b' ');
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(Cow::Owned(out))
}

/// Writes `value` compactly with the keys of every object in byte order (JsonCpp's
/// FastWriter sorted them through its `std::map`), regardless of how `Map` orders them.
pub fn write_sorted(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(key.as_str()).to_string());
                out.push(':');
                write_sorted(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_sorted(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parses(text: &str) -> bool {
        parse_object(text.as_bytes()).is_ok()
    }

    #[test]
    fn comments_are_accepted_outside_strings() {
        let root = parse_object(
            b"// leading\n{\"state\": /* inline */ \"running\", // trailing\n \"x\": \"a//b/*c*/\"}\n/* end */",
        )
        .unwrap();
        assert_eq!(root["state"], "running");
        assert_eq!(root["x"], "a//b/*c*/", "string content is kept");
        assert!(parses(r#"{"a": "say \"//\" here"}"#));
        assert!(!parses("{\"a\": 1} /* unterminated"));
        assert!(!parses("{\"a\": 1/**/2}"), "a comment separates tokens");
    }

    #[test]
    fn what_jsoncpp_refused_is_refused() {
        for bad in [
            "",
            "{",
            r#"{"sample_period": 200, }"#,
            r#"["state"]"#,
            r#""running""#,
            "42",
            "null",
            r#"{"a":1} trailing"#,
            r#"{'a': 1}"#,
            r#"{"a": 1e400}"#,
            "{\"a\": \"\u{1}\"}",
        ] {
            assert!(!parses(bad), "{bad:?}");
        }
        assert!(parse_object(b"{\"a\": \"\xff\"}").is_err(), "not UTF-8");
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(!parses(&deep), "nesting is bounded, no stack overflow");
        assert_eq!(
            parse_object(b"{,}").unwrap_err().message,
            "invalid json format"
        );
    }

    #[test]
    fn writer_sorts_keys_at_every_level() {
        let v: Value = serde_json::from_str(
            r#"{"b": {"z": 1, "a": [{"y": "q\"", "x": null}]}, "a": true, "C": 1.5}"#,
        )
        .unwrap();
        let mut out = String::new();
        write_sorted(&v, &mut out);
        assert_eq!(
            out,
            r#"{"C":1.5,"a":true,"b":{"a":[{"x":null,"y":"q\""}],"z":1}}"#
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]
        /// Comment stripping never panics, and text without comments passes through unchanged.
        #[test]
        fn comment_stripping_is_safe(text in "[{}\\[\\]\",:/*\\\\a1 \n]{0,60}") {
            let _ = strip_comments(text.as_bytes());
            let _ = parse_object(text.as_bytes());
            if !text.contains('/') {
                let stripped = strip_comments(text.as_bytes());
                proptest::prop_assert_eq!(stripped.as_deref(), Some(text.as_bytes()));
            }
        }
    }
}
