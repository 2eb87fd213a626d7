//! What a probe has been configured to do over REST: sub-items, snoopers, labels and params.

use std::collections::BTreeMap;

use crate::probes::catalogue::ProbeKind;
use crate::probes::params::{CustomParamValues, Params};

/// Whether the operator wants the probe running (the `state` of a PUT and of GET).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DesiredState {
    /// `running`
    Running,
    /// `stopped`
    Stopped,
}

impl DesiredState {
    /// The REST spelling.
    pub fn name(self) -> &'static str {
        match self {
            DesiredState::Running => "running",
            DesiredState::Stopped => "stopped",
        }
    }
}

/// How the snooper entries are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnooperMode {
    /// Observe only the objects the entries resolve to (`snoopers`).
    #[default]
    Whitelist,
    /// Observe everything except those objects (`blacklist`).
    Blacklist,
}

/// A `proc_name` entry: processes whose comm matches and whose cmdline contains a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcNameEntry {
    /// Unanchored regular expression against `/proc/<pid>/comm`, at most 15 bytes; it
    /// compiled with the `regex` crate when it was accepted.
    pub comm: String,
    /// Plain substring of the command line (NULs read as spaces); empty matches all.
    pub cmdline: String,
    /// One extra metric label for the matched processes.
    pub label: Option<(String, String)>,
}

/// The snooper entries of a probe (whitelist or blacklist, see [`SnooperMode`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SnooperEntries {
    /// Process ids (existence not checked).
    pub proc_id: Vec<u32>,
    /// Processes by comm pattern and cmdline.
    pub proc_name: Vec<ProcNameEntry>,
    /// Pod ids (32 hex digits, or the 8-4-4-4-12 form).
    pub pod_id: Vec<String>,
    /// Container ids, abbreviated to 12 hex digits.
    pub container_id: Vec<String>,
    /// Container name filters, at most 63 bytes; an empty one matches every container.
    pub container_name: Vec<String>,
}

impl SnooperEntries {
    /// Number of entries of all kinds.
    pub fn len(&self) -> usize {
        self.proc_id.len()
            + self.proc_name.len()
            + self.pod_id.len()
            + self.container_id.len()
            + self.container_name.len()
    }

    /// Whether there is no entry at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The configuration of one probe as the REST API holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSettings {
    /// Enabled `cmd.probe` sub-items, catalogue spelling, in catalogue order.
    pub subitems: Vec<String>,
    /// Whether `snoopers` lists the only objects to observe or the ones to skip.
    pub snooper_mode: SnooperMode,
    /// The snooper entries.
    pub snoopers: SnooperEntries,
    /// Labels added to every metric of the probe (≤10).
    pub custom_labels: BTreeMap<String, String>,
    /// Pod label names, each added as a label with the pod's value (≤10).
    pub pod_labels: Vec<String>,
    /// The parameter record.
    pub params: Params,
    /// `custom_param` values of a custom probe (label → value).
    pub custom_params: CustomParamValues,
}

impl ProbeSettings {
    /// The configuration of a probe nobody has configured yet: no sub-item, whitelist mode
    /// without entries, default params.
    pub fn new(_kind: &ProbeKind) -> Self {
        ProbeSettings {
            subitems: Vec::new(),
            snooper_mode: SnooperMode::Whitelist,
            snoopers: SnooperEntries::default(),
            custom_labels: BTreeMap::new(),
            pod_labels: Vec::new(),
            params: Params::default(),
            custom_params: CustomParamValues::new(),
        }
    }

    /// The sub-item mask sent to the probe.
    pub fn subitem_mask(&self, kind: &ProbeKind) -> u32 {
        kind.subitem_mask(&self.subitems)
    }
}
