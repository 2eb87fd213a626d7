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
        match *self {
            Hook::TpBtf(tp) => kernel.has_btf() && kernel.has_tracepoint(tp),
            Hook::RawTp(tp) => kernel.has_tracepoint(tp),
            Hook::Tracepoint(category, name) => kernel.has_trace_event(category, name),
            Hook::Fentry(f) | Hook::Fexit(f) => kernel.fentry() && kernel.has_function(f),
            Hook::Kprobe(f) => kernel.kprobes() && kernel.has_function(f),
            Hook::Uprobe => true,
            Hook::Iter(target) => {
                kernel.has_btf() && kernel.has_function(&format!("bpf_iter_{target}"))
            }
            Hook::Cgroup(_) => kernel.cgroup2().is_some(),
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
    /// know each (see [`Kernel::has_enumerator`], [`Kernel::has_function`]), or the variant
    /// holding the program is not chosen.
    pub requires: &'static [&'static str],
}

impl Prog {
    /// A program on typed raw tracepoint `tp_btf/<tracepoint>`.
    pub const fn tp_btf(name: &'static str, tracepoint: &'static str) -> Prog {
        Prog {
            name,
            hook: Hook::TpBtf(tracepoint),
            requires: &[],
        }
    }

    /// A program on raw tracepoint `raw_tp/<tracepoint>`.
    pub const fn raw_tp(name: &'static str, tracepoint: &'static str) -> Prog {
        Prog {
            name,
            hook: Hook::RawTp(tracepoint),
            requires: &[],
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
        }
    }

    /// A uprobe, uretprobe or USDT program the probe attaches itself.
    pub const fn uprobe(name: &'static str) -> Prog {
        Prog {
            name,
            hook: Hook::Uprobe,
            requires: &[],
        }
    }

    /// A program on `fentry/<function>`.
    pub const fn fentry(name: &'static str, function: &'static str) -> Prog {
        Prog {
            name,
            hook: Hook::Fentry(function),
            requires: &[],
        }
    }

    /// A program on `fexit/<function>`.
    pub const fn fexit(name: &'static str, function: &'static str) -> Prog {
        Prog {
            name,
            hook: Hook::Fexit(function),
            requires: &[],
        }
    }

    /// A BPF iterator program on `iter/<target>`.
    pub const fn iter(name: &'static str, target: &'static str) -> Prog {
        Prog {
            name,
            hook: Hook::Iter(target),
            requires: &[],
        }
    }

    /// A program on `kprobe/<function>` (entry).
    pub const fn kprobe(name: &'static str, function: &'static str) -> Prog {
        Prog {
            name,
            hook: Hook::Kprobe(function),
            requires: &[],
        }
    }

    /// A program on `kretprobe/<function>` (return); the same hook as [`Prog::kprobe`]
    /// for availability.
    pub const fn kretprobe(name: &'static str, function: &'static str) -> Prog {
        Self::kprobe(name, function)
    }

    /// The same program, needing kernel `features` (see [`Prog::requires`]):
    /// `Prog::tp_btf("x", "sys_enter").requiring(&["BPF_MAP_TYPE_TASK_STORAGE"])`.
    pub const fn requiring(self, features: &'static [&'static str]) -> Prog {
        Prog {
            requires: features,
            ..self
        }
    }

    /// A cgroup program on `cgroup/<hook>`.
    pub const fn cgroup(name: &'static str, hook: &'static str) -> Prog {
        Prog {
            name,
            hook: Hook::Cgroup(hook),
            requires: &[],
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

/// The programs to load and what was left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    progs: BTreeSet<&'static str>,
    hooks: Vec<(&'static str, Hook)>,
    needs: BTreeSet<(&'static str, &'static str)>,
    active: BTreeSet<&'static str>,
    /// One line per degraded need or refused sub-item, for the probe's log.
    pub notes: Vec<String>,
}

impl Plan {
    /// Chooses, for every enabled sub-item (and the core), the first supported variant of
    /// each need.
    pub fn new(kernel: &Kernel, subitems: &[Subitem], enabled: impl Fn(&str) -> bool) -> Plan {
        Self::choose_progs(subitems, enabled, |prog| {
            prog.hook.available(kernel)
                && prog
                    .requires
                    .iter()
                    .all(|f| kernel.has_enumerator(f) || kernel.has_function(f))
        })
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
        let mut plan = Plan::default();
        for item in subitems
            .iter()
            .filter(|s| s.name.is_empty() || enabled(s.name))
        {
            let mut complete = true;
            for need in item.needs {
                match need.variants.iter().find(|v| v.iter().all(&available)) {
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
                        let tried: Vec<String> = need
                            .variants
                            .iter()
                            .flat_map(|v| v.iter().map(|p| p.hook.to_string()))
                            .collect();
                        plan.notes.push(format!(
                            "{}: no hook on this kernel for {} (tried {}); its fields stay empty",
                            label(item.name),
                            need.what,
                            tried.join(", ")
                        ));
                    }
                }
            }
            if complete {
                plan.active.insert(item.name);
            }
        }
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

    /// Sets autoload on every program of `object`: on for the chosen ones, off otherwise.
    /// A chosen program the object does not have is an error (a typo in the sub-item
    /// table would otherwise leave its sub-item silently without data).
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
        match self.progs.difference(&found).next() {
            Some(missing) => Err(Error::NoSuchProgram((*missing).to_owned())),
            None => Ok(()),
        }
    }

    /// The same plan without `subitem` (its programs dropped unless another keeps them).
    fn without(&self, subitems: &[Subitem], subitem: &str) -> Plan {
        let kept: BTreeSet<&str> = self
            .active
            .iter()
            .copied()
            .filter(|s| *s != subitem)
            .collect();
        let mut plan = Plan::choose_progs(
            subitems,
            |s| kept.contains(s),
            |p| self.progs.contains(p.name),
        );
        plan.notes = self.notes.clone();
        plan
    }
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
            Some(section) if !prog.hook.matches_section(section) => problems.push(format!(
                "{}: program {} is in section {section}, its hook is {}",
                label(item.name),
                prog.name,
                prog.hook
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
/// loads and attaches). When that fails, each enabled sub-item is tried on its own with the
/// core to find the ones the kernel refuses (libbpf's printer silenced meanwhile); they are
/// dropped with a note and the rest is loaded. Fails only when the core itself does not
/// load.
pub fn load<T, E: std::fmt::Display>(
    subitems: &[Subitem],
    plan: Plan,
    mut attempt: impl FnMut(&Plan) -> Result<T, E>,
) -> Result<(T, Plan), E> {
    let first_error = match attempt(&plan) {
        Ok(t) => return Ok((t, plan)),
        Err(e) => e,
    };
    let mut plan = plan;
    let items: Vec<&'static str> = plan.active_subitems().collect();
    for item in items {
        let alone = {
            let others: Vec<&str> = plan.active_subitems().filter(|s| *s != item).collect();
            others
                .iter()
                .fold(plan.clone(), |p, s| p.without(subitems, s))
        };
        // These attempts only find the culprit: libbpf's messages (verifier logs) would
        // repeat the first attempt's.
        if let Err(e) = crate::print::quiet(|| attempt(&alone)) {
            let mut reduced = plan.without(subitems, item);
            reduced.notes.push(format!(
                "{item}: the kernel refused its programs ({e}); it is off"
            ));
            plan = reduced;
        }
    }
    match attempt(&plan) {
        Ok(t) => Ok((t, plan)),
        Err(e) if plan.active_subitems().next().is_none() => Err(e),
        Err(_) => Err(first_error),
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
    fn load_fails_when_the_core_fails() {
        let plan = Plan::choose(ITEMS, |_| true, |_| true);
        let r: Result<((), Plan), &str> = load(ITEMS, plan, |_| Err("no BPF"));
        assert_eq!(r.unwrap_err(), "no BPF");
    }
}
