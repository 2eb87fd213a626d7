//! The probe catalogue: one table of the built-in probes (docs/reference/rest-api.md §3) that every other part
//! reads — REST names, IPC type numbers, binaries, sub-items, snooper kinds, the params GET shows
//! and the stop signal — joined at startup by the custom probes of `gala-gopher-custom.json`.

use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;

use gala_ipc_proto::Encoding;

use super::params::ParamKey;

/// Which resolved snooper objects a probe receives (the "snoop" column of docs/reference/rest-api.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnoopKinds {
    /// Process objects (pids).
    pub process: bool,
    /// Container objects.
    pub container: bool,
}

impl SnoopKinds {
    /// Snoopers are ignored entirely (`–`).
    pub const NONE: Self = Self {
        process: false,
        container: false,
    };
    /// Processes only (`P`).
    pub const PROCESS: Self = Self {
        process: true,
        container: false,
    };
    /// Containers only (`C`).
    pub const CONTAINER: Self = Self {
        process: false,
        container: true,
    };
    /// Processes and containers (`P+C`).
    pub const BOTH: Self = Self {
        process: true,
        container: true,
    };

    /// Whether the probe takes snoopers at all; if not, `snoopers`/`blacklist` are ignored.
    pub fn any(self) -> bool {
        self.process || self.container
    }
}

/// One built-in probe, as written in the table below.
#[derive(Debug, Clone, Copy)]
pub struct BuiltinProbe {
    /// REST / probes.init name (matched case-insensitively).
    pub name: &'static str,
    /// Type number = IPC address (1–21).
    pub type_number: u32,
    /// Binary file name inside the extend-probe directory.
    pub bin: &'static str,
    /// `cmd.probe` sub-items and their bit in the sub-item mask, in catalogue order.
    pub subitems: &'static [(&'static str, u32)],
    /// Snooper objects the probe receives.
    pub snoop: SnoopKinds,
    /// A PUT must leave it with a snooper entry or in blacklist mode (the "snooper rule").
    /// Only tcp, socket and container, as in the original's `check_probe_snooper_conf_num`:
    /// the original's documentation says "every probe that takes snoopers", but then its
    /// README's own `baseinfo {"cmd":{"probe":["cpu","fs","host"]},"state":"running"}`
    /// would fail (docs/reference/rest-api.md §4).
    pub requires_snoopers: bool,
    /// Params GET shows for this probe beyond those shown for every probe (docs/reference/rest-api.md §7).
    pub shown_params: &'static [ParamKey],
    /// The signal the original stopped it with (SIGTERM for a few script probes).
    pub stop_signal: Signal,
    /// Encoding of its control channel: protobuf for the Rust and C probes, JSON lines for a
    /// probe written with the Python SDK (which speaks only JSON).
    pub encoding: Encoding,
}

use ParamKey as K;
use Signal::{SIGINT, SIGTERM};

const L7_SUBITEMS: &[(&str, u32)] = &[
    ("l7_bytes_metrics", 0x1),
    ("l7_rpc_metrics", 0x2),
    ("l7_rpc_trace", 0x4),
];

/// The 21 built-in probes, in type-number order.
pub const BUILTIN_PROBES: [BuiltinProbe; 21] = [
    BuiltinProbe {
        name: "baseinfo",
        type_number: 1,
        bin: "system_infos",
        subitems: &[
            ("cpu", 0x1),
            ("mem", 0x2),
            ("nic", 0x4),
            ("net", 0x8),
            ("disk", 0x10),
            ("fs", 0x20),
            ("proc", 0x40),
            ("host", 0x80),
            ("con", 0x100),
        ],
        snoop: SnoopKinds::BOTH,
        requires_snoopers: false,
        shown_params: &[K::ElfPath, K::DevName],
        stop_signal: SIGINT,
        encoding: Encoding::Proto,
    },
    BuiltinProbe {
        name: "virt",
        type_number: 2,
        bin: "virtualized_infos",
        subitems: &[],
        snoop: SnoopKinds::NONE,
        requires_snoopers: false,
        shown_params: &[],
        stop_signal: SIGINT,
        encoding: Encoding::Proto,
    },
    BuiltinProbe {
        name: "flamegraph",
        type_number: 3,
        bin: "stackprobe",
        subitems: &[
            ("oncpu", 0x1),
            ("offcpu", 0x2),
            ("mem", 0x4),
            ("mem_glibc", 0x8),
            ("io", 0x10),
        ],
        snoop: SnoopKinds::PROCESS,
        requires_snoopers: false,
        shown_params: &[
            K::PyroscopeServer,
            K::SvgPeriod,
            K::PerfSamplePeriod,
            K::MultiInstance,
            K::NativeStack,
            K::OutputDir,
            K::FlameDir,
        ],
        stop_signal: SIGINT,
        encoding: Encoding::Proto,
    },
    BuiltinProbe {
        name: "l7",
        type_number: 4,
        bin: "l7probe",
        subitems: L7_SUBITEMS,
        snoop: SnoopKinds::BOTH,
        requires_snoopers: false,
        shown_params: &[K::L7Protocol, K::SupportSsl, K::ClusterIpBackend],
        stop_signal: SIGINT,
        encoding: Encoding::Proto,
    },
    BuiltinProbe {
        name: "tcp",
        type_number: 5,
        bin: "tcpprobe",
        subitems: &[
            ("tcp_abnormal", 0x1),
            ("tcp_windows", 0x2),
            ("tcp_rtt", 0x4),
            ("tcp_stats", 0x8),
            ("tcp_sockbuf", 0x10),
            ("tcp_rate", 0x20),
            ("tcp_srtt", 0x40),
            ("tcp_delay", 0x80),
        ],
        snoop: SnoopKinds::PROCESS,
        requires_snoopers: true,
        shown_params: &[
            K::SamplePeriod,
            K::ClusterIpBackend,
            K::ReportCport,
            K::RingbufMapSize,
            K::DevName,
        ],
        stop_signal: SIGINT,
        encoding: Encoding::Proto,
    },
    BuiltinProbe {
        name: "socket",
        type_number: 6,
        bin: "endpoint",
        subitems: &[("tcp_socket", 0x1), ("udp_socket", 0x2)],
        snoop: SnoopKinds::PROCESS,
        requires_snoopers: true,
        shown_params: &[K::RingbufMapSize],
        stop_signal: SIGINT,
        encoding: Encoding::Proto,
    },
    BuiltinProbe {
        name: "io",
        type_number: 7,
        bin: "ioprobe",
        subitems: &[
            ("io_trace", 0x1),
            ("io_err", 0x2),
            ("io_count", 0x4),
            ("page_cache", 0x8),
        ],
        snoop: SnoopKinds::NONE,
        requires_snoopers: false,
        shown_params: &[K::SamplePeriod, K::DevName],
        stop_signal: SIGINT,
        encoding: Encoding::Proto,
    },
    BuiltinProbe {
        name: "proc",
        type_number: 8,
        bin: "taskprobe",
        subitems: &[
            ("proc_syscall", 0x1),
            ("proc_fs", 0x2),
            ("proc_dns", 0x4),
            ("proc_io", 0x8),
            ("proc_pagecache", 0x10),
            ("proc_net", 0x20),
            ("proc_offcpu", 0x40),
            ("proc_ioctl", 0x80),
            ("proc_pygc", 0x100),
        ],
        snoop: SnoopKinds::BOTH,
        requires_snoopers: false,
        shown_params: &[],
        stop_signal: SIGINT,
        encoding: Encoding::Proto,
    },
    BuiltinProbe {
        name: "jvm",
        type_number: 9,
        bin: "jvmprobe",
        subitems: &[],
        snoop: SnoopKinds::PROCESS,
        requires_snoopers: false,
        shown_params: &[],
        stop_signal: SIGINT,
        encoding: Encoding::Proto,
    },
    BuiltinProbe {
        name: "postgre_sli",
        type_number: 10,
        bin: "pgsliprobe",
        subitems: &[],
        snoop: SnoopKinds::NONE,
        requires_snoopers: false,
        shown_params: &[K::DevName],
        stop_signal: SIGTERM,
        encoding: Encoding::Proto,
    },
    BuiltinProbe {
        name: "opengauss_sli",
        type_number: 11,
        bin: "pg_stat_probe.py",
        subitems: &[],
        snoop: SnoopKinds::NONE,
        requires_snoopers: false,
        shown_params: &[],
        stop_signal: SIGINT,
        // A Python probe: the Python SDK speaks only JSON lines.
        encoding: Encoding::Json,
    },
    BuiltinProbe {
        name: "nginx",
        type_number: 12,
        bin: "nginx_probe",
        subitems: &[],
        snoop: SnoopKinds::NONE,
        requires_snoopers: false,
        shown_params: &[K::ElfPath],
        stop_signal: SIGINT,
        encoding: Encoding::Proto,
    },
    BuiltinProbe {
        name: "lvs",
        type_number: 13,
        bin: "trace_lvs",
        subitems: &[],
        snoop: SnoopKinds::NONE,
        requires_snoopers: false,
        shown_params: &[],
        stop_signal: SIGINT,
        encoding: Encoding::Proto,
    },
    BuiltinProbe {
        name: "kafka",
        type_number: 14,
        bin: "kafkaprobe",
        subitems: &[],
        snoop: SnoopKinds::NONE,
        requires_snoopers: false,
        shown_params: &[K::DevName, K::KafkaPort],
        stop_signal: SIGINT,
        encoding: Encoding::Proto,
    },
    BuiltinProbe {
        name: "tprofiling",
        type_number: 15,
        bin: "tprofiling",
        subitems: &[
            ("oncpu", 0x1),
            ("syscall_file", 0x2),
            ("syscall_net", 0x4),
            ("syscall_sched", 0x8),
            ("syscall_lock", 0x10),
            ("python_gc", 0x20),
            ("pthread_sync", 0x40),
            ("oncpu_sample", 0x80),
            ("mem_usage", 0x100),
            ("mem_glibc", 0x200),
            ("offcpu", 0x400),
        ],
        snoop: SnoopKinds::PROCESS,
        requires_snoopers: false,
        shown_params: &[],
        stop_signal: SIGINT,
        encoding: Encoding::Proto,
    },
    BuiltinProbe {
        name: "hw",
        type_number: 16,
        bin: "hwprobe",
        subitems: &[("hw_nic", 0x1), ("hw_mem", 0x2)],
        snoop: SnoopKinds::NONE,
        requires_snoopers: false,
        shown_params: &[],
        stop_signal: SIGINT,
        encoding: Encoding::Proto,
    },
    BuiltinProbe {
        name: "ksli",
        type_number: 17,
        bin: "ksliprobe",
        subitems: &[],
        snoop: SnoopKinds::NONE,
        requires_snoopers: false,
        shown_params: &[K::DevName, K::ContinuousSampling],
        stop_signal: SIGINT,
        encoding: Encoding::Proto,
    },
    BuiltinProbe {
        name: "container",
        type_number: 18,
        // Native (probes/container): cgroup files instead of the original's cAdvisor wrapper.
        bin: "containerprobe",
        subitems: &[],
        snoop: SnoopKinds::BOTH,
        requires_snoopers: true,
        shown_params: &[K::CadvisorPort],
        stop_signal: SIGTERM,
        encoding: Encoding::Proto,
    },
    BuiltinProbe {
        name: "sermant",
        type_number: 19,
        bin: "sermant_probe.py",
        subitems: L7_SUBITEMS,
        snoop: SnoopKinds::PROCESS,
        requires_snoopers: false,
        shown_params: &[],
        stop_signal: SIGTERM,
        encoding: Encoding::Proto,
    },
    BuiltinProbe {
        name: "sli",
        type_number: 20,
        bin: "sliprobe",
        subitems: &[
            ("cpu", 0x1),
            ("mem", 0x2),
            ("io", 0x4),
            ("node", 0x8),
            ("container", 0x10),
            ("histogram", 0x20),
        ],
        snoop: SnoopKinds::CONTAINER,
        requires_snoopers: false,
        shown_params: &[],
        stop_signal: SIGINT,
        encoding: Encoding::Proto,
    },
    BuiltinProbe {
        name: "flowtracer",
        type_number: 21,
        bin: "flowtracer",
        subitems: &[],
        snoop: SnoopKinds::NONE,
        requires_snoopers: false,
        shown_params: &[],
        stop_signal: SIGINT,
        encoding: Encoding::Proto,
    },
];

/// Built-in probes as `(name, binary file name)` pairs, derived from [`BUILTIN_PROBES`].
pub const BUILTIN: &[(&str, &str)] = &names_and_bins();

const fn names_and_bins() -> [(&'static str, &'static str); BUILTIN_PROBES.len()] {
    let mut out = [("", ""); BUILTIN_PROBES.len()];
    let mut i = 0;
    while i < out.len() {
        out[i] = (BUILTIN_PROBES[i].name, BUILTIN_PROBES[i].bin);
        i += 1;
    }
    out
}

/// Type number of the first custom probe minus one: custom probes are `100 + position`.
pub const CUSTOM_TYPE_BASE: u32 = 100;

/// One `cmd.probe` sub-item and its bit in the sub-item mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubItem {
    /// The name as the catalogue spells it (GET shows this spelling).
    pub name: String,
    /// Its bit in the mask sent to the probe.
    pub bit: u32,
}

/// Where a probe comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOrigin {
    /// One of [`BUILTIN_PROBES`].
    Builtin,
    /// Declared in `gala-gopher-custom.json`.
    Custom {
        /// 1-based position in the file.
        position: u32,
        /// Declared `custom_param` labels, in file order.
        params: Vec<String>,
    },
}

/// Everything the daemon knows about one probe it can run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeKind {
    /// REST / probes.init name (built-ins lower case).
    pub name: String,
    /// Type number = IPC address: 1–21 built-in, 100 + position for custom probes.
    pub type_number: u32,
    /// The program to execute.
    pub bin: PathBuf,
    /// `cmd.probe` sub-items in catalogue (or declaration) order.
    pub subitems: Vec<SubItem>,
    /// Snooper objects the probe receives.
    pub snoop: SnoopKinds,
    /// A PUT must leave it with a snooper entry or in blacklist mode (the "snooper rule").
    pub requires_snoopers: bool,
    /// Params GET shows for this probe beyond those shown for every probe.
    pub shown_params: Vec<ParamKey>,
    /// The signal the original stopped it with.
    pub stop_signal: Signal,
    /// Built-in or custom.
    pub origin: ProbeOrigin,
    /// Encoding of its control channel: the catalogue's for built-ins (protobuf but for the
    /// Python `opengauss_sli`), JSON lines for custom probes unless their declaration says
    /// `"ipc_encoding": "proto"`.
    pub encoding: Encoding,
}

impl ProbeKind {
    /// The catalogue entry of a built-in probe whose binary lives in `extend_probe_dir`.
    pub fn builtin(probe: &BuiltinProbe, extend_probe_dir: &Path) -> Self {
        ProbeKind {
            name: probe.name.to_string(),
            type_number: probe.type_number,
            bin: extend_probe_dir.join(probe.bin),
            subitems: probe
                .subitems
                .iter()
                .map(|&(name, bit)| SubItem {
                    name: name.to_string(),
                    bit,
                })
                .collect(),
            snoop: probe.snoop,
            requires_snoopers: probe.requires_snoopers,
            shown_params: probe.shown_params.to_vec(),
            stop_signal: probe.stop_signal,
            origin: ProbeOrigin::Builtin,
            encoding: probe.encoding,
        }
    }

    /// Whether the probe was declared in the custom-probe file.
    pub fn is_custom(&self) -> bool {
        matches!(self.origin, ProbeOrigin::Custom { .. })
    }

    /// Declared `custom_param` labels; `None` for built-in probes.
    pub fn custom_params(&self) -> Option<&[String]> {
        match &self.origin {
            ProbeOrigin::Builtin => None,
            ProbeOrigin::Custom { params, .. } => Some(params),
        }
    }

    /// The sub-item called `name`: case-insensitive for built-ins (the original used
    /// `strcasecmp`), exact for custom probes.
    pub fn subitem(&self, name: &str) -> Option<&SubItem> {
        let custom = self.is_custom();
        self.subitems.iter().find(|s| {
            if custom {
                s.name == name
            } else {
                s.name.eq_ignore_ascii_case(name)
            }
        })
    }

    /// The mask of the named sub-items (names not in the catalogue count for nothing).
    pub fn subitem_mask<S: AsRef<str>>(&self, enabled: &[S]) -> u32 {
        enabled
            .iter()
            .filter_map(|n| self.subitem(n.as_ref()))
            .fold(0, |mask, s| mask | s.bit)
    }
}

/// A probe declared outside the built-in table: the custom probes of
/// `gala-gopher-custom.json` (`probes::custom`, which depends on this module, not the reverse).
pub trait DeclaredProbe {
    /// Its entry at 1-based `position` among the declared probes.
    fn kind(&self, position: u32) -> ProbeKind;
}

/// All probes the daemon can run: the built-ins, then the custom probes in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalogue {
    probes: Vec<ProbeKind>,
}

impl Catalogue {
    /// Builds the catalogue; built-in binaries live in `extend_probe_dir`, the `custom` probes
    /// follow in their order.
    pub fn new<D: DeclaredProbe>(extend_probe_dir: &Path, custom: &[D]) -> Self {
        let customs = (1u32..).zip(custom).map(|(position, c)| c.kind(position));
        let mut catalogue = Self::builtins(extend_probe_dir);
        catalogue.probes.extend(customs);
        catalogue
    }

    /// The catalogue of the built-in probes alone.
    pub fn builtins(extend_probe_dir: &Path) -> Self {
        let builtins = BUILTIN_PROBES
            .iter()
            .map(|p| ProbeKind::builtin(p, extend_probe_dir));
        Catalogue {
            probes: builtins.collect(),
        }
    }

    /// The probe a URL path names, in any case (built-in and custom names alike; no two
    /// probes have names that differ only in case).
    pub fn lookup(&self, url_name: &str) -> Option<&ProbeKind> {
        self.probes
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(url_name))
    }

    /// The probe with IPC type number `type_number`.
    pub fn by_type_number(&self, type_number: u32) -> Option<&ProbeKind> {
        self.probes.iter().find(|p| p.type_number == type_number)
    }

    /// All probes: built-ins in type-number order, then custom probes in file order.
    pub fn iter(&self) -> std::slice::Iter<'_, ProbeKind> {
        self.probes.iter()
    }

    /// Number of probes.
    pub fn len(&self) -> usize {
        self.probes.len()
    }

    /// Whether the catalogue is empty (never, once built).
    pub fn is_empty(&self) -> bool {
        self.probes.is_empty()
    }
}

impl<'a> IntoIterator for &'a Catalogue {
    type Item = &'a ProbeKind;
    type IntoIter = std::slice::Iter<'a, ProbeKind>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_consistent() {
        assert_eq!(BUILTIN.len(), 21);
        for (i, p) in BUILTIN_PROBES.iter().enumerate() {
            assert_eq!(p.type_number as usize, i + 1, "{}", p.name);
            assert_eq!(BUILTIN[i], (p.name, p.bin));
            let mut seen = 0u32;
            for &(name, bit) in p.subitems {
                assert!(bit.is_power_of_two(), "{} {name}", p.name);
                assert_eq!(seen & bit, 0, "{} {name}: bit reused", p.name);
                seen |= bit;
            }
        }
        let term: Vec<_> = BUILTIN_PROBES
            .iter()
            .filter(|p| p.stop_signal == Signal::SIGTERM)
            .map(|p| p.name)
            .collect();
        assert_eq!(term, ["postgre_sli", "container", "sermant"]);
        let required: Vec<_> = BUILTIN_PROBES
            .iter()
            .filter(|p| p.requires_snoopers)
            .map(|p| p.name)
            .collect();
        assert_eq!(required, ["tcp", "socket", "container"]);
        assert!(BUILTIN_PROBES
            .iter()
            .all(|p| !p.requires_snoopers || p.snoop.any()));
    }

    #[test]
    fn only_the_python_builtin_speaks_json() {
        let json: Vec<_> = BUILTIN_PROBES
            .iter()
            .filter(|p| p.encoding == Encoding::Json)
            .map(|p| p.name)
            .collect();
        assert_eq!(json, ["opengauss_sli"]);
        let cat = Catalogue::builtins(Path::new("/opt/gala-gopher/extend_probes"));
        assert_eq!(
            cat.lookup("opengauss_sli").unwrap().encoding,
            Encoding::Json
        );
        assert_eq!(cat.lookup("tcp").unwrap().encoding, Encoding::Proto);
    }

    #[test]
    fn catalogue_finds_builtins_case_insensitively() {
        let cat = Catalogue::builtins(Path::new("/opt/gala-gopher/extend_probes"));
        assert_eq!(cat.len(), 21);
        let tcp = cat.lookup("TcP").unwrap();
        assert_eq!(tcp.type_number, 5);
        assert_eq!(
            tcp.bin,
            Path::new("/opt/gala-gopher/extend_probes/tcpprobe")
        );
        assert_eq!(tcp.subitem("TCP_RTT").unwrap().bit, 0x4);
        assert_eq!(tcp.subitem_mask(&["tcp_rtt", "tcp_delay", "nope"]), 0x84);
        assert!(tcp.requires_snoopers);
        assert!(!cat.lookup("io").unwrap().requires_snoopers);
        assert!(!cat.lookup("baseinfo").unwrap().requires_snoopers);
        assert_eq!(cat.by_type_number(5), Some(tcp));
        assert!(cat.lookup("dnsmasq").is_none());
    }
}
