//! The probe's sub-items and the BPF programs each needs, best hook first. The core (`""`)
//! tracks links: state changes, socket destruction, and the socket pass user space runs
//! every sample period (counters, samples, binding sockets to processes). Only `tcp_delay`
//! hooks send/recv and ACKs, and only inside its window. Tracepoints come first; the
//! fentry/fexit and kprobe variants are fallbacks for older kernels that lack the
//! tracepoint (Debian's 5.10 and 6.1; see the README's table); on a kernel without
//! kprobes that refuses fentry they never load.

use gala_ebpf::{Need, Prog, Subitem};

const STATE: Prog = Prog::tp_btf("tcp_state", "inet_sock_set_state");
const DESTROY: Prog = Prog::tp_btf("tcp_destroy", "tcp_destroy_sock");
/// The socket pass with `bpf_sock_from_file()` (5.11) and direct loads through
/// `bpf_rdonly_cast()` (6.2).
const PASS: Prog =
    Prog::iter("tcp_pass", "task_file").requiring(&["BPF_FUNC_sock_from_file", "bpf_rdonly_cast"]);
/// The socket pass recognising socket files by their inode, with probe reads (5.8+).
const PASS_COMPAT: Prog = Prog::iter("tcp_pass_compat", "task_file");
const SEND_TP: Prog = Prog::tp_btf("tcp_send_len", "sock_send_length");
const RECV_TP: Prog = Prog::tp_btf("tcp_recv_len", "sock_recv_length");
const SEND_FEXIT: Prog = Prog::fexit("tcp_sendmsg_exit", "tcp_sendmsg");
const RECV_FENTRY: Prog = Prog::fentry("tcp_cleanup_rbuf_entry", "tcp_cleanup_rbuf");
const SEND_KPROBE: Prog = Prog::kprobe("tcp_sendmsg_kprobe", "tcp_sendmsg");
const SEND_KRETPROBE: Prog = Prog::kretprobe("tcp_sendmsg_kretprobe", "tcp_sendmsg");
const RECV_KPROBE: Prog = Prog::kprobe("tcp_cleanup_rbuf_kprobe", "tcp_cleanup_rbuf");
const ACK: Prog = Prog::tp_btf("tcp_ack", "tcp_probe");
const RETRANS: Prog = Prog::tp_btf("tcp_retrans", "tcp_retransmit_skb");
const SEND_RST: Prog = Prog::tp_btf("tcp_send_rst", "tcp_send_reset");
const RECV_RST: Prog = Prog::tp_btf("tcp_recv_rst", "tcp_receive_reset");
/// `kfree_skb` with drop reasons (5.17+): the reasons it reads must exist.
const DROP: Prog = Prog::tp_btf("tcp_drop", "kfree_skb").requiring(&[
    "SKB_DROP_REASON_SOCKET_BACKLOG",
    "SKB_DROP_REASON_SOCKET_FILTER",
    "SKB_DROP_REASON_PROTO_MEM",
]);
const BACKLOG_FEXIT: Prog = Prog::fexit("tcp_backlog_exit", "tcp_add_backlog");
const FILTER_FEXIT: Prog = Prog::fexit("tcp_filter_exit", "tcp_filter");
const RMEM_FEXIT: Prog = Prog::fexit("tcp_rmem_exit", "tcp_try_rmem_schedule");
const ERR: Prog = Prog::tp_btf("tcp_err_report", "inet_sk_error_report");
const ERR_FENTRY: Prog = Prog::fentry("tcp_err_report_entry", "sock_def_error_report");
const ERR_KPROBE: Prog = Prog::kprobe("tcp_err_report_kprobe", "sock_def_error_report");
const BUF_LIMIT: Prog = Prog::tp_btf("tcp_buf_limit", "sock_exceed_buf_limit");
const DATA_READY: Prog = Prog::tp_btf("tcp_data_ready", "sk_data_ready");
const DATA_READY_FENTRY: Prog = Prog::fentry("tcp_data_ready_entry", "tcp_data_ready");
const DATA_READY_KPROBE: Prog = Prog::kprobe("tcp_data_ready_kprobe", "tcp_data_ready");
const TOA_FENTRY: Prog = Prog::fentry("tcp_conn_request_entry", "tcp_conn_request");
const TOA_KPROBE: Prog = Prog::kprobe("tcp_conn_request_kprobe", "tcp_conn_request");

/// The programs that record TOA options (`toa_client_ip`).
pub const TOA_PROGS: &[&str] = &[TOA_FENTRY.name, TOA_KPROBE.name];

/// Need name of the core's TOA option parsing (`toa_client_ip`).
pub const TOA: &str = "TOA client addresses";

/// Need names of `tcp_abnormal`, each printing its own fields.
pub mod abn {
    /// `retran_packets`, `retrans_ratio`, `lost_out`, `sacked_out`.
    pub const RETRANSMITS: &str = "retransmits";
    /// `send_rsts`, `receive_rsts`.
    pub const RESETS: &str = "resets";
    /// `backlog_drops`, `filter_drops`, `tcp_oom`.
    pub const DROPS: &str = "drop reasons";
    /// `tmout_count`.
    pub const ERRORS: &str = "socket errors";
    /// `snd_buf_limit_count`, `rmem_scheduls`.
    pub const BUF_LIMITS: &str = "buffer limits";
    /// `sk_drops` and the `lost_out`/`sacked_out` samples.
    pub const SAMPLES: &str = "socket samples";
}

const SAMPLES: Need = Need {
    what: "socket samples",
    variants: &[&[PASS], &[PASS_COMPAT]],
};

/// The tcp_delay programs, attached only inside the delay window.
pub const DELAY_PROGS: &[&str] = &[
    SEND_TP.name,
    RECV_TP.name,
    SEND_FEXIT.name,
    RECV_FENTRY.name,
    SEND_KPROBE.name,
    SEND_KRETPROBE.name,
    RECV_KPROBE.name,
    ACK.name,
    DATA_READY.name,
    DATA_READY_FENTRY.name,
    DATA_READY_KPROBE.name,
];

/// The sub-items (catalogue names) with their needs.
pub const SUBITEMS: &[Subitem] = &[
    Subitem {
        name: "",
        needs: &[
            Need {
                what: "state changes",
                variants: &[&[STATE]],
            },
            Need {
                what: "socket destruction",
                variants: &[&[DESTROY]],
            },
            Need {
                what: "socket passes",
                variants: &[&[PASS], &[PASS_COMPAT]],
            },
            Need {
                what: TOA,
                variants: &[&[TOA_FENTRY], &[TOA_KPROBE]],
            },
        ],
    },
    Subitem {
        name: "tcp_stats",
        needs: &[],
    },
    Subitem {
        name: "tcp_abnormal",
        needs: &[
            Need {
                what: abn::RETRANSMITS,
                variants: &[&[RETRANS]],
            },
            Need {
                what: abn::RESETS,
                variants: &[&[SEND_RST, RECV_RST]],
            },
            Need {
                what: abn::DROPS,
                variants: &[&[DROP], &[BACKLOG_FEXIT, FILTER_FEXIT, RMEM_FEXIT]],
            },
            Need {
                what: abn::ERRORS,
                variants: &[&[ERR], &[ERR_FENTRY], &[ERR_KPROBE]],
            },
            Need {
                what: abn::BUF_LIMITS,
                variants: &[&[BUF_LIMIT]],
            },
            SAMPLES,
        ],
    },
    Subitem {
        name: "tcp_windows",
        needs: &[SAMPLES],
    },
    Subitem {
        name: "tcp_rtt",
        needs: &[SAMPLES],
    },
    Subitem {
        name: "tcp_srtt",
        needs: &[],
    },
    Subitem {
        name: "tcp_rate",
        needs: &[SAMPLES],
    },
    Subitem {
        name: "tcp_sockbuf",
        needs: &[SAMPLES],
    },
    Subitem {
        name: "tcp_delay",
        needs: &[
            Need {
                what: "send/recv",
                variants: &[
                    &[SEND_TP, RECV_TP],
                    &[SEND_FEXIT, RECV_FENTRY],
                    &[SEND_KPROBE, SEND_KRETPROBE, RECV_KPROBE],
                ],
            },
            Need {
                what: "data arrival",
                variants: &[&[DATA_READY], &[DATA_READY_FENTRY], &[DATA_READY_KPROBE]],
            },
            Need {
                what: "acknowledgements",
                variants: &[&[ACK]],
            },
        ],
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use gala_ebpf::{Hook, KernelModel as Model, Plan};

    #[test]
    fn every_planned_program_is_in_the_object_on_its_hook() {
        let builder = crate::skel::TcpSkelBuilder::default();
        let problems = gala_ebpf::check_skeleton(builder, SUBITEMS);
        assert!(problems.is_empty(), "{problems:#?}");
    }

    const DROP_REASONS: [&str; 3] = [
        "SKB_DROP_REASON_SOCKET_BACKLOG",
        "SKB_DROP_REASON_SOCKET_FILTER",
        "SKB_DROP_REASON_PROTO_MEM",
    ];

    /// This host (6.18): every tracepoint, no kprobes, fentry refused.
    const HOST: Model = Model {
        missing_tracepoints: &[],
        missing_features: &[],
        functions: None,
        fentry: false,
        kprobes: false,
    };
    /// Debian 6.1 (6.1.0-50), as its BTF has it.
    const DEBIAN_6_1: Model = Model {
        missing_tracepoints: &["sock_send_length", "sock_recv_length", "sk_data_ready"],
        missing_features: &["bpf_rdonly_cast"],
        functions: None,
        fentry: true,
        kprobes: true,
    };
    /// Debian 5.10 (5.10.0-32), as its BTF has it.
    const DEBIAN_5_10: Model = Model {
        missing_tracepoints: &[
            "sock_send_length",
            "sock_recv_length",
            "sk_data_ready",
            "inet_sk_error_report",
        ],
        missing_features: &[
            "bpf_rdonly_cast",
            "BPF_FUNC_sock_from_file",
            DROP_REASONS[0],
            DROP_REASONS[1],
            DROP_REASONS[2],
        ],
        functions: None,
        fentry: true,
        kprobes: true,
    };

    #[test]
    fn this_host_keeps_its_tracepoints_and_gets_no_toa() {
        let plan = HOST.plan(SUBITEMS);
        for p in [
            "tcp_pass",
            "tcp_send_len",
            "tcp_recv_len",
            "tcp_data_ready",
            "tcp_drop",
            "tcp_err_report",
            "tcp_retrans",
        ] {
            assert!(plan.has(p), "{p}");
        }
        for p in [
            "tcp_pass_compat",
            "tcp_sendmsg_exit",
            "tcp_cleanup_rbuf_entry",
            "tcp_backlog_exit",
            "tcp_err_report_entry",
        ] {
            assert!(!plan.has(p), "{p}");
        }
        assert!(!plan.has_need("", TOA) && TOA_PROGS.iter().all(|p| !plan.has(p)));
        assert!(plan.has_need("tcp_delay", "send/recv"));
        let core = Plan::choose(SUBITEMS, |s| s == "tcp_stats", |_| true);
        assert!(core.has("tcp_pass") && !core.has("tcp_send_len") && !core.has("tcp_ack"));
    }

    #[test]
    fn debian_6_1_takes_fentry_where_tracepoints_are_missing() {
        let plan = DEBIAN_6_1.plan(SUBITEMS);
        for p in [
            "tcp_pass_compat",
            "tcp_sendmsg_exit",
            "tcp_cleanup_rbuf_entry",
            "tcp_data_ready_entry",
            "tcp_drop",
            "tcp_err_report",
            "tcp_conn_request_entry",
        ] {
            assert!(plan.has(p), "{p}");
        }
        assert!(!plan.has("tcp_pass") && !plan.has("tcp_send_len"));
        assert!(!plan.has("tcp_sendmsg_kprobe") && !plan.has("tcp_backlog_exit"));
        assert!(plan.notes.is_empty(), "{:?}", plan.notes);
    }

    #[test]
    fn debian_5_10_loads_without_5_11_features() {
        let plan = DEBIAN_5_10.plan(SUBITEMS);
        for p in [
            "tcp_pass_compat",
            "tcp_backlog_exit",
            "tcp_filter_exit",
            "tcp_rmem_exit",
            "tcp_err_report_entry",
            "tcp_conn_request_entry",
        ] {
            assert!(plan.has(p), "{p}");
        }
        assert!(!plan.has("tcp_pass") && !plan.has("tcp_drop") && !plan.has("tcp_err_report"));
        assert!(plan.notes.is_empty(), "{:?}", plan.notes);
        for s in SUBITEMS {
            assert!(plan.active(s.name), "{}", s.name);
        }
    }

    #[test]
    fn without_fentry_kprobes_fill_in_except_for_the_old_drop_reasons() {
        let plan = Model {
            fentry: false,
            ..DEBIAN_5_10
        }
        .plan(SUBITEMS);
        for p in [
            "tcp_sendmsg_kprobe",
            "tcp_sendmsg_kretprobe",
            "tcp_cleanup_rbuf_kprobe",
            "tcp_data_ready_kprobe",
            "tcp_err_report_kprobe",
            "tcp_conn_request_kprobe",
        ] {
            assert!(plan.has(p), "{p}");
        }
        assert!(plan.has_need("", TOA) && plan.has_need("tcp_delay", "send/recv"));
        assert!(!plan.has_need("tcp_abnormal", abn::DROPS));
        assert!(plan.has_need("tcp_abnormal", abn::ERRORS));
    }

    #[test]
    fn a_missing_hook_degrades_only_its_fields() {
        let plan = Plan::choose(
            SUBITEMS,
            |s| s == "tcp_abnormal",
            |h| !matches!(h, Hook::TpBtf("kfree_skb") | Hook::Fexit("tcp_filter")),
        );
        assert!(!plan.active("tcp_abnormal"));
        assert!(plan.has_need("tcp_abnormal", abn::RESETS));
        assert!(!plan.has_need("tcp_abnormal", abn::DROPS));
        assert!(plan.has("tcp_retrans") && !plan.has("tcp_drop"));
        // a variant is all or nothing: no fexit/tcp_add_backlog without tcp_filter
        assert!(!plan.has("tcp_backlog_exit"));
        assert!(!plan.has("tcp_data_ready"));
    }
}
