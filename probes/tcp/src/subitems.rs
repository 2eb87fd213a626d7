//! The probe's sub-items and the BPF programs each needs, best hook first. The core (`""`)
//! tracks links: state changes, socket destruction, and the `tcp_pass` iterator user
//! space runs every sample period (counters, samples, binding sockets to processes).
//! Only `tcp_delay` hooks send/recv and ACKs, and only inside its window. fentry/fexit
//! variants are fallbacks for kernels that have them and lack the tracepoint; on the
//! target kernel they never load.

use gala_ebpf::{Need, Prog, Subitem};

const STATE: Prog = Prog::tp_btf("tcp_state", "inet_sock_set_state");
const DESTROY: Prog = Prog::tp_btf("tcp_destroy", "tcp_destroy_sock");
const PASS: Prog = Prog::iter("tcp_pass", "task_file");
const SEND_TP: Prog = Prog::tp_btf("tcp_send_len", "sock_send_length");
const RECV_TP: Prog = Prog::tp_btf("tcp_recv_len", "sock_recv_length");
const SEND_FEXIT: Prog = Prog::fexit("tcp_sendmsg_exit", "tcp_sendmsg");
const RECV_FEXIT: Prog = Prog::fexit("tcp_recvmsg_exit", "tcp_recvmsg");
const ACK: Prog = Prog::tp_btf("tcp_ack", "tcp_probe");
const RETRANS: Prog = Prog::tp_btf("tcp_retrans", "tcp_retransmit_skb");
const SEND_RST: Prog = Prog::tp_btf("tcp_send_rst", "tcp_send_reset");
const RECV_RST: Prog = Prog::tp_btf("tcp_recv_rst", "tcp_receive_reset");
const DROP: Prog = Prog::tp_btf("tcp_drop", "kfree_skb");
const ERR: Prog = Prog::tp_btf("tcp_err_report", "inet_sk_error_report");
const BUF_LIMIT: Prog = Prog::tp_btf("tcp_buf_limit", "sock_exceed_buf_limit");
const DATA_READY: Prog = Prog::tp_btf("tcp_data_ready", "sk_data_ready");

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
    variants: &[&[PASS]],
};

/// The tcp_delay programs, attached only inside the delay window.
pub const DELAY_PROGS: &[&str] = &[
    SEND_TP.name,
    RECV_TP.name,
    SEND_FEXIT.name,
    RECV_FEXIT.name,
    ACK.name,
    DATA_READY.name,
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
                variants: &[&[PASS]],
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
                variants: &[&[DROP]],
            },
            Need {
                what: abn::ERRORS,
                variants: &[&[ERR]],
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
                variants: &[&[SEND_TP, RECV_TP], &[SEND_FEXIT, RECV_FEXIT]],
            },
            Need {
                what: "data arrival",
                variants: &[&[DATA_READY]],
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
    use gala_ebpf::{Hook, Plan};

    #[test]
    fn every_planned_program_is_in_the_object_on_its_hook() {
        let builder = crate::skel::TcpSkelBuilder::default();
        let problems = gala_ebpf::check_skeleton(builder, SUBITEMS);
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn tracepoints_first_and_fentry_only_as_fallback() {
        let all = Plan::choose(SUBITEMS, |_| true, |_| true);
        assert!(all.has("tcp_send_len") && !all.has("tcp_sendmsg_exit"));
        assert!(all.has("tcp_pass") && all.has("tcp_ack"));
        let core = Plan::choose(SUBITEMS, |s| s == "tcp_stats", |_| true);
        assert!(core.has("tcp_pass") && !core.has("tcp_send_len") && !core.has("tcp_ack"));
        let no_tp = Plan::choose(
            SUBITEMS,
            |_| true,
            |h| !matches!(h, Hook::TpBtf("sock_send_length")),
        );
        assert!(no_tp.has("tcp_sendmsg_exit") && no_tp.has("tcp_recvmsg_exit"));
        assert!(!no_tp.has("tcp_recv_len"));
    }

    #[test]
    fn a_missing_hook_degrades_only_its_fields() {
        let plan = Plan::choose(
            SUBITEMS,
            |s| s == "tcp_abnormal",
            |h| !matches!(h, Hook::TpBtf("kfree_skb")),
        );
        assert!(!plan.active("tcp_abnormal"));
        assert!(plan.has_need("tcp_abnormal", abn::RESETS));
        assert!(!plan.has_need("tcp_abnormal", abn::DROPS));
        assert!(plan.has("tcp_retrans") && !plan.has("tcp_drop"));
        assert!(!plan.has("tcp_data_ready"));
    }
}
