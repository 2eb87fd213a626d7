//! The main loop every eBPF probe shares, so a probe only says how to load its object,
//! drain its ring buffers and print its tables:
//!
//! 1. detect the kernel, switch BPF statistics on, connect to the daemon;
//! 2. on the first configuration and whenever the enabled sub-items change: plan the
//!    programs ([`Plan`]), load them through [`load`] (which degrades per sub-item), log
//!    every note and every fallback hook;
//! 3. on every configuration: write the snooper scope into the BPF maps ([`SnoopMap`]),
//!    tell the probe the new pids and params;
//! 4. every [`BpfProbe::tick`]: drain the ring buffers; every `report_period`: report the
//!    tables and the programs' cost (`ebpf_prog`, statistics sampled, see [`crate::cost`]);
//! 5. on stop: a last report, then exit.
//!
//! `<binary> --plan` ([`run_plan`]) instead plans every sub-item, loads and attaches them
//! through the same [`BpfProbe::load`], prints the [`crate::report`] on stdout (the log on
//! stderr) and exits; no daemon is involved.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gala_probe_sdk::{Config, EmitError, Level, Probe, Wake};
use libbpf_rs::Object;

use crate::cost::{CostReport, StatsMode, COST_META};
use crate::kernel::Kernel;
use crate::plan::{load, load_attributed, Plan, Subitem};
use crate::snoop::SnoopMap;
use crate::Error;

/// What a probe provides to [`run`].
pub trait BpfProbe {
    /// The probe's name as in the catalogue (`tcp`, `socket`, ...), for logs and `ebpf_prog`.
    const NAME: &'static str;

    /// The probe's sub-items and the hooks each needs (name `""`: the core, always loaded).
    fn subitems(&self) -> &'static [Subitem];

    /// Loads the BPF object for `plan` (with [`crate::Skeleton::load`]: open, plan, ring
    /// sizes from `config`, load, attach) and keeps it. Any previous object is already
    /// unloaded.
    fn load(&mut self, plan: &Plan, config: &Config) -> Result<(), Error>;

    /// Drops the loaded object (and its ring buffer readers first).
    fn unload(&mut self);

    /// The loaded object, if any.
    fn object(&self) -> Option<&Object>;

    /// A new configuration arrived (params, snoopers), after the maps were synced;
    /// `pids` are the tgids now in the snooper map.
    fn configure(&mut self, config: &Config, pids: &BTreeSet<u32>) {
        let _ = (config, pids);
    }

    /// Consumes what the BPF side has produced since the last call.
    fn poll(&mut self);

    /// Prints the probe's records for the period that ends now.
    fn report(&mut self, probe: &mut Probe, config: &Config, plan: &Plan) -> Result<(), EmitError>;

    /// How often [`BpfProbe::poll`] runs.
    fn tick(&self) -> Duration {
        Duration::from_millis(200)
    }
}

/// The argument that makes a probe binary print its [`run_plan`] report instead of running.
pub const PLAN_ARG: &str = "--plan";

/// Whether the log goes to stderr ([`run_plan`]: stdout carries the report).
static LOG_TO_STDERR: AtomicBool = AtomicBool::new(false);

/// The whole `main` of a probe binary: [`run`] (or [`run_plan`] when the first argument is
/// [`PLAN_ARG`]), and on error the error in the probe's log and exit status 1.
pub fn run_main<P: BpfProbe>(p: P, metas: &[(&str, &str)]) -> std::process::ExitCode {
    let result = if std::env::args().nth(1).as_deref() == Some(PLAN_ARG) {
        run_plan(p)
    } else {
        run(p, metas)
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            log(Level::Error, P::NAME, &e.to_string());
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs `p` under the daemon (or offline, see the SDK) until it is told to stop.
/// `metas` are the probe's meta files (`ebpf_prog.meta` is added).
pub fn run<P: BpfProbe>(
    mut p: P,
    metas: &[(&str, &str)],
) -> Result<(), Box<dyn std::error::Error>> {
    crate::raise_memlock();
    crate::print::route_to_log(P::NAME);
    let kernel = Kernel::detect();
    let mut cost = CostReport::new(StatsMode::from_env());
    let mut builder = Probe::builder().meta_str(COST_META.0, COST_META.1);
    for (name, text) in metas {
        builder = builder.meta_str(*name, *text);
    }
    let mut probe = builder.connect()?;
    log(Level::Info, P::NAME, &kernel.summary());
    if !cost.enabled() {
        log(
            Level::Warn,
            P::NAME,
            "bpf_enable_stats refused: ebpf_prog run times stay 0",
        );
    }

    let mut loaded: Option<(Vec<String>, Plan)> = None;
    let mut snoop = SnoopMap::new();
    let mut seq = None;
    let mut next_report = Instant::now();
    loop {
        let config = probe.config();
        if seq != Some(config.seq()) {
            seq = Some(config.seq());
            let wanted: Vec<String> = config.subitems().to_vec();
            if loaded.as_ref().is_none_or(|(items, _)| *items != wanted) {
                p.unload();
                let plan = Plan::new(&kernel, p.subitems(), |s| config.has_subitem(s));
                let subitems = p.subitems();
                let (_, plan) =
                    load(subitems, plan, |plan| p.load(plan, &config)).map_err(|e| {
                        let text = format!("loading the BPF programs failed: {e}");
                        probe.status(Level::Error, &text);
                        text
                    })?;
                for note in &plan.notes {
                    log(Level::Warn, P::NAME, note);
                    probe.status(Level::Warn, note);
                }
                for note in plan.fallback_notes() {
                    log(Level::Info, P::NAME, &note);
                }
                let on: Vec<&str> = plan.active_subitems().collect();
                log(
                    Level::Info,
                    P::NAME,
                    &format!("loaded; active sub-items: {}", on.join(" ")),
                );
                loaded = Some((wanted, plan));
                snoop = SnoopMap::new();
            }
            if let Some(object) = p.object() {
                snoop.sync(object, &config)?;
            }
            p.configure(&config, snoop.pids());
        }
        let period = Duration::from_secs(u64::from(config.params().report_period.max(1)));
        let now = Instant::now();
        if next_report <= now {
            next_report = now + period;
        }
        let wake = probe.wait(p.tick().min(next_report - now));
        cost.tick(Instant::now());
        p.poll();
        let stop = matches!(wake, Wake::Stop);
        if Instant::now() >= next_report || stop {
            if let Some((_, plan)) = &loaded {
                if let Err(e) = p.report(&mut probe, &config, plan) {
                    log(Level::Error, P::NAME, &format!("a record was refused: {e}"));
                }
                if let Some(object) = p.object() {
                    cost.report(&mut probe, P::NAME, object, plan)?;
                }
            }
            cost.start_window(Instant::now());
            next_report += period;
        }
        if stop {
            probe.flush()?;
            p.unload();
            return Ok(());
        }
    }
}

/// The `--plan` report: detects the kernel, plans every sub-item, loads and attaches them as
/// [`run`] does (degrading per sub-item), prints one [`crate::report`] line per (sub-item,
/// need) on stdout and unloads. The log (the kernel summary, notes, libbpf's messages) goes
/// to stderr. The configuration is the offline one (`GALA_GOPHER_CONFIG`, see the SDK)
/// with every sub-item enabled. Fails only when the report cannot be written or the
/// offline configuration is invalid: a refused program is a `failed` line.
pub fn run_plan<P: BpfProbe>(mut p: P) -> Result<(), Box<dyn std::error::Error>> {
    LOG_TO_STDERR.store(true, Ordering::Relaxed);
    crate::raise_memlock();
    crate::print::route_to_log(P::NAME);
    let kernel = Kernel::detect();
    log(Level::Info, P::NAME, &kernel.summary());
    let subitems = p.subitems();
    let mut raw = Config::offline(P::NAME)?.raw().clone();
    raw.subitems = subitems
        .iter()
        .filter(|s| !s.name.is_empty())
        .map(|s| s.name.to_owned())
        .collect();
    let config = Config::from_proto(raw);
    let plan = Plan::new(&kernel, subitems, |_| true);
    let (result, plan) = load_attributed(subitems, plan, |plan| p.load(plan, &config));
    for note in &plan.notes {
        log(Level::Warn, P::NAME, note);
    }
    for note in plan.fallback_notes() {
        log(Level::Info, P::NAME, &note);
    }
    if let Err(e) = &result {
        log(
            Level::Error,
            P::NAME,
            &format!("loading the BPF programs failed: {e}"),
        );
    }
    let mut out = std::io::stdout().lock();
    for line in crate::report::lines(P::NAME, subitems, &plan) {
        writeln!(out, "{}", line.to_json())?;
    }
    out.flush()?;
    p.unload();
    Ok(())
}

/// Attaches the loaded programs of `object` named in `names` (those a probe built with
/// auto-attach off, to attach only when needed); a program that fails is logged and
/// skipped. Dropping the links detaches them.
pub fn attach_named(object: &Object, names: &[&str], probe: &str) -> Vec<libbpf_rs::Link> {
    let mut links = Vec::new();
    for prog in object.progs_mut() {
        let Some(name) = prog.name().to_str() else {
            continue;
        };
        if !names.contains(&name) {
            continue;
        }
        match prog.attach() {
            Ok(link) => links.push(link),
            Err(e) => log(Level::Warn, probe, &format!("attaching {name}: {e}")),
        }
    }
    links
}

/// One debug line on stdout (stderr under `--plan`): without a level tag, which the daemon
/// logs at debug level.
pub fn debug(probe: &str, text: &str) {
    emit(&format!("{probe}: {text}"));
}

/// One log line on stdout (stderr under `--plan`), which the daemon copies to its log.
pub fn log(level: Level, probe: &str, text: &str) {
    let tag = match level {
        Level::Info => "INFO",
        Level::Warn => "WARN",
        Level::Error => "ERROR",
    };
    emit(&format!("[{tag}] {probe}: {text}"));
}

fn emit(line: &str) {
    if LOG_TO_STDERR.load(Ordering::Relaxed) {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}
