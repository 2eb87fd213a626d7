//! A REST PUT (or `gopher-ctl probe set`) applied to a probe's settings, as a pure function
//! (docs/reference/rest-api.md §2, §4–§6, §8–§10). Spawning, stopping and control messages are the caller's.
//!
//! Fixes over the original, on purpose:
//! - A failed PUT changes nothing at all. The original rolled back `cmd`, the snoopers and
//!   `params` but kept `custom_labels`/`pod_labels` from the failed body; here the new settings
//!   are built on a copy and only returned on success.
//! - `latency_thr`/`offline_thr`/`drops_thr` accept 0 to switch them off again
//!   (see [`crate::probes::params`]).
//! - `custom_labels: {}` clears the labels (the original treated it as "no change").
//! - Wrong JSON types (an object where an array is expected, a number where an object is
//!   expected…) are refused with the section's message instead of aborting the daemon; a
//!   section that is not an object (`"cmd": []`, `"params": 5`) and a `cmd.probe` that is not
//!   an array are `Bad request`.
//! - The "the snooper for <n> cannot be empty" rule applies to the probes whose catalogue
//!   entry says so (tcp, socket, container — see `BuiltinProbe::requires_snoopers`); custom
//!   probes receive process and container snoopers but are exempt, as in the original.
//! - A percent-encoded body (`curl --data-urlencode`, as the openEuler docs show) is accepted
//!   ([`form_decoded`]).

use std::borrow::Cow;

use serde_json::Value;

use super::error::{ApiError, MAX_PUT_BODY};
use super::json::parse_object;
use super::settings::{DesiredState, ProbeSettings, SnooperMode};
use super::snoopers::{parse_custom_labels, parse_entries, parse_pod_labels};
use crate::probes::catalogue::ProbeKind;
use crate::probes::params::{apply_params, ParamContext};

/// The five keys a PUT body may carry, in the order they are applied.
pub const SECTIONS: [&str; 5] = ["cmd", "snoopers", "blacklist", "params", "state"];

/// Longest sub-item name in `cmd.probe`.
pub const MAX_SUBITEM_NAME: usize = 64;

/// What the caller knows about the probe's process when the PUT arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PutContext {
    /// The probe is running (or starting): `ringbuf_map_size` may not change.
    pub running: bool,
}

/// The result of a PUT that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct PutOutcome {
    /// The probe's new settings (replace the old ones with these).
    pub settings: ProbeSettings,
    /// The requested `state`, if the body had one.
    pub state: Option<DesiredState>,
    /// Sub-items, params or custom params differ from before (the control message's
    /// PARAMS_CHG flag).
    pub params_changed: bool,
    /// Snooper entries or whitelist/blacklist mode differ from before (SNOOPER_CHG).
    pub snoopers_changed: bool,
}

/// Checks the size and the `json=` prefix of a REST PUT body and returns the JSON after it.
/// The 1 MiB bound includes the prefix, and is checked first.
pub fn strip_json_prefix(body: &[u8]) -> Result<&[u8], ApiError> {
    if body.len() > MAX_PUT_BODY {
        return Err(ApiError::body_too_large());
    }
    body.strip_prefix(b"json=")
        .ok_or_else(ApiError::missing_json_prefix)
}

/// The JSON of a body sent with `curl --data-urlencode json='{...}'` — the form the openEuler
/// documentation itself shows, which the original refused with `invalid json format`. Raw
/// JSON cannot start with `%`, so a payload starting with `%7B` is percent-decoded (`+` is a
/// space, as in any form); anything else is returned as it is.
pub fn form_decoded(json: &[u8]) -> Cow<'_, [u8]> {
    if !(json.len() >= 3
        && json[0] == b'%'
        && json[1] == b'7'
        && json[2].eq_ignore_ascii_case(&b'b'))
    {
        return Cow::Borrowed(json);
    }
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(json.len());
    let mut i = 0;
    while i < json.len() {
        match json[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < json.len() => {
                match (hex(json[i + 1]), hex(json[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push(h << 4 | l);
                        i += 3;
                        continue;
                    }
                    // Not an escape: kept, and the JSON parser will say what is wrong.
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(out)
}

/// Applies the JSON of a PUT to `current`, the settings of probe `kind` (use
/// [`ProbeSettings::new`] for a probe never configured). Sections are handled in the order
/// cmd → snoopers → blacklist → (snooper rule) → params → state; the first failure is the
/// answer and `current` stays as it was.
pub fn apply_put(
    kind: &ProbeKind,
    current: &ProbeSettings,
    json: &[u8],
    ctx: PutContext,
) -> Result<PutOutcome, ApiError> {
    let root = parse_object(json)?;
    if !SECTIONS.iter().any(|k| root.contains_key(*k)) {
        return Err(ApiError::bad_request());
    }
    let mut next = current.clone();

    if let Some(cmd) = root.get("cmd") {
        next.subitems = parse_cmd(kind, cmd)?;
    }

    // Probes that take no snoopers ignore both sections entirely, labels included.
    if kind.snoop.any() {
        let mut whitelisted = 0;
        if let Some(section) = root.get("snoopers") {
            let section = section.as_object().ok_or_else(ApiError::bad_request)?;
            let entries = parse_entries(section)?;
            if let Some(v) = section.get("custom_labels") {
                next.custom_labels = parse_custom_labels(v)?;
            }
            if let Some(v) = section.get("pod_labels") {
                next.pod_labels = parse_pod_labels(v)?;
            }
            whitelisted = entries.len();
            next.snooper_mode = SnooperMode::Whitelist;
            next.snoopers = entries;
        }
        if let Some(section) = root.get("blacklist") {
            if whitelisted > 0 {
                return Err(ApiError::snoopers_and_blacklist());
            }
            let section = section.as_object().ok_or_else(ApiError::bad_request)?;
            next.snooper_mode = SnooperMode::Blacklist;
            next.snoopers = parse_entries(section)?;
        }
    }

    // Checked whether or not `params` is present, as the original did.
    if kind.requires_snoopers
        && next.snooper_mode == SnooperMode::Whitelist
        && next.snoopers.is_empty()
    {
        return Err(ApiError::snooper_empty(&kind.name));
    }

    if let Some(params) = root.get("params") {
        let params = params.as_object().ok_or_else(ApiError::bad_request)?;
        let param_ctx = ParamContext {
            custom_labels: kind.custom_params(),
            running: ctx.running,
        };
        apply_params(&mut next.params, &mut next.custom_params, params, param_ctx)?;
    }

    let state = root.get("state").map(parse_state).transpose()?;
    if state == Some(DesiredState::Running) && !kind.subitems.is_empty() && next.subitems.is_empty()
    {
        return Err(ApiError::no_subitem());
    }

    Ok(PutOutcome {
        params_changed: next.subitems != current.subitems
            || next.params != current.params
            || next.custom_params != current.custom_params,
        snoopers_changed: next.snooper_mode != current.snooper_mode
            || next.snoopers != current.snoopers,
        settings: next,
        state,
    })
}

/// `cmd`: `probe` replaces the sub-item set; custom probes must also repeat their `bin`.
/// Returns the enabled sub-items in catalogue order and spelling (duplicates collapse).
fn parse_cmd(kind: &ProbeKind, cmd: &Value) -> Result<Vec<String>, ApiError> {
    let cmd = cmd.as_object().ok_or_else(ApiError::bad_request)?;
    let items = cmd
        .get("probe")
        .ok_or_else(ApiError::bad_request)?
        .as_array()
        .ok_or_else(ApiError::bad_request)?;
    let custom = kind.is_custom();
    if custom {
        // `bin` is ignored for built-ins (the original stopped honouring it as unsafe).
        let same_bin = cmd
            .get("bin")
            .and_then(Value::as_str)
            .is_some_and(|bin| kind.bin.as_os_str() == bin);
        if !same_bin {
            return Err(ApiError::custom_bin_mismatch());
        }
    }
    let mut mask = 0u32;
    for item in items {
        let name = item.as_str().ok_or_else(|| {
            if custom {
                ApiError::custom_subitem_not_string()
            } else {
                ApiError::subitem_not_string()
            }
        })?;
        if name.is_empty() || name.len() > MAX_SUBITEM_NAME {
            return Err(ApiError::subitem_length());
        }
        let subitem = kind.subitem(name).ok_or_else(|| {
            if custom {
                ApiError::undeclared_custom_subitem(name)
            } else {
                ApiError::unsupported_subitem(name)
            }
        })?;
        mask |= subitem.bit;
    }
    if mask == 0 && !kind.subitems.is_empty() {
        return Err(ApiError::no_subitem());
    }
    Ok(kind
        .subitems
        .iter()
        .filter(|s| mask & s.bit != 0)
        .map(|s| s.name.clone())
        .collect())
}

/// `state`: `running` or `stopped`, case-insensitive.
fn parse_state(value: &Value) -> Result<DesiredState, ApiError> {
    let s = value.as_str().ok_or_else(ApiError::state_not_string)?;
    if s.eq_ignore_ascii_case("running") {
        Ok(DesiredState::Running)
    } else if s.eq_ignore_ascii_case("stopped") {
        Ok(DesiredState::Stopped)
    } else {
        Err(ApiError::invalid_state(s))
    }
}
