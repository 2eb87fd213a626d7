//! What the eBPF probes of gala-gopher share, so that each probe is its BPF C file, its
//! tables and its aggregation, and nothing else:
//!
//! - [`kernel`]: what the running kernel offers (BTF tracepoints and functions, whether
//!   fentry/fexit and kprobes load), detected at run time;
//! - [`plan`]: per sub-item, which BPF programs to load — the first hook variant the kernel
//!   supports, autoload off for everything else — and loading that degrades per sub-item;
//! - [`report`]: the `--plan` report of a probe binary, one JSON line per (sub-item, need);
//! - [`skeleton`]: one skeleton's lifecycle (open, plan, ring sizing, load, attach, ring
//!   reader) and the storage it is opened into;
//! - [`print`]: libbpf's messages in the probe's log (debug), silenced while probing;
//! - [`snoop`]: the snooped (or, in blacklist mode, excluded) tgids in the `gala_snoop` map
//!   that `gala.bpf.h`'s `gala_snooped()` checks, kept in step with the configuration;
//! - [`cost`]: the run time and run count of the loaded programs (`bpf_enable_stats`),
//!   reported as the `ebpf_prog` table;
//! - [`addr`] and [`hist`]: address text and the histogram column encoding;
//! - [`procnet`]: the socket rows of `/proc/net/{tcp,tcp6,udp,udp6}`.
//!
//! The BPF side is `include/gala.bpf.h` (with the vendored `include/<arch>/vmlinux.h`) and
//! `include/gala_kernel.bpf.h` (CO-RE readers of kernel objects that changed shape); the build
//! side is the `gala-ebpf-build` crate.

pub mod addr;
pub mod cost;
pub mod hist;
pub mod kernel;
pub mod plan;
pub mod print;
pub mod procnet;
pub mod report;
pub mod ring;
pub mod runner;
pub mod skeleton;
pub mod snoop;

pub use cost::{CostReport, ProgCost, StatsMode, COST_META};
pub use hist::Histogram;
pub use kernel::Kernel;
pub use plan::{
    check_programs, load, load_attributed, Choice, Hook, KernelModel, Need, Plan, Prog, Subitem,
};
pub use ring::{bytes_of, char_bytes, read_pod, ring_bytes, Pod, RingReader};
pub use runner::{attach_named, debug, log, run, run_main, run_plan, BpfProbe, PLAN_ARG};
pub use skeleton::{check_skeleton, Setup, Skeleton};
pub use snoop::{Scope, SnoopMap};

/// Declares the probe's `mod skel`: the skeleton libbpf-cargo generated from
/// `src/bpf/<stem>.bpf.c` into the probe's `OUT_DIR` (by `gala-ebpf-build`), with the lints
/// generated code does not meet allowed. Attributes before the stem (the module's doc
/// comment) go on the module. One line per probe, so the allow list lives here only:
///
/// ```ignore
/// gala_ebpf::skel_module!(
///     /// The BPF skeleton generated from `src/bpf/tcp.bpf.c`.
///     "tcp"
/// );
/// ```
#[macro_export]
macro_rules! skel_module {
    ($(#[$attr:meta])* $stem:literal) => {
        $(#[$attr])*
        #[allow(
            dead_code,
            clippy::all,
            clippy::pedantic,
            clippy::undocumented_unsafe_blocks,
            clippy::unwrap_used,
            missing_docs,
            non_camel_case_types,
            unused_imports
        )]
        mod skel {
            include!(concat!(env!("OUT_DIR"), "/", $stem, ".skel.rs"));
        }
    };
}

/// Errors of the shared eBPF helpers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A map the helpers rely on is not in the BPF object (it does not include `gala.bpf.h`).
    #[error("BPF object has no map {0:?} (does the program include gala.bpf.h?)")]
    MissingMap(&'static str),
    /// A program the probe names (in its plan, or to attach itself) is not in the object.
    #[error("BPF object has no program {0:?}")]
    NoSuchProgram(String),
    /// A struct `gala.bpf.h` defines is not laid out as the helpers expect.
    #[error("{0}")]
    Layout(String),
    /// A map the probe names (a ring buffer to size or read) is not in the object.
    #[error("BPF object has no map {0:?}")]
    NoSuchMap(String),
    /// A libbpf call failed.
    #[error("{what}: {source}")]
    Bpf {
        /// What was being done.
        what: String,
        /// libbpf's error.
        #[source]
        source: libbpf_rs::Error,
    },
}

impl Error {
    /// Wraps a libbpf error with what was being done, for `map_err`.
    pub fn bpf(what: impl Into<String>) -> impl FnOnce(libbpf_rs::Error) -> Error {
        let what = what.into();
        move |source| Error::Bpf { what, source }
    }
}

/// Raises `RLIMIT_MEMLOCK` to infinity, which kernels before 5.11 need for BPF maps;
/// harmless elsewhere. Failure is ignored: the load that needs it reports its own error.
pub fn raise_memlock() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct we pass and nothing else.
    unsafe {
        libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited);
    }
}
