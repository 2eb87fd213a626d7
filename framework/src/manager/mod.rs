//! The probe manager: the one owner of every probe's configuration and supervisor. REST,
//! gopher-ctl and `probes.init` all go through [`ProbeManager::put`] and
//! [`ProbeManager::get`]; the manager turns accepted configurations into process starts and
//! stops and into control messages for the probes, and re-resolves snoopers periodically.
//!
//! Each probe has its own lock, so stopping one probe (which may take the grace period) never
//! delays requests for another.

mod convert;
mod link;
mod snoop;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use tokio::sync::Mutex as AsyncMutex;

use link::ConfigLink;
use snoop::Scan;

use crate::api::{self, ApiError, DesiredState, ProbeSettings, ProbeView, PutContext, RuntimeView};
use crate::containers::ContainerLookup;
use crate::labels::{Labels, ProbeLabels};
use crate::legacy_ipc::LegacyIpc;
use crate::probes::catalogue::{Catalogue, ProbeKind};
use crate::snooper::{Resolver, ScanRoots};
use crate::supervisor::{LaunchSpec, Supervisor, SupervisorContext};

/// What the manager needs besides the catalogue.
pub struct ManagerContext {
    /// Shared by every supervisor.
    pub supervisor: Arc<SupervisorContext>,
    /// The `/proc` and `/sys` snoopers are resolved against (under `$GOPHER_HOST_PATH`).
    pub roots: ScanRoots,
    /// The legacy System V queue, when a custom probe uses it.
    pub legacy_ipc: Option<Arc<LegacyIpc>>,
    /// Names containers for `container_name` snoopers (the runtimes' API sockets); `None`:
    /// a listing of the installed runtime CLIs.
    pub containers: Option<Arc<dyn ContainerLookup>>,
    /// The labels series get, told each probe's chosen labels.
    pub labels: Option<Arc<Labels>>,
}

/// One probe known to the manager (created by its first PUT).
struct ProbeEntry {
    kind: ProbeKind,
    /// `None` until a PUT has been accepted.
    settings: Option<ProbeSettings>,
    /// Whether the operator wants it running.
    wanted: bool,
    supervisor: Supervisor,
    link: Arc<ConfigLink>,
    /// Resolves the snoopers and remembers the objects of the last resolution.
    resolver: Resolver,
    /// The least lifetime of the probe's series, read by its ingress: twice its report period.
    series_hold_ms: Arc<AtomicU64>,
}

/// Where [`ProbeManager::put`] writes the whole configuration after each accepted PUT.
struct Persist {
    /// `probes.init`.
    path: PathBuf,
    /// The lines kept verbatim at its top (see [`ProbeManager::save`]).
    kept: Vec<String>,
}

/// Owns the probes; see the module comment.
pub struct ProbeManager {
    catalogue: Catalogue,
    ctx: ManagerContext,
    probes: Mutex<BTreeMap<String, Arc<AsyncMutex<ProbeEntry>>>>,
    /// Set once `probes.init` has been applied at start ([`ProbeManager::persist_to`]).
    persist: OnceLock<Persist>,
    /// One [`ProbeManager::save`] at a time: they share the temporary file.
    saving: AsyncMutex<()>,
}

impl ProbeManager {
    /// A manager over `catalogue` with no probe configured.
    pub fn new(catalogue: Catalogue, ctx: ManagerContext) -> Arc<Self> {
        Arc::new(ProbeManager {
            catalogue,
            ctx,
            probes: Mutex::new(BTreeMap::new()),
            persist: OnceLock::new(),
            saving: AsyncMutex::new(()),
        })
    }

    /// From now on, writes the configuration of every probe to `path` (atomically, after
    /// the `kept` lines) after each accepted PUT, so that a daemon killed without a clean
    /// stop comes back with what was running. Has no effect when called again.
    pub fn persist_to(&self, path: PathBuf, kept: Vec<String>) {
        let _ = self.persist.set(Persist { path, kept });
    }

    /// The probe catalogue.
    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// Applies a PUT body (raw JSON, without the `json=` prefix) to probe `name`; once
    /// accepted, saves the configuration where [`ProbeManager::persist_to`] said (a failed
    /// save is logged: the PUT itself has taken effect).
    pub async fn put(&self, name: &str, json: &[u8]) -> Result<(), ApiError> {
        self.apply(name, json).await?;
        if let Some(p) = self.persist.get() {
            if let Err(e) = self.save(&p.path, &p.kept).await {
                tracing::error!(
                    "saving the probe configuration to {}: {e}",
                    p.path.display()
                );
            }
        }
        Ok(())
    }

    /// [`ProbeManager::put`] without the save.
    async fn apply(&self, name: &str, json: &[u8]) -> Result<(), ApiError> {
        let kind = self
            .catalogue
            .lookup(name)
            .ok_or_else(|| ApiError::invalid_probe_name(name))?
            .clone();
        let entry = self.entry(&kind);
        let mut entry = entry.lock().await;
        let active = entry.supervisor.state().status.is_active();
        let current = entry
            .settings
            .clone()
            .unwrap_or_else(|| ProbeSettings::new(&kind));
        let outcome = api::apply_put(&kind, &current, json, PutContext { running: active })?;
        let start = outcome.state == Some(DesiredState::Running) && !active;
        let stop = outcome.state == Some(DesiredState::Stopped);
        if start && !kind.bin.is_file() {
            tracing::warn!(
                probe = kind.name,
                "cannot start: {} is not installed",
                kind.bin.display()
            );
            return Err(ApiError::not_installed(&kind.bin));
        }
        let snoopers_changed = outcome.snoopers_changed;
        let params_changed = outcome.params_changed;
        entry.series_hold_ms.store(
            series_hold_ms(outcome.settings.params.report_period),
            Ordering::Relaxed,
        );
        if let Some(labels) = &self.ctx.labels {
            labels.set_probe(&kind.name, ProbeLabels::of(&outcome.settings));
        }
        entry.settings = Some(outcome.settings);
        if stop {
            entry.wanted = false;
            entry.supervisor.stop().await;
            return Ok(());
        }
        if start {
            entry.wanted = true;
        }
        if entry.wanted && (start || snoopers_changed || params_changed) {
            let scan = Scan::Fresh(self.ctx.roots.clone());
            self.publish(&mut entry, scan, start, snoopers_changed, params_changed)
                .await;
        }
        if start {
            entry.supervisor.start(launch_spec(&entry));
        }
        Ok(())
    }

    /// The GET answer for probe `name`: its JSON, or 404 for an unknown name.
    pub async fn get(&self, name: &str) -> Result<String, ApiError> {
        let kind = self
            .catalogue
            .lookup(name)
            .ok_or_else(ApiError::url_not_found)?;
        let Some(entry) = self.probes.lock().get(&kind.name).cloned() else {
            return Ok(api::render_get(
                kind,
                None,
                &ProbeView {
                    state: DesiredState::Stopped,
                    runtime: None,
                },
            ));
        };
        // Waits at most for a stop in progress (the grace period).
        let entry = entry.lock().await;
        let st = entry.supervisor.state();
        let view = ProbeView {
            state: if entry.wanted && st.status.is_active() {
                DesiredState::Running
            } else {
                DesiredState::Stopped
            },
            runtime: Some(RuntimeView {
                status: st.status.as_str(),
                pid: st.pid,
                restarts: st.restarts,
                last_exit: st.last_exit,
            }),
        };
        Ok(api::render_get(&entry.kind, entry.settings.as_ref(), &view))
    }

    /// Removes the legacy System V queue, if there is one (at exit, after
    /// [`ProbeManager::stop_all`]).
    pub fn remove_legacy_queue(&self) {
        if let Some(l) = &self.ctx.legacy_ipc {
            l.remove();
        }
    }

    /// Stops every probe (in parallel) and waits for them.
    pub async fn stop_all(&self) {
        let entries: Vec<_> = self.probes.lock().values().cloned().collect();
        let stops = entries.into_iter().map(|e| {
            tokio::spawn(async move {
                e.lock().await.supervisor.stop().await;
            })
        });
        for s in stops.collect::<Vec<_>>() {
            let _ = s.await;
        }
    }

    /// Writes the configuration of every configured probe to `path` in `probes.init` form,
    /// `state` saying whether it was wanted running, after the `kept` lines (comments and
    /// lines that could not be applied at start, verbatim).
    pub async fn save(&self, path: &Path, kept: &[String]) -> std::io::Result<()> {
        let _one = self.saving.lock().await;
        let entries: Vec<_> = self.probes.lock().values().cloned().collect();
        let mut bodies = Vec::new();
        for e in entries {
            let e = e.lock().await;
            if let Some(settings) = &e.settings {
                let state = if e.wanted {
                    DesiredState::Running
                } else {
                    DesiredState::Stopped
                };
                bodies.push((
                    e.kind.name.clone(),
                    api::persist_body(&e.kind, settings, state),
                ));
            }
        }
        let text =
            crate::probes::init_file::render(kept, bodies.iter().map(|(n, b)| (n.as_str(), b)));
        crate::probes::init_file::save(path, &text)
    }

    /// Re-resolves the snoopers of every wanted probe and tells those whose objects changed.
    pub async fn refresh_snoopers(&self) {
        let entries: Vec<_> = self.probes.lock().values().cloned().collect();
        // One /proc scan serves every probe of this tick, made only if one needs it.
        let mut snapshot = None;
        for e in entries {
            let mut e = e.lock().await;
            if e.wanted && e.settings.as_ref().is_some_and(snoop::is_dynamic) {
                if snapshot.is_none() {
                    snapshot = Some(snoop::shared_scan(self.ctx.roots.clone()).await);
                }
                let scan = match snapshot.clone().flatten() {
                    Some(s) => Scan::Shared(s),
                    None => Scan::Fresh(self.ctx.roots.clone()),
                };
                self.publish(&mut e, scan, false, false, false).await;
            }
        }
    }

    /// The entry of `kind`, created (stopped, unconfigured) on first use.
    fn entry(&self, kind: &ProbeKind) -> Arc<AsyncMutex<ProbeEntry>> {
        let mut probes = self.probes.lock();
        probes
            .entry(kind.name.clone())
            .or_insert_with(|| {
                let legacy = self.ctx.legacy_ipc.as_ref().and_then(|l| l.endpoint(kind));
                let link = Arc::new(ConfigLink::new(&kind.name, kind.encoding, legacy));
                let on_spawn = {
                    let link = link.clone();
                    Arc::new(move |sock, pid| link.clone().attach(sock, pid))
                };
                Arc::new(AsyncMutex::new(ProbeEntry {
                    kind: kind.clone(),
                    settings: None,
                    wanted: false,
                    supervisor: Supervisor::new(&kind.name, self.ctx.supervisor.clone(), on_spawn),
                    link,
                    resolver: Resolver::new(),
                    series_hold_ms: Arc::default(),
                }))
            })
            .clone()
    }

    /// Resolves the probe's snoopers and hands the probe its configuration if anything it
    /// sees changed (`force_*`: report these as changed anyway).
    async fn publish(
        &self,
        entry: &mut ProbeEntry,
        scan: Scan,
        just_started: bool,
        snoopers_changed: bool,
        params_changed: bool,
    ) {
        let Some(settings) = entry.settings.clone() else {
            return;
        };
        let resolver = std::mem::take(&mut entry.resolver);
        let (resolver, objects_changed) = snoop::refresh(
            scan,
            &entry.kind,
            &settings,
            resolver,
            self.ctx.containers.clone(),
        )
        .await;
        entry.resolver = resolver;
        if !(just_started || snoopers_changed || params_changed || objects_changed) {
            return;
        }
        let mut flags = 0;
        if just_started || snoopers_changed || objects_changed {
            flags |= gala_ipc_proto::SNOOPER_CHG;
        }
        if just_started || params_changed {
            flags |= gala_ipc_proto::PARAMS_CHG;
        }
        let config = convert::probe_config(&entry.kind, &settings, entry.resolver.objects());
        entry.link.publish(config, flags);
    }
}

/// What the supervisor of `entry` starts.
fn launch_spec(entry: &ProbeEntry) -> LaunchSpec {
    let kind = &entry.kind;
    LaunchSpec {
        name: kind.name.clone(),
        bin: kind.bin.clone(),
        encoding: kind.encoding,
        meta: kind
            .is_custom()
            .then(|| gala_meta::custom_meta_path(&kind.bin)),
        series_hold_ms: entry.series_hold_ms.clone(),
    }
}

/// The least lifetime of the series of a probe reporting every `report_period` seconds:
/// two periods, so that one late or lost report does not make them vanish.
fn series_hold_ms(report_period: u32) -> u64 {
    2 * 1000 * u64::from(report_period)
}
