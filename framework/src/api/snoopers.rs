//! The `snoopers` and `blacklist` sections of a PUT (docs/reference/rest-api.md §5): entry validation and
//! normalisation, custom labels and pod labels.
//!
//! Types are checked strictly: where the original read a non-array as empty (or aborted on a
//! JsonCpp assertion), any value of the wrong JSON type is `Error occurs when parsing snooper
//! <key>`. The 100-entry bound counts every kind, `container_name` included (the original
//! bounded that kind by 1000 and wrote out of bounds).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::error::ApiError;
use super::settings::{ProcNameEntry, SnooperEntries};
use crate::probes::params::WholeNumber;
use crate::textcheck::has_unsafe_chars;

/// Most snooper entries of all kinds together one probe may hold.
pub const MAX_SNOOPER_ENTRIES: usize = 100;
/// Most `custom_labels` entries.
pub const MAX_CUSTOM_LABELS: usize = 10;
/// Most `pod_labels` entries.
pub const MAX_POD_LABELS: usize = 10;
/// `comm` is stored truncated to this many bytes (the kernel's comm length minus the NUL).
pub const COMM_LEN: usize = 15;
/// `container_id` is stored abbreviated to this many hex digits.
pub const CONTAINER_ID_LEN: usize = 12;
/// Longest accepted `container_id`.
pub const CONTAINER_ID_MAX: usize = 64;
/// `container_name` is stored truncated to this many bytes.
pub const CONTAINER_NAME_LEN: usize = 63;
/// Largest accepted `proc_id` (pids are positive `int`s; Linux caps them at 2^22).
pub const PID_MAX: u32 = i32::MAX.unsigned_abs();
/// Compiled-size bound for a `comm` pattern; 15 bytes of pattern stay far below it.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Reads the five entry keys of a `snoopers` or `blacklist` object (other keys are ignored).
pub fn parse_entries(section: &Map<String, Value>) -> Result<SnooperEntries, ApiError> {
    let mut entries = SnooperEntries::default();
    let mut count = Counter(0);
    if let Some(v) = section.get("proc_id") {
        for item in array("proc_id", v)? {
            entries.proc_id.push(parse_pid(item)?);
            count.add("proc_id")?;
        }
    }
    if let Some(v) = section.get("proc_name") {
        for item in array("proc_name", v)? {
            if let Some(entry) = parse_proc_name(item)? {
                entries.proc_name.push(entry);
                count.add("proc_name")?;
            }
        }
    }
    if let Some(v) = section.get("pod_id") {
        for item in array("pod_id", v)? {
            let id = string("pod_id", item)?;
            if id.is_empty() {
                continue;
            }
            if !is_pod_id(id) {
                return Err(ApiError::snooper("pod_id"));
            }
            entries.pod_id.push(id.to_string());
            count.add("pod_id")?;
        }
    }
    if let Some(v) = section.get("container_id") {
        for item in array("container_id", v)? {
            let id = string("container_id", item)?;
            if id.is_empty() {
                continue;
            }
            if id.len() > CONTAINER_ID_MAX || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ApiError::snooper("container_id"));
            }
            entries
                .container_id
                .push(truncate(id, CONTAINER_ID_LEN).to_string());
            count.add("container_id")?;
        }
    }
    if let Some(v) = section.get("container_name") {
        for item in array("container_name", v)? {
            let name = string("container_name", item)?;
            if has_unsafe_chars(name) {
                return Err(ApiError::snooper("container_name"));
            }
            // An empty name is kept: it matches every container, as in the original.
            entries
                .container_name
                .push(truncate(name, CONTAINER_NAME_LEN).to_string());
            count.add("container_name")?;
        }
    }
    Ok(entries)
}

/// `custom_labels`: an object of at most 10 string values; `{}` clears the labels (the
/// original could never clear them).
pub fn parse_custom_labels(value: &Value) -> Result<BTreeMap<String, String>, ApiError> {
    const KEY: &str = "custom_labels";
    let object = value.as_object().ok_or_else(|| ApiError::snooper(KEY))?;
    if object.len() > MAX_CUSTOM_LABELS {
        return Err(ApiError::snooper(KEY));
    }
    object
        .iter()
        .map(|(k, v)| Ok((k.clone(), string(KEY, v)?.to_string())))
        .collect()
}

/// `pod_labels`: an array of at most 10 strings, replacing the previous list.
pub fn parse_pod_labels(value: &Value) -> Result<Vec<String>, ApiError> {
    const KEY: &str = "pod_labels";
    let items = array(KEY, value)?;
    if items.len() > MAX_POD_LABELS {
        return Err(ApiError::snooper(KEY));
    }
    items
        .iter()
        .map(|v| Ok(string(KEY, v)?.to_string()))
        .collect()
}

struct Counter(usize);

impl Counter {
    fn add(&mut self, key: &str) -> Result<(), ApiError> {
        self.0 += 1;
        if self.0 > MAX_SNOOPER_ENTRIES {
            return Err(ApiError::snooper(key));
        }
        Ok(())
    }
}

fn array<'a>(key: &str, value: &'a Value) -> Result<&'a Vec<Value>, ApiError> {
    value.as_array().ok_or_else(|| ApiError::snooper(key))
}

fn string<'a>(key: &str, value: &'a Value) -> Result<&'a str, ApiError> {
    value.as_str().ok_or_else(|| ApiError::snooper(key))
}

/// A pid: a JSON number (not a boolean), fraction truncated, 0 to 2^31-1. Negative values,
/// which the original wrapped to meaningless u32 pids, are refused.
fn parse_pid(value: &Value) -> Result<u32, ApiError> {
    value
        .is_number()
        .then(|| WholeNumber::from_json(value))
        .flatten()
        .and_then(|n| n.within(0, PID_MAX))
        .ok_or_else(|| ApiError::snooper("proc_id"))
}

/// `{comm, cmdline?, label?}`; `None` for an empty `comm` (silently skipped, as the original).
fn parse_proc_name(value: &Value) -> Result<Option<ProcNameEntry>, ApiError> {
    const KEY: &str = "proc_name";
    let err = || ApiError::snooper(KEY);
    let object = value.as_object().ok_or_else(err)?;
    let comm = object.get("comm").ok_or_else(err)?;
    let comm = truncate(string(KEY, comm)?, COMM_LEN);
    if comm.is_empty() {
        return Ok(None);
    }
    // The stored (truncated) text is what gets matched, so that is what must compile.
    regex::RegexBuilder::new(comm)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|_| err())?;
    let cmdline = match object.get("cmdline") {
        None => String::new(),
        Some(v) => string(KEY, v)?.to_string(),
    };
    let label = match object.get("label") {
        None => None,
        Some(v) => {
            let label = v.as_object().ok_or_else(err)?;
            if label.len() > 1 {
                return Err(err());
            }
            match label.iter().next() {
                None => None,
                Some((k, v)) => Some((k.clone(), string(KEY, v)?.to_string())),
            }
        }
    };
    Ok(Some(ProcNameEntry {
        comm: comm.to_string(),
        cmdline,
        label,
    }))
}

/// 32 hex digits, or 36 characters `8-4-4-4-12` with `-` at offsets 8, 13, 18 and 23.
pub fn is_pod_id(id: &str) -> bool {
    let b = id.as_bytes();
    match b.len() {
        32 => b.iter().all(u8::is_ascii_hexdigit),
        36 => b.iter().enumerate().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                *c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        }),
        _ => false,
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn entries(v: Value) -> Result<SnooperEntries, String> {
        parse_entries(v.as_object().unwrap()).map_err(|e| e.message)
    }

    #[test]
    fn pod_ids_have_two_forms() {
        assert!(is_pod_id("0123456789abcdefABCDEF0123456789"));
        assert!(is_pod_id("01234567-89ab-cdef-0123-456789abcdef"));
        for bad in [
            "0123456789abcdef0123456789abcde",
            "0123456789abcdef0123456789abcdeg",
            "01234567-89ab-cdef-0123-456789abcde-",
            "0123456789ab-cdef-0123-456789abcdef",
            "01234567-89ab-cdef-0123_456789abcdef",
            "../../../../../../../../etc/passwd",
        ] {
            assert!(!is_pod_id(bad), "{bad}");
        }
    }

    #[test]
    fn entries_are_normalised() {
        let e = entries(json!({
            "proc_id": [1, 2.7, 2147483647],
            "proc_name": [{"comm": "a_very_long_command_name", "cmdline": "x y", "label": {"k": "v"}},
                          {"comm": ""}, {"comm": "java", "debugging_dir": "/x", "label": {}}],
            "pod_id": ["", "01234567-89ab-cdef-0123-456789abcdef"],
            "container_id": ["", "0123456789abcdef0123"],
            "container_name": ["", "web-1"],
            "ignored": 5,
        }))
        .unwrap();
        assert_eq!(e.proc_id, [1, 2, 2147483647]);
        assert_eq!(e.proc_name.len(), 2, "empty comm is skipped");
        assert_eq!(e.proc_name[0].comm, "a_very_long_com");
        assert_eq!(e.proc_name[0].label, Some(("k".into(), "v".into())));
        assert_eq!(e.proc_name[1].cmdline, "");
        assert_eq!(e.proc_name[1].label, None);
        assert_eq!(e.pod_id.len(), 1);
        assert_eq!(e.container_id, ["0123456789ab"]);
        assert_eq!(e.container_name, ["", "web-1"]);
        assert_eq!(e.len(), 9);
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        let e = entries(json!({"proc_name": [{"comm": "ééééééééé"}],
                               "container_name": ["é".repeat(40)]}))
        .unwrap();
        assert_eq!(e.proc_name[0].comm, "ééééééé");
        assert_eq!(e.container_name[0].len(), 62);
    }

    #[test]
    fn invalid_entries_name_their_key() {
        let cases = [
            (json!({"proc_id": [true]}), "proc_id"),
            (json!({"proc_id": ["1"]}), "proc_id"),
            (json!({"proc_id": [-1]}), "proc_id"),
            (json!({"proc_id": [-2147483647]}), "proc_id"),
            (json!({"proc_id": [4294967296_u64]}), "proc_id"),
            (json!({"proc_id": 5}), "proc_id"),
            (json!({"proc_name": [{"cmdline": "x"}]}), "proc_name"),
            (json!({"proc_name": [{"comm": 1}]}), "proc_name"),
            (json!({"proc_name": ["java"]}), "proc_name"),
            (json!({"proc_name": [{"comm": "ja(va"}]}), "proc_name"),
            (
                json!({"proc_name": [{"comm": "java", "cmdline": 1}]}),
                "proc_name",
            ),
            (
                json!({"proc_name": [{"comm": "java", "label": {"a": "1", "b": "2"}}]}),
                "proc_name",
            ),
            (
                json!({"proc_name": [{"comm": "java", "label": {"a": 1}}]}),
                "proc_name",
            ),
            (
                json!({"proc_name": [{"comm": "java", "label": "a"}]}),
                "proc_name",
            ),
            (json!({"proc_name": {"comm": "java"}}), "proc_name"),
            (json!({"pod_id": ["abc"]}), "pod_id"),
            (json!({"pod_id": [1]}), "pod_id"),
            (json!({"container_id": ["xyz"]}), "container_id"),
            (json!({"container_id": ["a".repeat(65)]}), "container_id"),
            (json!({"container_id": "abc"}), "container_id"),
            (json!({"container_name": ["a;b"]}), "container_name"),
            (json!({"container_name": ["$(reboot)"]}), "container_name"),
            (json!({"container_name": ["../x"]}), "container_name"),
            (json!({"container_name": ["a\nb"]}), "container_name"),
            (json!({"container_name": [null]}), "container_name"),
        ];
        for (body, key) in cases {
            assert_eq!(
                entries(body.clone()).unwrap_err(),
                format!("Error occurs when parsing snooper {key}"),
                "{body}"
            );
        }
    }

    #[test]
    fn at_most_one_hundred_entries_of_all_kinds() {
        let ids: Vec<u32> = (0..60).collect();
        let names: Vec<String> = (0..40).map(|i| format!("c{i}")).collect();
        assert_eq!(
            entries(json!({"proc_id": ids, "container_name": names}))
                .unwrap()
                .len(),
            100
        );
        let names: Vec<String> = (0..41).map(|i| format!("c{i}")).collect();
        assert_eq!(
            entries(json!({"proc_id": ids, "container_name": names})).unwrap_err(),
            "Error occurs when parsing snooper container_name"
        );
        let many: Vec<String> = (0..1001).map(|i| format!("c{i}")).collect();
        assert!(entries(json!({ "container_name": many })).is_err());
    }

    #[test]
    fn labels() {
        let labels = parse_custom_labels(&json!({"app": "web", "zone": "a"})).unwrap();
        assert_eq!(labels.len(), 2);
        assert!(parse_custom_labels(&json!({})).unwrap().is_empty());
        let eleven: Map<String, Value> = (0..11).map(|i| (format!("k{i}"), json!("v"))).collect();
        for bad in [json!(eleven), json!({"a": 1}), json!(["a"])] {
            assert_eq!(
                parse_custom_labels(&bad).unwrap_err().message,
                "Error occurs when parsing snooper custom_labels"
            );
        }
        assert_eq!(
            parse_pod_labels(&json!(["app", "tier"])).unwrap(),
            ["app", "tier"]
        );
        let eleven: Vec<String> = (0..11).map(|i| format!("l{i}")).collect();
        for bad in [json!(eleven), json!([1]), json!({"a": "b"})] {
            assert_eq!(
                parse_pod_labels(&bad).unwrap_err().message,
                "Error occurs when parsing snooper pod_labels"
            );
        }
    }
}
