//! A probe's snooper entries resolved to processes and containers (see [`crate::snooper`]),
//! off the async executor because it scans `/proc`.

use std::sync::Arc;

use crate::api::ProbeSettings;
use crate::containers::ContainerLookup;
use crate::probes::catalogue::ProbeKind;
use crate::snooper::{
    ProcNameEntry, ProcSnapshot, ResolveOptions, Resolver, ScanRoots, SnooperEntries, SnooperError,
    SnooperQuery,
};

/// The snooper entries of `settings` in the resolver's terms.
fn entries(settings: &ProbeSettings) -> SnooperEntries {
    let e = &settings.snoopers;
    SnooperEntries {
        proc_ids: e.proc_id.clone(),
        proc_names: e
            .proc_name
            .iter()
            .map(|p| ProcNameEntry {
                comm: p.comm.clone(),
                cmdline: p.cmdline.clone(),
            })
            .collect(),
        container_ids: e.container_id.clone(),
        pod_ids: e.pod_id.clone(),
        container_names: e.container_name.clone(),
    }
}

/// Whether the probe's objects can change without a PUT (processes come and go).
pub fn is_dynamic(settings: &ProbeSettings) -> bool {
    let e = &settings.snoopers;
    !(e.proc_id.is_empty()
        && e.proc_name.is_empty()
        && e.container_id.is_empty()
        && e.pod_id.is_empty()
        && e.container_name.is_empty())
}

/// Where a resolution finds the processes.
pub enum Scan {
    /// A scan of `/proc` made for it.
    Fresh(ScanRoots),
    /// A scan shared by every probe resolved in the same tick.
    Shared(Arc<ProcSnapshot>),
}

/// One scan of `roots` for all the probes of a refresh tick (blocking work off the executor).
pub async fn shared_scan(roots: ScanRoots) -> Option<Arc<ProcSnapshot>> {
    match tokio::task::spawn_blocking(move || ProcSnapshot::scan(&roots)).await {
        Ok(Ok(snapshot)) => Some(Arc::new(snapshot)),
        Ok(Err(e)) => {
            tracing::warn!("scanning processes failed: {e}");
            None
        }
        Err(_) => None,
    }
}

/// Resolves the snoopers of `settings` with `resolver` (which remembers the last result);
/// returns the resolver and whether the objects changed.
pub async fn refresh(
    scan: Scan,
    kind: &ProbeKind,
    settings: &ProbeSettings,
    mut resolver: Resolver,
    names: Option<Arc<dyn ContainerLookup>>,
) -> (Resolver, bool) {
    let name = kind.name.clone();
    let kinds = kind.snoop;
    let options = ResolveOptions::default();
    if !is_dynamic(settings) || !(kinds.process || kinds.container) {
        // Nothing to look for: no scan (PUTs of such probes stay cheap).
        let changed = !resolver.objects().is_empty();
        return (Resolver::new(), changed);
    }
    let query = match SnooperQuery::compile(&entries(settings)) {
        Ok(q) => q,
        Err(e) => {
            // The REST layer validated the entries, so this is a bug rather than bad input.
            tracing::error!(probe = name, "snoopers cannot be resolved: {e}");
            SnooperQuery::default()
        }
    };
    let result = tokio::task::spawn_blocking(move || {
        let outcome = (|| {
            let snapshot = match scan {
                Scan::Shared(snapshot) => snapshot,
                Scan::Fresh(roots) => Arc::new(ProcSnapshot::scan(&roots)?),
            };
            Ok::<_, SnooperError>(resolver.update_naming_containers(
                &snapshot,
                &query,
                kinds,
                &options,
                names.as_deref(),
            ))
        })();
        (resolver, outcome)
    })
    .await;
    let Ok((resolver, outcome)) = result else {
        tracing::error!(probe = name, "snooper resolution panicked");
        return (Resolver::new(), true);
    };
    match outcome {
        Ok((report, failures)) => {
            for f in failures {
                tracing::warn!(probe = name, "container runtime: {f}");
            }
            if report.cut > 0 {
                tracing::warn!(
                    probe = name,
                    "{} snooper objects beyond the limit were left out",
                    report.cut
                );
            }
            (resolver, report.changed)
        }
        Err(e) => {
            tracing::warn!(probe = name, "scanning processes failed: {e}");
            (resolver, false)
        }
    }
}
