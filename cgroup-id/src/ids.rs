//! Container and pod identifiers: validation and the one normal form every other part compares.

/// Length of a full container id (docker, containerd, CRI-O, podman and iSulad all use 64 hex).
pub const FULL_CONTAINER_ID_LEN: usize = 64;

/// Length of the abbreviated id runtimes print (`docker ps`) and the original's records carry.
pub const SHORT_CONTAINER_ID_LEN: usize = 12;

/// The abbreviated form of a container id: its first 12 characters, lowercase (the whole id if
/// it is shorter).
pub fn abbreviate_container_id(id: &str) -> String {
    let end = id
        .char_indices()
        .nth(SHORT_CONTAINER_ID_LEN)
        .map_or(id.len(), |(i, _)| i);
    id[..end].to_ascii_lowercase()
}

/// Whether `s` is a full container id: exactly 64 hex digits (either case).
pub fn is_full_container_id(s: &str) -> bool {
    s.len() == FULL_CONTAINER_ID_LEN && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A `container_id` snooper entry as a lowercase prefix: 1–64 hex digits (the REST rule of fix
/// 4fc2ed64), `None` otherwise.
pub fn normalise_container_id_prefix(s: &str) -> Option<String> {
    let ok = !s.is_empty()
        && s.len() <= FULL_CONTAINER_ID_LEN
        && s.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| s.to_ascii_lowercase())
}

/// A pod uid in its dashed, lowercase 36-character form (`8-4-4-4-12`). Accepts that form in any
/// case, or 32 hex digits without dashes; anything else is `None`.
pub fn normalise_pod_id(s: &str) -> Option<String> {
    const DASHES: [usize; 4] = [8, 13, 18, 23];
    let bytes = s.as_bytes();
    match bytes.len() {
        36 => {
            let well_formed = bytes.iter().enumerate().all(|(i, b)| {
                if DASHES.contains(&i) {
                    *b == b'-'
                } else {
                    b.is_ascii_hexdigit()
                }
            });
            well_formed.then(|| s.to_ascii_lowercase())
        }
        32 if bytes.iter().all(u8::is_ascii_hexdigit) => {
            let lower = s.to_ascii_lowercase();
            let mut out = String::with_capacity(36);
            for (i, c) in lower.char_indices() {
                // Offsets 8, 12, 16, 20 of the bare form are where the dashes go.
                if matches!(i, 8 | 12 | 16 | 20) {
                    out.push('-');
                }
                out.push(c);
            }
            Some(out)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn normalising_never_panics_and_yields_the_canonical_form(s in "\\PC{0,40}") {
            if let Some(pod) = normalise_pod_id(&s) {
                prop_assert_eq!(pod.len(), 36);
                prop_assert_eq!(normalise_pod_id(&pod), Some(pod.clone()));
            }
            if let Some(prefix) = normalise_container_id_prefix(&s) {
                prop_assert_eq!(prefix.to_ascii_lowercase(), prefix);
            }
        }
    }

    #[test]
    fn pod_ids_are_normalised_to_the_dashed_lowercase_form() {
        let dashed = "3f1e6a4c-9b2d-4e8f-a1b2-0123456789ab";
        assert_eq!(normalise_pod_id(dashed).as_deref(), Some(dashed));
        assert_eq!(
            normalise_pod_id("3F1E6A4C-9B2D-4E8F-A1B2-0123456789AB").as_deref(),
            Some(dashed)
        );
        assert_eq!(
            normalise_pod_id("3f1e6a4c9b2d4e8fa1b20123456789ab").as_deref(),
            Some(dashed)
        );
        for bad in [
            "",
            "3f1e6a4c_9b2d_4e8f_a1b2_0123456789ab",
            "3f1e6a4c-9b2d-4e8f-a1b2-0123456789ag",
            "3f1e6a4c9b2d-4e8f-a1b2-0123456789abc",
            "3f1e6a4c9b2d4e8fa1b20123456789a",
            "é1e6a4c9b2d4e8fa1b20123456789a",
        ] {
            assert_eq!(normalise_pod_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn abbreviated_ids_are_the_first_12_lowercase_characters() {
        assert_eq!(abbreviate_container_id(&"AB".repeat(32)), "abababababab");
        assert_eq!(abbreviate_container_id("abc"), "abc");
        assert_eq!(
            abbreviate_container_id("é".repeat(20).as_str())
                .chars()
                .count(),
            12
        );
    }

    #[test]
    fn container_id_prefixes_are_hex_of_1_to_64_chars() {
        assert_eq!(normalise_container_id_prefix("AbC").as_deref(), Some("abc"));
        assert_eq!(
            normalise_container_id_prefix(&"f".repeat(64)).as_deref(),
            Some(&*"f".repeat(64))
        );
        assert_eq!(normalise_container_id_prefix(""), None);
        assert_eq!(normalise_container_id_prefix(&"f".repeat(65)), None);
        assert_eq!(normalise_container_id_prefix("abc;rm"), None);
        assert!(is_full_container_id(&"0a".repeat(32)));
        assert!(!is_full_container_id(&"0a".repeat(31)));
        assert!(!is_full_container_id(&"0g".repeat(32)));
    }
}
