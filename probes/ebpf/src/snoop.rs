//! The snooper scope of a probe in its BPF maps: the tgids of the configuration's processes
//! in `gala_snoop`, the mode (whitelist/blacklist) and the probe's own tgid in `gala_ctl`
//! (both defined by `gala.bpf.h`). [`SnoopMap::sync`] writes only what changed, so a
//! snooper change takes effect in the kernel at once without touching unchanged entries.

use std::collections::BTreeSet;

use gala_probe_sdk::{Config, SnooperMode};
use libbpf_rs::btf::types::{MemberAttr, Struct};
use libbpf_rs::btf::{Btf, HasSize};
use libbpf_rs::{AsRawLibbpf, MapCore, MapFlags, Object};

use crate::Error;

/// The `gala_snoop` map's capacity (`GALA_MAX_SNOOP` in `gala.bpf.h`).
pub const MAX_SNOOP: usize = 8192;

/// The snooper scope as the probe's user space checks it: the same rule as `gala_snooped()`
/// of `gala.bpf.h` (listed tgids, or in blacklist mode the unlisted ones; never tgid 0 nor the
/// probe itself), for records and map entries read back from the kernel and for /proc scans.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Scope {
    blacklist: bool,
    pids: BTreeSet<u32>,
}

impl Scope {
    /// The scope of `pids` (the configuration's tgids) in `mode`.
    pub fn new(mode: SnooperMode, pids: BTreeSet<u32>) -> Self {
        Scope {
            blacklist: mode == SnooperMode::Blacklist,
            pids,
        }
    }

    /// Whether `tgid` is in scope.
    pub fn contains(&self, tgid: u32) -> bool {
        tgid != 0 && tgid != std::process::id() && self.pids.contains(&tgid) != self.blacklist
    }

    /// Whether the listed tgids are the excluded ones.
    pub fn is_blacklist(&self) -> bool {
        self.blacklist
    }

    /// The listed tgids.
    pub fn pids(&self) -> &BTreeSet<u32> {
        &self.pids
    }

    /// The processes in scope: the listed ones, or in blacklist mode those of `running()`
    /// (every process now running) that are in scope.
    pub fn members(&self, running: impl FnOnce() -> Vec<u32>) -> Vec<u32> {
        let candidates = if self.blacklist {
            running()
        } else {
            self.pids.iter().copied().collect()
        };
        candidates
            .into_iter()
            .filter(|&p| self.contains(p))
            .collect()
    }
}

/// What the BPF maps hold, as last written.
#[derive(Debug, Default)]
pub struct SnoopMap {
    pids: BTreeSet<u32>,
    mode: Option<u32>,
}

impl SnoopMap {
    /// A map state that knows nothing: the next [`sync`](Self::sync) writes everything
    /// (use a new one for every newly loaded BPF object).
    pub fn new() -> Self {
        Self::default()
    }

    /// The tgids last written.
    pub fn pids(&self) -> &BTreeSet<u32> {
        &self.pids
    }

    /// Brings the object's maps in line with `config`. Returns whether anything changed.
    pub fn sync(&mut self, object: &Object, config: &Config) -> Result<bool, Error> {
        let mode = match config.snooper_mode() {
            SnooperMode::Blacklist => 1u32,
            _ => 0,
        };
        let want: BTreeSet<u32> = config.pids().into_iter().take(MAX_SNOOP).collect();
        self.write(object, mode, want)
    }

    /// Writes `mode` and exactly the tgids `want`.
    pub fn write(
        &mut self,
        object: &Object,
        mode: u32,
        want: BTreeSet<u32>,
    ) -> Result<bool, Error> {
        let snoop = find_map(object, "gala_snoop")?;
        let mut changed = false;
        for gone in self.pids.difference(&want) {
            // A pid already gone from the map is fine.
            let _ = snoop.delete(&gone.to_ne_bytes());
            changed = true;
        }
        for new in want.difference(&self.pids) {
            snoop
                .update(&new.to_ne_bytes(), &[1u8], MapFlags::ANY)
                .map_err(Error::bpf(format!("adding tgid {new} to gala_snoop")))?;
            changed = true;
        }
        self.pids = want;
        if self.mode != Some(mode) {
            let ctl = find_map(object, "gala_ctl")?;
            let value = ctl_value(object, mode, std::process::id())?;
            ctl.update(&0u32.to_ne_bytes(), &value, MapFlags::ANY)
                .map_err(Error::bpf("writing gala_ctl"))?;
            self.mode = Some(mode);
            changed = true;
        }
        Ok(changed)
    }
}

/// `struct gala_ctl` with `mode` and `self_tgid`, laid out as the object's BTF says (it is
/// defined once, in `gala.bpf.h`; a field this function does not know is an error, so a
/// change there cannot be written wrong here). `object` is an open or loaded object.
pub fn ctl_value<O>(object: &O, mode: u32, self_tgid: u32) -> Result<Vec<u8>, Error>
where
    O: AsRawLibbpf<LibbpfType = libbpf_sys::bpf_object>,
{
    let layout = |why: &str| Error::Layout(format!("struct gala_ctl: {why}"));
    // SAFETY: the object outlives this call and so the reference; libbpf only reads it.
    let raw = unsafe { object.as_libbpf_object().as_ref() };
    let btf = Btf::from_bpf_object(raw)
        .ok()
        .flatten()
        .ok_or_else(|| layout("the object has no BTF"))?;
    let ctl: Struct<'_> = btf
        .type_by_name("gala_ctl")
        .ok_or_else(|| layout("not in the object's BTF"))?;
    let mut value = vec![0u8; ctl.size()];
    for member in ctl.iter() {
        let name = member.name.and_then(|n| n.to_str()).unwrap_or("");
        let field = match name {
            "mode" => mode,
            "self_tgid" => self_tgid,
            _ => return Err(layout(&format!("unknown field {name:?}"))),
        };
        let MemberAttr::Normal { offset } = member.attr else {
            return Err(layout(&format!("{name} is a bit field")));
        };
        let at = offset as usize / 8;
        value
            .get_mut(at..at + 4)
            .ok_or_else(|| layout(&format!("{name} is outside the struct")))?
            .copy_from_slice(&field.to_ne_bytes());
    }
    Ok(value)
}

/// The map named `name` in `object`.
pub fn find_map<'o>(object: &'o Object, name: &'static str) -> Result<libbpf_rs::Map<'o>, Error> {
    object
        .maps()
        .find(|m| m.name() == name)
        .ok_or(Error::MissingMap(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_in_both_modes_never_holds_tgid_0_nor_the_probe() {
        let me = std::process::id();
        let white = Scope::new(SnooperMode::Whitelist, [5, me].into());
        assert!(white.contains(5) && !white.contains(6) && !white.contains(me));
        assert_eq!(white.members(|| unreachable!()), vec![5]);
        let black = Scope::new(SnooperMode::Blacklist, [5].into());
        assert!(!black.contains(5) && black.contains(6));
        assert!(!black.contains(0) && !black.contains(me));
        assert_eq!(black.members(|| vec![0, 5, 6, me]), vec![6]);
    }
}
