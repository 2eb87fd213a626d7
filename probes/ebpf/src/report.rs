//! The `--plan` report: what a probe would load on this kernel, one JSON line per
//! (sub-item, need), for the kernel matrix (`<binary> --plan`, see [`crate::runner`]):
//!
//! ```text
//! {"probe":"tcp","subitem":"tcp_abnormal","need":"drop reasons","result":"loaded","hook":"tp_btf/kfree_skb","detail":""}
//! ```
//!
//! `result` is `loaded` (the first variant), `fallback` (a later variant; `detail` says
//! why the ones before it were passed over), `skipped` (no variant this kernel can run;
//! `detail` says which hooks were tried and why not) or `failed` (chosen, but the kernel
//! refused to load or attach it; `detail` has the error). `hook` is the chosen variant's
//! ELF sections, comma-separated (each once). Sub-item `""` is the core; a sub-item without
//! needs of its own gets one line with need `""` (the core's says `loaded`, the others
//! follow the core).

use crate::plan::{Choice, Plan, Subitem};

/// What became of one need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The first (best) variant loaded.
    Loaded,
    /// A later variant loaded.
    Fallback,
    /// No variant can run on this kernel.
    Skipped,
    /// The chosen variant did not load or attach.
    Failed,
}

impl Outcome {
    /// The word in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Loaded => "loaded",
            Outcome::Fallback => "fallback",
            Outcome::Skipped => "skipped",
            Outcome::Failed => "failed",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The probe (catalogue name).
    pub probe: String,
    /// The sub-item (`""`: the core).
    pub subitem: String,
    /// The need (`""`: a sub-item without needs of its own).
    pub need: String,
    /// What became of it.
    pub result: Outcome,
    /// The chosen variant's ELF sections, comma-separated (empty when skipped).
    pub hook: String,
    /// Why: the variants passed over, or the error.
    pub detail: String,
}

impl Line {
    /// The line as one JSON object, fields in the documented order.
    pub fn to_json(&self) -> String {
        format!(
            "{{\"probe\":{},\"subitem\":{},\"need\":{},\"result\":\"{}\",\"hook\":{},\"detail\":{}}}",
            json_string(&self.probe),
            json_string(&self.subitem),
            json_string(&self.need),
            self.result.as_str(),
            json_string(&self.hook),
            json_string(&self.detail),
        )
    }
}

/// The report of `plan` (after [`crate::plan::load_attributed`]) for every sub-item of
/// `subitems` the plan enabled, in table order.
pub fn lines(probe: &str, subitems: &[Subitem], plan: &Plan) -> Vec<Line> {
    let line = |subitem: &str, need: &str, result, hook: String, detail: String| Line {
        probe: probe.to_owned(),
        subitem: subitem.to_owned(),
        need: need.to_owned(),
        result,
        hook,
        detail,
    };
    let mut out = Vec::new();
    for item in subitems {
        let choices: Vec<&Choice> = plan
            .choices()
            .iter()
            .filter(|c| c.subitem == item.name)
            .collect();
        if item.needs.is_empty() {
            let (result, detail) = match (item.name.is_empty(), plan.core_refused()) {
                (true, Some(why)) => (Outcome::Failed, why.to_owned()),
                (true, None) => (Outcome::Loaded, "no programs of its own".to_owned()),
                (false, Some(why)) => (
                    Outcome::Failed,
                    format!("runs on the core's programs: the core was refused ({why})"),
                ),
                // Loaded when any need of the core is (TOA may be missing and the core
                // still tracks sockets).
                (false, None)
                    if plan.choices().iter().any(|c| {
                        c.subitem.is_empty() && c.variant.is_some() && c.failed.is_none()
                    }) =>
                {
                    (Outcome::Loaded, "runs on the core's programs".to_owned())
                }
                (false, None) => (
                    Outcome::Skipped,
                    "runs on the core's programs: the core has no hook here".to_owned(),
                ),
            };
            out.push(line(item.name, "", result, String::new(), detail));
            continue;
        }
        for choice in choices {
            // Several uprobes of one variant are all `uprobe`: named once.
            let mut sections: Vec<&str> = Vec::new();
            for section in &choice.sections {
                if !sections.contains(&section.as_str()) {
                    sections.push(section);
                }
            }
            let hook = sections.join(",");
            let (result, detail) = match (&choice.failed, choice.variant) {
                (Some(error), _) => (Outcome::Failed, error.clone()),
                (None, None) => (
                    Outcome::Skipped,
                    format!("tried {}", choice.passed_over.join("; ")),
                ),
                (None, Some(_)) if !plan.has_need(choice.subitem, choice.need) => (
                    Outcome::Failed,
                    "not loaded: dropped from the plan".to_owned(),
                ),
                (None, Some(0)) => (Outcome::Loaded, String::new()),
                (None, Some(_)) => (
                    Outcome::Fallback,
                    format!("passed over {}", choice.passed_over.join("; ")),
                ),
            };
            let hook = if result == Outcome::Skipped {
                String::new()
            } else {
                hook
            };
            out.push(line(choice.subitem, choice.need, result, hook, detail));
        }
    }
    out
}

/// `text` as a JSON string literal.
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{load_attributed, Need, Prog};

    const SEND_TP: Prog = Prog::tp_btf("tp_send", "sock_send_length");
    const SEND_K: Prog = Prog::kprobe("k_send", "tcp_sendmsg");
    const SEND_KRET: Prog = Prog::kretprobe("kret_send", "tcp_sendmsg");
    const STATE: Prog = Prog::tp_btf("tp_state", "inet_sock_set_state");
    const DROP: Prog = Prog::tp_btf("tp_drop", "kfree_skb");
    const ERR: Prog = Prog::tp_btf("tp_err", "inet_sk_error_report");
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
            needs: &[],
        },
        Subitem {
            name: "delay",
            needs: &[Need {
                what: "send",
                variants: &[&[SEND_TP], &[SEND_K, SEND_KRET]],
            }],
        },
        Subitem {
            name: "abnormal",
            needs: &[
                Need {
                    what: "drops",
                    variants: &[&[DROP]],
                },
                Need {
                    what: "errors",
                    variants: &[&[ERR]],
                },
            ],
        },
    ];

    fn why(p: &Prog) -> Option<String> {
        match p.name {
            "tp_send" => Some("no tracepoint sock_send_length".to_owned()),
            _ => None,
        }
    }

    fn results(lines: &[Line]) -> Vec<(String, String, &'static str, String)> {
        lines
            .iter()
            .map(|l| {
                (
                    l.subitem.clone(),
                    l.need.clone(),
                    l.result.as_str(),
                    l.hook.clone(),
                )
            })
            .collect()
    }

    #[test]
    fn every_need_gets_a_line_with_the_real_sections() {
        let plan = Plan::choose_why(ITEMS, |_| true, why);
        let lines = lines("tcp", ITEMS, &plan);
        let r = |s: &str, n: &str, res: &'static str, h: &str| {
            (s.to_owned(), n.to_owned(), res, h.to_owned())
        };
        assert_eq!(
            results(&lines),
            [
                r("", "state changes", "loaded", "tp_btf/inet_sock_set_state"),
                r("stats", "", "loaded", ""),
                r(
                    "delay",
                    "send",
                    "fallback",
                    "kprobe/tcp_sendmsg,kretprobe/tcp_sendmsg"
                ),
                r("abnormal", "drops", "loaded", "tp_btf/kfree_skb"),
                r(
                    "abnormal",
                    "errors",
                    "loaded",
                    "tp_btf/inet_sk_error_report"
                ),
            ]
        );
        assert_eq!(
            lines[2].detail,
            "passed over tp_btf/sock_send_length: no tracepoint sock_send_length"
        );
        assert_eq!(
            lines[2].to_json(),
            "{\"probe\":\"tcp\",\"subitem\":\"delay\",\"need\":\"send\",\"result\":\"fallback\",\
             \"hook\":\"kprobe/tcp_sendmsg,kretprobe/tcp_sendmsg\",\
             \"detail\":\"passed over tp_btf/sock_send_length: no tracepoint sock_send_length\"}"
        );
    }

    #[test]
    fn skipped_needs_say_what_was_tried() {
        let plan = Plan::choose_why(
            ITEMS,
            |_| true,
            |p| match p.hook {
                crate::Hook::Kprobe(_) => Some("no kprobes".to_owned()),
                _ => why(p),
            },
        );
        let lines = lines("tcp", ITEMS, &plan);
        let send = lines.iter().find(|l| l.need == "send").unwrap();
        assert_eq!(send.result, Outcome::Skipped);
        assert_eq!(send.hook, "");
        assert_eq!(
            send.detail,
            "tried tp_btf/sock_send_length: no tracepoint sock_send_length; \
             kprobe/tcp_sendmsg,kretprobe/tcp_sendmsg: no kprobes"
        );
    }

    #[test]
    fn a_subitem_on_the_core_runs_when_one_core_need_is_missing() {
        const TOA: Prog = Prog::kprobe("k_toa", "tcp_conn_request");
        const CORE: &[Need] = &[
            Need {
                what: "state changes",
                variants: &[&[STATE]],
            },
            Need {
                what: "toa",
                variants: &[&[TOA]],
            },
        ];
        let items = [
            Subitem {
                name: "",
                needs: CORE,
            },
            ITEMS[1],
        ];
        let plan = Plan::choose_why(
            &items,
            |_| true,
            |p| (p.name == "k_toa").then(|| "no kprobes".to_owned()),
        );
        let lines = lines("tcp", &items, &plan);
        let of = |s: &str, n: &str| {
            lines
                .iter()
                .find(|l| l.subitem == s && l.need == n)
                .unwrap()
        };
        assert_eq!(of("", "toa").result, Outcome::Skipped);
        assert_eq!(of("stats", "").result, Outcome::Loaded, "{lines:?}");
    }

    #[test]
    fn a_refused_program_fails_its_need_and_takes_its_subitem_down() {
        let plan = Plan::choose_why(ITEMS, |_| true, why);
        let (loaded, plan) = load_attributed(ITEMS, plan, |p| {
            if p.has("tp_drop") {
                Err("loading the BPF programs: Permission denied")
            } else {
                Ok(p.clone())
            }
        });
        assert!(loaded.is_ok());
        let lines = lines("tcp", ITEMS, &plan);
        let of = |n: &str| lines.iter().find(|l| l.need == n).unwrap();
        assert_eq!(of("drops").result, Outcome::Failed);
        assert!(of("drops").detail.contains("Permission denied"));
        assert_eq!(of("errors").result, Outcome::Failed);
        assert_eq!(of("send").result, Outcome::Fallback);
        assert_eq!(of("state changes").result, Outcome::Loaded);
    }

    #[test]
    fn a_refused_core_fails_everything() {
        let plan = Plan::choose_why(ITEMS, |_| true, why);
        let (loaded, plan) = load_attributed(ITEMS, plan, |_| {
            Err::<(), _>("loading the BPF programs: EPERM")
        });
        assert!(loaded.is_err());
        let lines = lines("tcp", ITEMS, &plan);
        assert!(
            lines.iter().all(|l| l.result == Outcome::Failed),
            "{lines:?}"
        );
        assert!(lines[0].detail.contains("EPERM"));
        assert_eq!(
            lines[2].detail,
            "not loaded: the core was refused (loading the BPF programs: EPERM)"
        );
        assert!(lines[1]
            .detail
            .ends_with("the core was refused (loading the BPF programs: EPERM)"));
    }

    #[test]
    fn a_core_without_needs_and_repeated_uprobes_get_one_entry() {
        const UPROBES: &[Subitem] = &[
            Subitem {
                name: "",
                needs: &[],
            },
            Subitem {
                name: "dns",
                needs: &[Need {
                    what: "resolver calls",
                    variants: &[&[Prog::uprobe("a"), Prog::uprobe("a_ret")]],
                }],
            },
        ];
        let plan = Plan::choose_why(UPROBES, |_| true, |_| None);
        let lines = lines("proc", UPROBES, &plan);
        assert_eq!(
            results(&lines),
            [
                (String::new(), String::new(), "loaded", String::new()),
                (
                    "dns".to_owned(),
                    "resolver calls".to_owned(),
                    "loaded",
                    "uprobe".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(
            json_string("a\"b\\c\nd\u{1}é"),
            "\"a\\\"b\\\\c\\nd\\u0001é\""
        );
    }
}
