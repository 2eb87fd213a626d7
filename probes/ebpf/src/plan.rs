//! Which BPF programs a probe loads: per sub-item, per thing it needs ("tx bytes", "state
//! changes"), the first hook variant this kernel supports. Every other program of the
//! object stays autoload-off. A need without a usable variant degrades its sub-item with one
//! log line; the rest of the probe runs. [`load`] also survives a program the verifier
//! refuses: it finds the sub-item that holds it and loads without that sub-item.

use std::collections::BTreeSet;

use libbpf_rs::OpenObject;

use crate::kernel::Kernel;
use crate::Error;

/// Where a program attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `tp_btf/<tracepoint>`: typed raw tracepoint.
    TpBtf(&'static str),
    /// `raw_tp/<tracepoint>`.
    RawTp(&'static str),
    /// `tracepoint/<category>/<name>`: a classic tracefs tracepoint.
    Tracepoint(&'static str, &'static str),
    /// `fentry/<function>`.
    Fentry(&'static str),
    /// `fexit/<function>`.
    Fexit(&'static str),
    /// `kprobe/<function>` or `kretprobe/<function>`.
    Kprobe(&'static str),
    /// A uprobe or USDT probe attached by the probe at run time (always loadable).
    Uprobe,
    /// `iter/<target>`: a BPF iterator user space runs by reading it.
    Iter(&'static str),
    /// `cgroup/<hook>`: attached by the probe to the cgroup v2 root (needs a cgroup v2
    /// mount).
    Cgroup(&'static str),
}

impl Hook {
    /// Whether this kernel can run a program on this hook.
    pub fn available(&self, kernel: &Kernel) -> bool {
        self.unavailable(kernel).is_none()
    }

    /// Why this kernel cannot run a program on this hook (`None`: it can), for the plan's
    /// notes and the `--plan` report.
    pub fn unavailable(&self, kernel: &Kernel) -> Option<String> {
        let no_btf = || "no kernel BTF".to_owned();
        match *self {
            Hook::TpBtf(_) if !kernel.has_btf() => Some(no_btf()),
            Hook::TpBtf(tp) | Hook::RawTp(tp) => {
                (!kernel.has_tracepoint(tp)).then(|| format!("no tracepoint {tp}"))
            }
            Hook::Tracepoint(category, name) => (!kernel.has_trace_event(category, name))
                .then(|| format!("no tracefs event {category}/{name}")),
            Hook::Fentry(_) | Hook::Fexit(_) if !kernel.fentry() => {
                Some("fentry/fexit refused".to_owned())
            }
            Hook::Fentry(f) | Hook::Fexit(f) => {
                (!kernel.has_function(f)).then(|| format!("no function {f}"))
            }
            Hook::Kprobe(_) if !kernel.kprobes() => Some("no kprobes".to_owned()),
            Hook::Kprobe(f) => (!kernel.has_kprobe_function(f)).then(|| format!("no function {f}")),
            Hook::Uprobe => None,
            Hook::Iter(_) if !kernel.has_btf() => Some(no_btf()),
            Hook::Iter(target) => (!kernel.has_function(&format!("bpf_iter_{target}")))
                .then(|| format!("no iterator {target}")),
            Hook::Cgroup(_) => kernel
                .cgroup2()
                .is_none()
                .then(|| "no cgroup v2 mount".to_owned()),
        }
    }
}

impl Hook {
    /// Whether a program in ELF section `section` attaches here: the section libbpf reads
    /// the program type and the attach target from must name this hook.
    pub fn matches_section(&self, section: &str) -> bool {
        let target = |prefixes: &[&str], want: &str| {
            prefixes.iter().any(|p| {
                section
                    .strip_prefix(p)
                    .and_then(|rest| rest.strip_prefix('/'))
                    .is_some_and(|t| t == want)
            })
        };
        match *self {
            Hook::TpBtf(t) => target(&["tp_btf"], t),
            Hook::RawTp(t) => target(&["raw_tp", "raw_tracepoint"], t),
            Hook::Tracepoint(c, t) => target(&["tracepoint", "tp"], &format!("{c}/{t}")),
            Hook::Fentry(f) => target(&["fentry"], f),
            Hook::Fexit(f) => target(&["fexit"], f),
            Hook::Kprobe(f) => target(&["kprobe", "kretprobe"], f),
            Hook::Uprobe => ["uprobe", "uretprobe", "usdt"]
                .iter()
                .any(|p| section == *p || section.starts_with(&format!("{p}/"))),
            Hook::Iter(t) => target(&["iter"], t),
            Hook::Cgroup(t) => target(&["cgroup"], t),
        }
    }
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hook::TpBtf(t) => write!(f, "tp_btf/{t}"),
            Hook::RawTp(t) => write!(f, "raw_tp/{t}"),
            Hook::Tracepoint(c, t) => write!(f, "tracepoint/{c}/{t}"),
            Hook::Fentry(t) => write!(f, "fentry/{t}"),
            Hook::Fexit(t) => write!(f, "fexit/{t}"),
            Hook::Kprobe(t) => write!(f, "kprobe/{t}"),
            Hook::Uprobe => f.write_str("uprobe"),
            Hook::Iter(t) => write!(f, "iter/{t}"),
            Hook::Cgroup(t) => write!(f, "cgroup/{t}"),
        }
    }
}

/// One BPF program: its function name in the `.bpf.c` file, its hook, and the kernel
/// features it uses beyond the hook itself.
#[derive(Debug, Clone, Copy)]
pub struct Prog {
    /// Function name in the BPF object.
    pub name: &'static str,
    /// Where it attaches.
    pub hook: Hook,
    /// Enumerators of the kernel's BPF UAPI enums (`BPF_FUNC_*` helpers, `BPF_MAP_TYPE_*`
    /// map types) or kfuncs (`bpf_rdonly_cast`) the program needs: the kernel's BTF must
    /// know each (see [`Kernel::has_enumerator`], [`Kernel::has_function`]; a kfunc only in
    /// the kernel's own BTF, which libbpf resolves it against), or the variant holding the
    /// program is not chosen.
    /// A `BPF_MAP_TYPE_*` here also says the program uses the object's maps of that type:
    /// when no chosen program requires the type, those maps are not created
    /// ([`Plan::apply`]), so every program that uses such a map must declare it.
    pub requires: &'static [&'static str],
    /// A `kretprobe` rather than a `kprobe` (the same [`Hook::Kprobe`] for availability,
    /// another ELF section).
    pub ret: bool,
}

impl Prog {
    /// A program on typed raw tracepoint `tp_btf/<tracepoint>`.
    pub const fn tp_btf(name: &'static str, tracepoint: &'static str) -> Prog {
        Prog {
            name,
            hook: Hook::TpBtf(tracepoint),
            requires: &[],
            ret: false,
        }
    }

    /// A program on raw tracepoint `raw_tp/<tracepoint>`.
    pub const fn raw_tp(name: &'static str, tracepoint: &'static str) -> Prog {
        Prog {
            name,
            hook: Hook::RawTp(tracepoint),
            requires: &[],
            ret: false,
        }
    }

    /// A program on classic tracepoint `tracepoint/<category>/<event>`.
    pub const fn tracepoint(
        name: &'static str,
        category: &'static str,
        event: &'static str,
    ) -> Prog {
        Prog {
            name,
            hook: Hook::Tracepoint(category, event),
            requires: &[],
            ret: false,
        }
    }

    /// A uprobe, uretprobe or USDT program the probe attaches itself.
    pub const fn uprobe(name: &'static str) -> Prog {
        Prog {
            name,
            hook: Hook::Uprobe,
            requires: &[],
            ret: false,
        }
    }

    /// A program on `fentry/<function>`.
    pub const fn fentry(name: &'static str, function: &'static str) -> Prog {
        Prog {
            name,
            hook: Hook::Fentry(function),
            requires: &[],
            ret: false,
        }
    }

    /// A program on `fexit/<function>`.
    pub const fn fexit(name: &'static str, function: &'static str) -> Prog {
        Prog {
            name,
            hook: Hook::Fexit(function),
            requires: &[],
            ret: false,
        }
    }

    /// A BPF iterator program on `iter/<target>`.
    pub const fn iter(name: &'static str, target: &'static str) -> Prog {
        Prog {
            name,
            hook: Hook::Iter(target),
            requires: &[],
            ret: false,
        }
    }

    /// A program on `kprobe/<function>` (entry).
    pub const fn kprobe(name: &'static str, function: &'static str) -> Prog {
        Prog {
            name,
            hook: Hook::Kprobe(function),
            requires: &[],
            ret: false,
        }
    }

    /// A program on `kretprobe/<function>` (return); the same hook as [`Prog::kprobe`]
    /// for availability.
    pub const fn kretprobe(name: &'static str, function: &'static str) -> Prog {
        Prog {
            ret: true,
            ..Self::kprobe(name, function)
        }
    }

    /// The same program, needing kernel `features` (see [`Prog::requires`]):
    /// `Prog::tp_btf("x", "sys_enter").requiring(&["BPF_MAP_TYPE_TASK_STORAGE"])`.
    pub const fn requiring(self, features: &'static [&'static str]) -> Prog {
        Prog {
            requires: features,
            ..self
        }
    }

    /// The ELF section the program is in: its hook, `kretprobe/<function>` for a return
    /// probe.
    pub fn section(&self) -> String {
        match self.hook {
            Hook::Kprobe(f) if self.ret => format!("kretprobe/{f}"),
            hook => hook.to_string(),
        }
    }

    /// Whether the program belongs in ELF section `section`: its hook's, and for a kprobe
    /// the right one of `kprobe/` and `kretprobe/` (else it would run at the other end).
    pub fn matches_section(&self, section: &str) -> bool {
        self.hook.matches_section(section)
            && match self.hook {
                Hook::Kprobe(_) => section.starts_with("kretprobe") == self.ret,
                _ => true,
            }
    }

    /// Why this kernel cannot run the program (its hook, or a feature it requires is
    /// missing); `None`: it can.
    pub fn unavailable(&self, kernel: &Kernel) -> Option<String> {
        self.hook.unavailable(kernel).or_else(|| {
            self.requires
                .iter()
                .find(|f| {
                    let known =
                        kernel.has_enumerator(f) || (kernel.has_btf() && kernel.has_function(f));
                    !known
                })
                .map(|f| format!("no {f}"))
        })
    }

    /// A cgroup program on `cgroup/<hook>`.
    pub const fn cgroup(name: &'static str, hook: &'static str) -> Prog {
        Prog {
            name,
            hook: Hook::Cgroup(hook),
            requires: &[],
            ret: false,
        }
    }
}

/// Something a sub-item needs, with the alternatives that provide it, best first; each
/// alternative is the set of programs that together provide it.
#[derive(Debug, Clone, Copy)]
pub struct Need {
    /// What it is, for log lines (`"tx bytes"`).
    pub what: &'static str,
    /// The alternatives.
    pub variants: &'static [&'static [Prog]],
}

/// A sub-item and its needs. The name `""` is the probe's core, loaded whatever is enabled.
#[derive(Debug, Clone, Copy)]
pub struct Subitem {
    /// The sub-item's name as in the probe catalogue (`""` for the core).
    pub name: &'static str,
    /// Its needs.
    pub needs: &'static [Need],
}

/// How one need of one enabled sub-item is met: the variant chosen, why the variants
/// before it (all of them, when none was chosen) were passed over, and whether the kernel
/// then refused it. The `--plan` report prints one line per choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The sub-item (`""`: the core).
    pub subitem: &'static str,
    /// The need ([`Need::what`]).
    pub need: &'static str,
    /// Index of the chosen variant in [`Need::variants`]; `None`: no variant is usable here.
    pub variant: Option<usize>,
    /// The chosen variant's programs.
    pub progs: Vec<&'static str>,
    /// The ELF sections of the chosen variant's programs ([`Prog::section`]).
    pub sections: Vec<String>,
    /// One entry per variant passed over: its sections and why this kernel cannot run it
    /// (`fentry/tcp_sendmsg: fentry/fexit refused`).
    pub passed_over: Vec<String>,
    /// Why the chosen variant is not loaded after all: the kernel refused a program of it
    /// (the error and libbpf's line for that program), or another need of the sub-item.
    pub failed: Option<String>,
}

/// The programs to load and what was left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    progs: BTreeSet<&'static str>,
    hooks: Vec<(&'static str, Hook)>,
    needs: BTreeSet<(&'static str, &'static str)>,
    enabled: BTreeSet<&'static str>,
    active: BTreeSet<&'static str>,
    choices: Vec<Choice>,
    /// Why the core did not load (then nothing did), set by [`load_attributed`].
    core_refused: Option<String>,
    /// `BPF_MAP_TYPE_*` features some program of the table requires and no chosen program
    /// does: maps of these types are not created ([`Plan::apply`]).
    unused_map_types: BTreeSet<&'static str>,
    /// One line per degraded need or refused sub-item, for the probe's log.
    pub notes: Vec<String>,
}

impl Plan {
    /// Chooses, for every enabled sub-item (and the core), the first supported variant of
    /// each need.
    pub fn new(kernel: &Kernel, subitems: &[Subitem], enabled: impl Fn(&str) -> bool) -> Plan {
        Self::choose_why(subitems, enabled, |prog| prog.unavailable(kernel))
    }

    /// [`Plan::new`] with the hook check given: the pure part, for tests.
    pub fn choose(
        subitems: &[Subitem],
        enabled: impl Fn(&str) -> bool,
        available: impl Fn(&Hook) -> bool,
    ) -> Plan {
        Self::choose_progs(subitems, enabled, |prog| available(&prog.hook))
    }

    /// [`Plan::choose`] with the check per program (hook and required features).
    pub fn choose_progs(
        subitems: &[Subitem],
        enabled: impl Fn(&str) -> bool,
        available: impl Fn(&Prog) -> bool,
    ) -> Plan {
        Self::choose_why(subitems, enabled, |prog| {
            (!available(prog)).then(|| "unavailable".to_owned())
        })
    }

    /// [`Plan::choose_progs`] with the reason a program cannot run (`None`: it can), which
    /// the notes and [`Plan::choices`] keep.
    pub fn choose_why(
        subitems: &[Subitem],
        enabled: impl Fn(&str) -> bool,
        why_not: impl Fn(&Prog) -> Option<String>,
    ) -> Plan {
        let mut plan = Plan::default();
        for item in subitems
            .iter()
            .filter(|s| s.name.is_empty() || enabled(s.name))
        {
            plan.enabled.insert(item.name);
            let mut complete = true;
            for need in item.needs {
                let mut choice = Choice {
                    subitem: item.name,
                    need: need.what,
                    variant: None,
                    progs: Vec::new(),
                    sections: Vec::new(),
                    passed_over: Vec::new(),
                    failed: None,
                };
                for (i, variant) in need.variants.iter().enumerate() {
                    let mut reasons: Vec<String> = Vec::new();
                    for reason in variant.iter().filter_map(&why_not) {
                        if !reasons.contains(&reason) {
                            reasons.push(reason);
                        }
                    }
                    if reasons.is_empty() {
                        choice.variant = Some(i);
                        choice.progs = variant.iter().map(|p| p.name).collect();
                        choice.sections = variant.iter().map(Prog::section).collect();
                        break;
                    }
                    let sections: Vec<String> = variant.iter().map(Prog::section).collect();
                    choice.passed_over.push(format!(
                        "{}: {}",
                        sections.join(","),
                        reasons.join(", ")
                    ));
                }
                match choice.variant.map(|i| need.variants[i]) {
                    Some(variant) => {
                        plan.needs.insert((item.name, need.what));
                        for p in variant.iter() {
                            if plan.progs.insert(p.name) {
                                plan.hooks.push((p.name, p.hook));
                            }
                        }
                    }
                    None => {
                        complete = false;
                        plan.notes.push(format!(
                            "{}: no hook on this kernel for {} (tried {}); its fields stay empty",
                            label(item.name),
                            need.what,
                            choice.passed_over.join("; ")
                        ));
                    }
                }
                plan.choices.push(choice);
            }
            if complete {
                plan.active.insert(item.name);
            }
        }
        plan.unused_map_types = unused_map_types(subitems, &plan.progs);
        plan
    }

    /// Whether program `name` is to be loaded.
    pub fn has(&self, prog: &str) -> bool {
        self.progs.contains(prog)
    }

    /// Whether every need of `subitem` is met.
    pub fn active(&self, subitem: &str) -> bool {
        self.active.contains(subitem)
    }

    /// Whether need `what` of `subitem` is met.
    pub fn has_need(&self, subitem: &str, what: &str) -> bool {
        self.needs.iter().any(|&(s, w)| s == subitem && w == what)
    }

    /// The hook of each chosen program, in choice order.
    pub fn hooks(&self) -> &[(&'static str, Hook)] {
        &self.hooks
    }

    /// The enabled sub-items that are active (all needs met), without the core.
    pub fn active_subitems(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.active.iter().copied().filter(|s| !s.is_empty())
    }

    /// How each need of each enabled sub-item was met, in table order (kept across the
    /// reductions of [`load`], which records refusals in [`Choice::failed`]).
    pub fn choices(&self) -> &[Choice] {
        &self.choices
    }

    /// One line per need met by a later variant than the first, for the probe's log: which
    /// hooks it uses and why the better ones were passed over.
    pub fn fallback_notes(&self) -> Vec<String> {
        self.choices
            .iter()
            .filter(|c| c.variant.is_some_and(|i| i > 0) && c.failed.is_none())
            .map(|c| {
                format!(
                    "{}: {} falls back to {} (passed over {})",
                    label(c.subitem),
                    c.need,
                    if c.sections.is_empty() {
                        "nothing".to_owned()
                    } else {
                        c.sections.join(",")
                    },
                    c.passed_over.join("; ")
                )
            })
            .collect()
    }

    /// Why the kernel refused the core, so that nothing loaded (the error and libbpf's
    /// lines), if it did.
    pub fn core_refused(&self) -> Option<&str> {
        self.core_refused.as_deref()
    }

    /// The map types ([`Prog::requires`] `BPF_MAP_TYPE_*` features) whose maps are not
    /// created: some program of the table requires the type, no chosen program does.
    pub fn unused_map_types(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.unused_map_types.iter().copied()
    }

    /// Sets autoload on every program of `object`: on for the chosen ones, off otherwise;
    /// and switches off the creation of the maps of [`Plan::unused_map_types`] (libbpf
    /// creates every map of an object, and an older kernel refuses a map type it lacks even
    /// when no loaded program uses it). A chosen program the object does not have is an
    /// error (a typo in the sub-item table would otherwise leave its sub-item silently
    /// without data).
    pub fn apply(&self, object: &mut OpenObject) -> Result<(), Error> {
        let mut found = BTreeSet::new();
        for mut prog in object.progs_mut() {
            let name = prog
                .name()
                .to_str()
                .and_then(|n| self.progs.get(n).copied());
            if let Some(name) = name {
                found.insert(name);
            }
            prog.set_autoload(name.is_some());
        }
        if let Some(missing) = self.progs.difference(&found).next() {
            return Err(Error::NoSuchProgram((*missing).to_owned()));
        }
        for mut map in object.maps_mut() {
            let unused = map_type_feature(map.map_type().into())
                .is_some_and(|f| self.unused_map_types.contains(f.as_str()));
            if unused {
                let name = map.name().to_string_lossy().into_owned();
                map.set_autocreate(false)
                    .map_err(Error::bpf(format!("not creating map {name}")))?;
            }
        }
        Ok(())
    }

    /// The same plan with only the core and the sub-items `keep` of this plan's enabled
    /// ones, on this plan's programs; the choices and notes are kept as they are.
    fn only(&self, subitems: &[Subitem], keep: impl Fn(&str) -> bool) -> Plan {
        let mut plan = Plan::choose_progs(
            subitems,
            |s| self.enabled.contains(s) && keep(s),
            |p| self.progs.contains(p.name),
        );
        plan.notes = self.notes.clone();
        plan.choices = self.choices.clone();
        plan
    }

    /// The same plan without `subitem` (its programs dropped unless another keeps them).
    fn without(&self, subitems: &[Subitem], subitem: &str) -> Plan {
        self.only(subitems, |s| s != subitem)
    }

    /// Records that the kernel refused `subitem` (every enabled one when `None`) with
    /// `error`: the needs whose programs libbpf named in `messages` get the error and
    /// libbpf's line, the other needs of the sub-item say which need took them down.
    fn refuse(&mut self, subitem: Option<&str>, error: &str, messages: &[String]) {
        let failed = crate::print::failed_programs(messages);
        let hit = |c: &Choice| subitem.is_none_or(|s| s == c.subitem) && c.failed.is_none();
        let culprits: Vec<String> = self
            .choices
            .iter()
            .filter(|c| hit(c) && c.progs.iter().any(|p| failed.contains_key(*p)))
            .map(|c| format!("{} ({})", c.need, label(c.subitem)))
            .collect();
        for choice in self.choices.iter_mut() {
            if !hit(choice) || choice.variant.is_none() {
                continue;
            }
            let own: Vec<&str> = choice
                .progs
                .iter()
                .filter_map(|p| failed.get(*p).map(String::as_str))
                .collect();
            choice.failed = Some(if !own.is_empty() {
                format!("{error}: {}", own.join("; "))
            } else if !culprits.is_empty() {
                format!("not loaded: the kernel refused {}", culprits.join(", "))
            } else {
                let general = crate::print::failure_lines(messages);
                if general.is_empty() {
                    error.to_owned()
                } else {
                    format!("{error}: {}", general.join("; "))
                }
            });
        }
    }
}

/// The `BPF_MAP_TYPE_*` features programs of `subitems` require that no program in
/// `chosen` requires.
fn unused_map_types(
    subitems: &[Subitem],
    chosen: &BTreeSet<&'static str>,
) -> BTreeSet<&'static str> {
    let all = subitems
        .iter()
        .flat_map(|s| s.needs)
        .flat_map(|n| n.variants.iter().copied())
        .flatten();
    let mut declared = BTreeSet::new();
    let mut used = BTreeSet::new();
    for prog in all {
        for feature in prog.requires.iter().filter(|f| f.starts_with(MAP_TYPE)) {
            declared.insert(*feature);
            if chosen.contains(prog.name) {
                used.insert(*feature);
            }
        }
    }
    declared.difference(&used).copied().collect()
}

const MAP_TYPE: &str = "BPF_MAP_TYPE_";

/// The UAPI enumerator of map type `map_type` (`BPF_MAP_TYPE_TASK_STORAGE`), from libbpf's
/// own name of it (`task_storage`); `None` for a type this libbpf does not know.
pub fn map_type_feature(map_type: u32) -> Option<String> {
    // SAFETY: libbpf returns a static NUL-terminated string or NULL for unknown types.
    let name = unsafe { libbpf_sys::libbpf_bpf_map_type_str(map_type) };
    if name.is_null() {
        return None;
    }
    // SAFETY: non-NULL, NUL-terminated, static.
    let name = unsafe { std::ffi::CStr::from_ptr(name) }.to_str().ok()?;
    Some(format!("{MAP_TYPE}{}", name.to_ascii_uppercase()))
}

fn label(subitem: &str) -> &str {
    if subitem.is_empty() {
        "core"
    } else {
        subitem
    }
}

/// Checks a sub-item table against the programs of an opened (not loaded) BPF object:
/// every program a variant names must exist and sit in the ELF section of its hook, and
/// every program of the object must be named by some variant (else it never loads). One
/// line per mismatch; empty when the table and the object agree. Each probe runs this in a
/// unit test (opening an object needs no privileges).
pub fn check_programs(subitems: &[Subitem], object: &OpenObject) -> Vec<String> {
    let sections: std::collections::BTreeMap<String, String> = object
        .progs()
        .map(|p| {
            (
                p.name().to_string_lossy().into_owned(),
                p.section().to_string_lossy().into_owned(),
            )
        })
        .collect();
    let mut problems = Vec::new();
    let progs = subitems
        .iter()
        .flat_map(|s| s.needs.iter().map(move |n| (s, n)))
        .flat_map(|(s, n)| {
            n.variants
                .iter()
                .flat_map(move |v| v.iter().map(move |p| (s, p)))
        });
    let mut named = BTreeSet::new();
    for (item, prog) in progs {
        named.insert(prog.name);
        match sections.get(prog.name) {
            None => problems.push(format!(
                "{}: program {} is not in the object",
                label(item.name),
                prog.name
            )),
            Some(section) if !prog.matches_section(section) => problems.push(format!(
                "{}: program {} is in section {section}, its hook is {}",
                label(item.name),
                prog.name,
                prog.section()
            )),
            Some(_) => {}
        }
    }
    for name in sections.keys().filter(|n| !named.contains(n.as_str())) {
        problems.push(format!(
            "program {name} is in no sub-item, so it never loads"
        ));
    }
    problems.sort();
    problems.dedup();
    problems
}

/// Loads with `plan` through `attempt` (which opens the object, calls [`Plan::apply`],
/// loads and attaches). When that fails, the core is tried alone, then each enabled
/// sub-item on its own with the core, to find the ones the kernel refuses (libbpf's printer
/// silenced meanwhile); they are dropped with a note and the rest is loaded. Fails only when
/// the core itself does not load, or the rest fails together.
pub fn load<T, E: std::fmt::Display>(
    subitems: &[Subitem],
    plan: Plan,
    attempt: impl FnMut(&Plan) -> Result<T, E>,
) -> Result<(T, Plan), E> {
    let (result, plan) = load_attributed(subitems, plan, attempt);
    result.map(|t| (t, plan))
}

/// [`load`], returning the final plan whatever happened: every need the kernel refused has
/// its [`Choice::failed`] set, attributed to the needs holding the programs libbpf names in
/// its messages (for the `--plan` report).
pub fn load_attributed<T, E: std::fmt::Display>(
    subitems: &[Subitem],
    plan: Plan,
    mut attempt: impl FnMut(&Plan) -> Result<T, E>,
) -> (Result<T, E>, Plan) {
    let first_error = match attempt(&plan) {
        Ok(t) => return (Ok(t), plan),
        Err(e) => e,
    };
    let mut plan = plan;
    // These attempts only find the culprit: libbpf's messages (verifier logs) would
    // repeat the first attempt's; they are kept to name the refused programs.
    let mut quiet_attempt = |p: &Plan| crate::print::quiet(|| crate::print::capture(|| attempt(p)));
    let core = plan.only(subitems, |_| false);
    if let (Err(e), messages) = quiet_attempt(&core) {
        plan.refuse(Some(""), &e.to_string(), &messages);
        let mut lines: Vec<String> = crate::print::failed_programs(&messages)
            .into_values()
            .collect();
        lines.extend(crate::print::failure_lines(&messages));
        let why = if lines.is_empty() {
            e.to_string()
        } else {
            format!("{e}: {}", lines.join("; "))
        };
        let cause = format!("not loaded: the core was refused ({why})");
        for choice in plan.choices.iter_mut() {
            if choice.variant.is_some() && choice.failed.is_none() {
                choice.failed = Some(cause.clone());
            }
        }
        plan.notes
            .push(format!("core: the kernel refused its programs ({why})"));
        plan.core_refused = Some(why);
        return (Err(e), plan);
    }
    let items: Vec<&'static str> = plan
        .enabled
        .iter()
        .copied()
        .filter(|s| !s.is_empty())
        .collect();
    for item in items {
        let alone = plan.only(subitems, |s| s == item);
        if let (Err(e), messages) = quiet_attempt(&alone) {
            let mut reduced = plan.without(subitems, item);
            reduced.refuse(Some(item), &e.to_string(), &messages);
            let culprits: Vec<String> = crate::print::failed_programs(&messages)
                .into_values()
                .collect();
            let why = if culprits.is_empty() {
                e.to_string()
            } else {
                format!("{e}: {}", culprits.join("; "))
            };
            reduced.notes.push(format!(
                "{item}: the kernel refused its programs ({why}); it is off"
            ));
            plan = reduced;
        }
    }
    match attempt(&plan) {
        Ok(t) => (Ok(t), plan),
        Err(e) => {
            plan.refuse(None, &e.to_string(), &[]);
            plan.core_refused = Some(e.to_string());
            (Err(first_error), plan)
        }
    }
}

/// A kernel described by what it lacks, for the probes' unit tests of their plans on the
/// kernels of the matrix (docs/kernels.md): each list as that kernel's BTF has it.
#[derive(Debug, Clone, Copy)]
pub struct KernelModel {
    /// Tracepoints (`tp_btf`) it lacks.
    pub missing_tracepoints: &'static [&'static str],
    /// Helpers, map types and kfuncs ([`Prog::requires`]) it lacks.
    pub missing_features: &'static [&'static str],
    /// The functions fentry/fexit and kprobes can attach to; `None`: every function.
    pub functions: Option<&'static [&'static str]>,
    /// Whether fentry/fexit programs load.
    pub fentry: bool,
    /// Whether kprobes exist.
    pub kprobes: bool,
}

impl KernelModel {
    /// Whether this kernel runs `prog`: its hook and what it requires. Uprobes, iterators
    /// and cgroup programs count as available.
    pub fn supports(&self, prog: &Prog) -> bool {
        let function = |f: &str| self.functions.is_none_or(|fs| fs.contains(&f));
        let hook = match prog.hook {
            Hook::TpBtf(t) | Hook::RawTp(t) => !self.missing_tracepoints.contains(&t),
            Hook::Tracepoint(_, t) => !self.missing_tracepoints.contains(&t),
            Hook::Fentry(f) | Hook::Fexit(f) => self.fentry && function(f),
            Hook::Kprobe(f) => self.kprobes && function(f),
            Hook::Uprobe | Hook::Iter(_) | Hook::Cgroup(_) => true,
        };
        hook && prog
            .requires
            .iter()
            .all(|f| !self.missing_features.contains(f))
    }

    /// The plan of `subitems`, all enabled, on this kernel.
    pub fn plan(&self, subitems: &[Subitem]) -> Plan {
        Plan::choose_progs(subitems, |_| true, |p| self.supports(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEND_TP: Prog = Prog::tp_btf("tp_send", "sock_send_length");
    const SEND_FENTRY: Prog = Prog::fentry("fentry_send", "tcp_sendmsg");
    const STATE: Prog = Prog::tp_btf("tp_state", "inet_sock_set_state");
    const PROBE: Prog = Prog::tp_btf("tp_probe", "tcp_probe");
    const ITEMS: &[Subitem] = &[
        Subitem {
            name: "",
            needs: &[Need {
                what: "state changes",
                variants: &[&[STATE]],
            }],
        },
        Subitem {
            name: "stats",
            needs: &[Need {
                what: "tx bytes",
                variants: &[&[SEND_TP], &[SEND_FENTRY]],
            }],
        },
        Subitem {
            name: "rtt",
            needs: &[Need {
                what: "rtt samples",
                variants: &[&[PROBE]],
            }],
        },
    ];

    #[test]
    fn a_variant_whose_feature_is_missing_is_passed_over() {
        const STORE: Prog =
            Prog::tp_btf("enter_store", "sys_enter").requiring(&["BPF_MAP_TYPE_TASK_STORAGE"]);
        const HASH: Prog = Prog::tp_btf("enter_hash", "sys_enter");
        const KPROBE: Prog = Prog::kprobe("enter_kprobe", "do_syscall_64");
        const WITH_FEATURE: &[Subitem] = &[Subitem {
            name: "",
            needs: &[Need {
                what: "syscall entry",
                variants: &[&[STORE], &[HASH], &[KPROBE]],
            }],
        }];
        let new = Plan::choose_progs(WITH_FEATURE, |_| true, |_| true);
        assert!(new.has("enter_store") && !new.has("enter_hash"));
        let old = Plan::choose_progs(WITH_FEATURE, |_| true, |p| p.requires.is_empty());
        assert!(old.has("enter_hash") && !old.has("enter_store"));
        let kprobes_only = Plan::choose_progs(
            WITH_FEATURE,
            |_| true,
            |p| matches!(p.hook, Hook::Kprobe(_)),
        );
        assert!(kprobes_only.has("enter_kprobe"));
        assert!(KPROBE.hook.matches_section("kprobe/do_syscall_64"));
        assert!(Prog::kretprobe("x", "f")
            .hook
            .matches_section("kretprobe/f"));
    }

    #[test]
    fn first_available_variant_wins_and_others_stay_off() {
        let plan = Plan::choose(ITEMS, |_| true, |_| true);
        assert!(plan.has("tp_send") && !plan.has("fentry_send"));
        assert!(plan.active("stats") && plan.active("rtt") && plan.active(""));
        let plan = Plan::choose(ITEMS, |_| true, |h| *h != SEND_TP.hook);
        assert!(plan.has("fentry_send") && !plan.has("tp_send"));
        assert!(plan.notes.is_empty());
    }

    #[test]
    fn disabled_subitems_load_nothing_and_missing_hooks_degrade() {
        let plan = Plan::choose(
            ITEMS,
            |s| s == "rtt",
            |h| !matches!(h, Hook::TpBtf("tcp_probe")),
        );
        assert!(plan.has("tp_state"));
        assert!(!plan.has("tp_send") && !plan.has("tp_probe"));
        assert!(!plan.active("rtt"));
        assert_eq!(plan.notes.len(), 1);
        assert!(plan.notes[0].starts_with("rtt: no hook on this kernel for rtt samples"));
    }

    #[test]
    fn load_drops_the_refused_subitem_only() {
        let plan = Plan::choose(ITEMS, |_| true, |_| true);
        let mut tries = 0;
        let (loaded, plan) = load(ITEMS, plan, |p| {
            tries += 1;
            if p.has("tp_probe") {
                Err("verifier says no")
            } else {
                Ok(p.clone())
            }
        })
        .unwrap();
        assert!(tries >= 3);
        assert!(loaded.has("tp_send") && !loaded.has("tp_probe"));
        assert!(!plan.active("rtt") && plan.active("stats"));
        assert!(plan
            .notes
            .iter()
            .any(|n| n.contains("rtt: the kernel refused")));
    }

    #[test]
    fn sections_name_their_hooks() {
        assert!(Hook::TpBtf("sched_switch").matches_section("tp_btf/sched_switch"));
        assert!(!Hook::TpBtf("sched_switch").matches_section("tp_btf/sched_switched"));
        assert!(!Hook::TpBtf("sched_switch").matches_section("raw_tp/sched_switch"));
        assert!(Hook::RawTp("sys_enter").matches_section("raw_tracepoint/sys_enter"));
        assert!(Hook::Tracepoint("syscalls", "sys_enter_read")
            .matches_section("tracepoint/syscalls/sys_enter_read"));
        assert!(Hook::Kprobe("tcp_sendmsg").matches_section("kretprobe/tcp_sendmsg"));
        for section in [
            "uprobe",
            "uretprobe",
            "usdt",
            "uprobe/libc.so.6:getaddrinfo",
        ] {
            assert!(Hook::Uprobe.matches_section(section), "{section}");
        }
        assert!(!Hook::Uprobe.matches_section("uprobes"));
        assert!(Hook::Iter("task_file").matches_section("iter/task_file"));
        assert!(Hook::Cgroup("sock_create").matches_section("cgroup/sock_create"));
        assert_eq!(
            Prog::tracepoint("p", "sched", "sched_switch")
                .hook
                .to_string(),
            "tracepoint/sched/sched_switch"
        );
    }

    #[test]
    fn a_refusal_is_pinned_on_the_need_holding_the_program_libbpf_names() {
        let mut plan = Plan::choose(ITEMS, |_| true, |_| true);
        let messages = ["libbpf: prog 'tp_probe': failed to attach: Invalid argument\n".to_owned()];
        plan.refuse(
            Some("rtt"),
            "attaching the BPF programs: Invalid argument",
            &messages,
        );
        let rtt = plan.choices().iter().find(|c| c.subitem == "rtt").unwrap();
        assert_eq!(
            rtt.failed.as_deref(),
            Some(
                "attaching the BPF programs: Invalid argument: \
                 prog 'tp_probe': failed to attach: Invalid argument"
            )
        );
        assert!(plan
            .choices()
            .iter()
            .filter(|c| c.subitem != "rtt")
            .all(|c| c.failed.is_none()));

        const TWO: &[Subitem] = &[Subitem {
            name: "abn",
            needs: &[
                Need {
                    what: "drops",
                    variants: &[&[Prog::tp_btf("tp_drop", "kfree_skb")]],
                },
                Need {
                    what: "errors",
                    variants: &[&[Prog::tp_btf("tp_err", "inet_sk_error_report")]],
                },
            ],
        }];
        let mut plan = Plan::choose(TWO, |_| true, |_| true);
        let messages =
            ["libbpf: prog 'tp_err': BPF program load failed: Permission denied\n".to_owned()];
        plan.refuse(Some("abn"), "loading: EPERM", &messages);
        let failed: Vec<_> = plan
            .choices()
            .iter()
            .map(|c| c.failed.clone().unwrap())
            .collect();
        assert_eq!(failed[0], "not loaded: the kernel refused errors (abn)");
        assert!(failed[1].ends_with("prog 'tp_err': BPF program load failed: Permission denied"));
    }

    #[test]
    fn maps_only_unchosen_programs_need_are_not_created() {
        const STORE: Prog =
            Prog::tp_btf("enter_store", "sys_enter").requiring(&["BPF_MAP_TYPE_TASK_STORAGE"]);
        const HASH: Prog = Prog::tp_btf("enter_hash", "sys_enter");
        const HELPER: Prog =
            Prog::tp_btf("enter_helper", "sys_exit").requiring(&["BPF_FUNC_get_current_task_btf"]);
        const ITEMS: &[Subitem] = &[Subitem {
            name: "",
            needs: &[
                Need {
                    what: "syscall entry",
                    variants: &[&[STORE], &[HASH]],
                },
                Need {
                    what: "syscall exit",
                    variants: &[&[HELPER]],
                },
            ],
        }];
        let new = Plan::choose_progs(ITEMS, |_| true, |_| true);
        assert_eq!(new.unused_map_types().count(), 0);
        let old = Plan::choose_progs(ITEMS, |_| true, |p| p.requires.is_empty());
        assert_eq!(
            old.unused_map_types().collect::<Vec<_>>(),
            ["BPF_MAP_TYPE_TASK_STORAGE"]
        );
        assert_eq!(
            map_type_feature(libbpf_sys::BPF_MAP_TYPE_TASK_STORAGE).as_deref(),
            Some("BPF_MAP_TYPE_TASK_STORAGE")
        );
        assert_eq!(
            map_type_feature(libbpf_sys::BPF_MAP_TYPE_LRU_PERCPU_HASH).as_deref(),
            Some("BPF_MAP_TYPE_LRU_PERCPU_HASH")
        );
        assert_eq!(map_type_feature(100_000), None);
    }

    #[test]
    fn choices_record_the_variant_and_why_others_were_passed_over() {
        let plan = Plan::choose_why(
            ITEMS,
            |_| true,
            |p| (p.name == "tp_send").then(|| "no tracepoint sock_send_length".to_owned()),
        );
        let stats = plan
            .choices()
            .iter()
            .find(|c| c.subitem == "stats")
            .unwrap();
        assert_eq!(stats.variant, Some(1));
        assert_eq!(stats.sections, ["fentry/tcp_sendmsg"]);
        assert_eq!(
            stats.passed_over,
            ["tp_btf/sock_send_length: no tracepoint sock_send_length"]
        );
        assert_eq!(
            plan.fallback_notes(),
            ["stats: tx bytes falls back to fentry/tcp_sendmsg \
              (passed over tp_btf/sock_send_length: no tracepoint sock_send_length)"]
        );
        assert_eq!(Prog::kretprobe("r", "f").section(), "kretprobe/f");
        assert!(!Prog::kretprobe("r", "f").matches_section("kprobe/f"));
        assert!(!Prog::kprobe("k", "f").matches_section("kretprobe/f"));
        assert!(Prog::kprobe("k", "f").matches_section("kprobe/f"));
    }

    #[test]
    fn load_fails_when_the_core_fails() {
        let plan = Plan::choose(ITEMS, |_| true, |_| true);
        let r: Result<((), Plan), &str> = load(ITEMS, plan, |_| Err("no BPF"));
        assert_eq!(r.unwrap_err(), "no BPF");
    }
}
