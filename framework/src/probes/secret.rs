//! Credentials in probe settings (a `password` custom param, a `password=…` inside a
//! connection string): `GET /<probe>` and `gopher-ctl probe get` show them as [`MASK`];
//! `probes.init`, which must restore them, keeps them, readable by its owner alone.

use std::borrow::Cow;

use serde_json::Value;

/// What a credential reads as.
pub const MASK: &str = "******";

/// Words that mark a credential, in a setting's name or before `=` in a value.
const WORDS: &[&str] = &["password", "passwd", "token", "secret"];

/// Whether a setting called `name` holds a credential.
pub fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    WORDS.iter().any(|w| name.contains(w))
}

/// `value` with what follows every `<word>=` (up to a space, `;`, `&` or `,`) masked.
pub fn mask_inline(value: &str) -> Cow<'_, str> {
    let lower = value.to_ascii_lowercase();
    let mut cuts: Vec<(usize, usize)> = Vec::new();
    for word in WORDS {
        let mut from = 0;
        while let Some(at) = lower[from..].find(word).map(|i| i + from) {
            let start = at + word.len();
            from = start;
            if !lower[start..].starts_with('=') {
                continue;
            }
            let start = start + 1;
            let end = lower[start..]
                .find([' ', '\t', ';', '&', ','])
                .map_or(lower.len(), |i| i + start);
            if end > start {
                cuts.push((start, end));
            }
        }
    }
    if cuts.is_empty() {
        return Cow::Borrowed(value);
    }
    cuts.sort_unstable();
    let mut out = String::with_capacity(value.len());
    let mut last = 0;
    for (start, end) in cuts {
        if start < last {
            continue;
        }
        out.push_str(&value[last..start]);
        out.push_str(MASK);
        last = end;
    }
    out.push_str(&value[last..]);
    Cow::Owned(out)
}

/// `value` of setting `name` as GET shows it: strings masked by name or inline, objects and
/// arrays (`custom_param`'s `[{"<label>": "<value>"}]`) member by member.
pub fn masked(name: &str, value: Value) -> Value {
    match value {
        Value::String(s) if is_secret_name(name) && !s.is_empty() => Value::from(MASK),
        Value::String(s) => match mask_inline(&s) {
            Cow::Borrowed(_) => Value::String(s),
            Cow::Owned(m) => Value::String(m),
        },
        Value::Array(items) => items.into_iter().map(|v| masked(name, v)).collect(),
        Value::Object(map) => map
            .into_iter()
            .map(|(k, v)| {
                let v = masked(&k, v);
                (k, v)
            })
            .collect(),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn names_that_hold_credentials() {
        for n in [
            "password",
            "PGPASSWORD",
            "db_passwd",
            "api_token",
            "client_secret",
        ] {
            assert!(is_secret_name(n), "{n}");
        }
        for n in ["host", "port", "user", "dbname", "report_period"] {
            assert!(!is_secret_name(n), "{n}");
        }
    }

    #[test]
    fn inline_credentials_are_masked_to_their_end() {
        assert_eq!(mask_inline("host=db port=5432"), "host=db port=5432");
        assert_eq!(
            mask_inline("host=db password=s3cr3t user=x"),
            "host=db password=****** user=x"
        );
        assert_eq!(mask_inline("a?TOKEN=abc&b=1"), "a?TOKEN=******&b=1");
        assert_eq!(
            mask_inline("secret=x;passwd=y"),
            "secret=******;passwd=******"
        );
        assert_eq!(mask_inline("password="), "password=");
        assert_eq!(mask_inline("passwordless=yes"), "passwordless=yes");
    }

    #[test]
    fn custom_params_are_masked_by_label() {
        let get = masked(
            "custom_param",
            json!([{"host": "127.0.0.1"}, {"password": "pw"}, {"dsn": "user=a password=b"}]),
        );
        assert_eq!(
            get,
            json!([{"host": "127.0.0.1"}, {"password": MASK}, {"dsn": "user=a password=******"}])
        );
        assert_eq!(masked("report_period", json!(5)), json!(5));
    }
}
