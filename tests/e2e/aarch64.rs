//! The aarch64 build, cross-compiled on this x86_64 host: `rpmbuild -bb --target aarch64` runs
//! the spec's `./build.sh --release --frozen --target aarch64-unknown-linux-gnu` offline (as the
//! x86_64 RPM of `packaging`), and the tests check that every program, probe and library of
//! that build, as the RPM's payload holds them, is an ELF for EM_AARCH64 (rpmbuild removes its
//! build tree when done); that the RPM is an aarch64
//! package holding the same paths as the x86_64 one; and that the BPF objects embedded in the
//! eBPF probes were compiled for arm64 (`__TARGET_ARCH_arm64`, arm64 `vmlinux.h`).
//!
//! The RPM is built once per run (a cold cross release build, the time is printed) and shared
//! by the tests; docs/packaging.md#aarch64 has the times.

use std::collections::BTreeSet;
use std::fs;
use std::process::Command;
use std::sync::OnceLock;

use super::packaging::{
    expected_paths, need, packaging_list, repo, rpm_generated, rpmbuild, run, stdout, tool, Built,
};

/// The Rust target of the build.
const TRIPLE: &str = "aarch64-unknown-linux-gnu";
/// `e_machine` of an aarch64 ELF file.
const EM_AARCH64: u16 = 183;
/// `e_machine` of a BPF object.
const EM_BPF: u16 = 247;

static BUILT: OnceLock<Result<Built, String>> = OnceLock::new();

/// The aarch64 RPM, built on first use (the other tests wait for it).
fn built() -> &'static Built {
    let built = BUILT.get_or_init(|| {
        tool("aarch64-linux-gnu-gcc")?;
        rpmbuild("packaging-rpmbuild-aarch64", &["--target", "aarch64"])
    });
    match built {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    }
}

/// The files of the aarch64 RPM's payload (path, content), read once.
fn payload() -> &'static [(String, Vec<u8>)] {
    static PAYLOAD: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    PAYLOAD.get_or_init(|| {
        let cpio = run(Command::new(need("rpm2cpio")).arg(&built().rpm), "rpm2cpio").stdout;
        cpio_files(&cpio)
    })
}

/// The fields of an ELF header this test looks at.
#[derive(Debug, PartialEq, Eq)]
struct Elf {
    /// 64-bit (ELFCLASS64).
    class64: bool,
    /// Little-endian (ELFDATA2LSB).
    little: bool,
    machine: u16,
}

/// The ELF header of `bytes` (little-endian fields), or `None` if it is not an ELF file.
fn elf_header(bytes: &[u8]) -> Option<Elf> {
    if bytes.len() < 20 || &bytes[..4] != b"\x7fELF" {
        return None;
    }
    Some(Elf {
        class64: bytes[4] == 2,
        little: bytes[5] == 1,
        machine: u16::from_le_bytes([bytes[18], bytes[19]]),
    })
}

/// Fails unless `bytes` (named `what`) is a 64-bit little-endian aarch64 ELF file.
fn assert_aarch64(what: &str, bytes: &[u8]) {
    let aarch64 = Elf {
        class64: true,
        little: true,
        machine: EM_AARCH64,
    };
    assert_eq!(
        elf_header(bytes).as_ref(),
        Some(&aarch64),
        "{what} is not an aarch64 ELF file"
    );
}

/// The members of the ar archive `bytes` (GNU format), as (name, contents).
fn ar_members(bytes: &[u8]) -> Vec<(String, &[u8])> {
    assert!(bytes.starts_with(b"!<arch>\n"), "not an ar archive");
    let mut members = Vec::new();
    let mut at = 8;
    while at + 60 <= bytes.len() {
        let header = &bytes[at..at + 60];
        let name = String::from_utf8_lossy(&header[..16]).trim().to_owned();
        let size: usize = String::from_utf8_lossy(&header[48..58])
            .trim()
            .parse()
            .expect("ar member size");
        let start = at + 60;
        members.push((name, &bytes[start..start + size]));
        at = start + size + size % 2;
    }
    members
}

/// The files of the cpio archive (newc, as rpm2cpio writes) `bytes`, as (path, contents).
fn cpio_files(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let hex = |b: &[u8]| {
        usize::from_str_radix(std::str::from_utf8(b).expect("cpio header"), 16).expect("hex")
    };
    let pad4 = |n: usize| n.div_ceil(4) * 4;
    let mut files = Vec::new();
    let mut at = 0;
    loop {
        let h = &bytes[at..at + 110];
        assert_eq!(&h[..6], b"070701", "cpio newc header at {at}");
        let mode = hex(&h[14..22]);
        let size = hex(&h[54..62]);
        let name_size = hex(&h[94..102]);
        let name = String::from_utf8_lossy(&bytes[at + 110..at + 110 + name_size - 1]).into_owned();
        let data = pad4(at + 110 + name_size);
        if name == "TRAILER!!!" {
            return files;
        }
        if mode & 0o170000 == 0o100000 {
            let path = format!("/{}", name.trim_start_matches("./"));
            files.push((path, bytes[data..data + size].to_vec()));
        }
        at = pad4(data + size);
    }
}

/// The BPF objects embedded in `binary` (libbpf-rs skeletons carry theirs as bytes): every
/// little-endian 64-bit ELF header with `e_machine` EM_BPF, cut at its section header table.
fn embedded_bpf_objects(binary: &[u8]) -> Vec<&[u8]> {
    let mut objects = Vec::new();
    let mut at = 0;
    while let Some(i) = memchr::memmem::find(&binary[at..], b"\x7fELF\x02\x01\x01") {
        let start = at + i;
        at = start + 1;
        let header = &binary[start..];
        if header.len() < 64 || u16::from_le_bytes([header[18], header[19]]) != EM_BPF {
            continue;
        }
        let u64_at = |o: usize| u64::from_le_bytes(header[o..o + 8].try_into().expect("8 bytes"));
        let u16_at = |o: usize| usize::from(u16::from_le_bytes([header[o], header[o + 1]]));
        let end = usize::try_from(u64_at(40)).expect("e_shoff") + u16_at(58) * u16_at(60);
        if end <= header.len() {
            objects.push(&header[..end]);
        }
    }
    objects
}

/// The cargo probes of probes/packaging.list that have a BPF side (`src/bpf/`).
fn ebpf_probes() -> Vec<String> {
    packaging_list()
        .into_iter()
        .filter(|p| p.kind == "cargo" && repo().join(&p.dir).join("src/bpf").is_dir())
        .map(|p| p.program)
        .collect()
}

#[test]
fn the_aarch64_rpm_holds_the_expected_files_all_built_for_aarch64() {
    let rpm = need("rpm");
    let package = &built().rpm;
    let arch = stdout(&run(
        Command::new(&rpm)
            .args(["-qp", "--queryformat", "%{ARCH}"])
            .arg(package),
        "rpm -qp",
    ));
    assert_eq!(arch, "aarch64");
    assert!(
        package.to_string_lossy().ends_with(".aarch64.rpm"),
        "{}",
        package.display()
    );

    // The same paths as the x86_64 package, with aarch64's libdir.
    let libdir = stdout(&run(
        Command::new(&rpm).args(["--target", "aarch64", "--eval", "%_libdir"]),
        "rpm --eval",
    ));
    let listed: BTreeSet<String> = stdout(&run(
        Command::new(&rpm).arg("-qlp").arg(package),
        "rpm -qlp",
    ))
    .lines()
    .filter(|p| !rpm_generated(p))
    .map(String::from)
    .collect();
    let expected = expected_paths(libdir.trim());
    let missing: Vec<_> = expected.difference(&listed).collect();
    let extra: Vec<_> = listed.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "rpm -qlp: missing {missing:?}, unexpected {extra:?}"
    );

    // Every ELF file of the payload is aarch64, and the programs are there.
    let files = payload();
    let mut elf = BTreeSet::new();
    for (path, data) in files {
        if elf_header(data).is_some() {
            assert_aarch64(path, data);
            elf.insert(path.clone());
        }
    }
    for must in [
        "/usr/bin/gala-gopher",
        "/usr/bin/gopher-ctl",
        "/usr/bin/gala-probe",
    ]
    .into_iter()
    .map(String::from)
    .chain(
        packaging_list()
            .into_iter()
            .filter(|p| p.kind != "script")
            .map(|p| format!("/opt/gala-gopher/extend_probes/{}", p.program)),
    ) {
        assert!(
            elf.contains(&must),
            "{must} is no ELF file of the payload: {elf:?}"
        );
    }
    let (_, archive) = files
        .iter()
        .find(|(p, _)| p.ends_with("/libgala_probe.a"))
        .expect("libgala_probe.a in the payload");
    for (name, data) in ar_members(archive) {
        if elf_header(data).is_some() {
            assert_aarch64(&format!("libgala_probe.a({name})"), data);
        }
    }
    // rpm's dependencies name aarch64's libc: its first symbol version is GLIBC_2.17, where
    // x86_64's is GLIBC_2.2.5.
    let requires = stdout(&run(
        Command::new(&rpm).args(["-qp", "--requires"]).arg(package),
        "rpm -qp --requires",
    ));
    assert!(
        requires.contains("libc.so.6(GLIBC_2.17)(64bit)") && !requires.contains("GLIBC_2.2.5"),
        "requires: {requires}"
    );
}

#[test]
fn the_probes_embed_bpf_objects_built_for_arm64() {
    let probes = ebpf_probes();
    assert!(probes.len() >= 4, "eBPF probes: {probes:?}");
    // Each object's BTF carries the `struct pt_regs` of the vmlinux.h it was compiled with:
    // arm64's (a `struct user_pt_regs` inside, `syscallno`), not x86's (`orig_ax`).
    for program in &probes {
        let path = format!("/opt/gala-gopher/extend_probes/{program}");
        let (_, binary) = payload()
            .iter()
            .find(|(p, _)| p.ends_with(&path))
            .unwrap_or_else(|| panic!("{path} is not in the payload"));
        let objects = embedded_bpf_objects(binary);
        assert!(!objects.is_empty(), "{program}: no embedded BPF object");
        for object in objects {
            let has = |name: &[u8]| memchr::memmem::find(object, name).is_some();
            assert!(
                has(b"user_pt_regs") && has(b"syscallno"),
                "{program}: a BPF object without arm64's pt_regs"
            );
            assert!(
                !has(b"orig_ax"),
                "{program}: a BPF object with x86's pt_regs"
            );
        }
    }
    // The two headers differ where it matters.
    let arm64 = fs::read_to_string(repo().join("probes/ebpf/include/arm64/vmlinux.h"))
        .expect("arm64/vmlinux.h");
    assert!(arm64.contains("struct user_pt_regs {") && arm64.contains("\ts32 syscallno;"));
    assert!(!arm64.contains("orig_ax;"));
    let x86 = fs::read_to_string(repo().join("probes/ebpf/include/x86/vmlinux.h"))
        .expect("x86/vmlinux.h");
    assert!(x86.contains("orig_ax;") && !x86.contains("syscallno;"));
}

#[test]
fn build_sh_check_target_installs_the_cross_toolchain_idempotently() {
    for round in 0..2 {
        let out = run(
            Command::new(repo().join("build.sh"))
                .args(["--check", "--target", TRIPLE])
                .current_dir(repo()),
            "build.sh --check --target",
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "cross build for {TRIPLE} ready (aarch64-linux-gnu-gcc)"
            )),
            "{err}"
        );
        if round == 1 {
            assert!(
                !err.contains(" install ") && !err.contains("rustup target add"),
                "the second --check --target installed something: {err}"
            );
        }
    }
    tool("aarch64-linux-gnu-gcc").unwrap_or_else(|e| panic!("{e}"));
    tool("aarch64-linux-gnu-g++").unwrap_or_else(|e| panic!("{e}"));
}

/// The ELF and ar readers read what they should: this test binary is an ELF file of the host,
/// a hand-made archive lists its members. (The cpio reader must find every program in the
/// RPM's payload, above.)
#[test]
fn the_elf_ar_and_cpio_readers_read_known_files() {
    let me = fs::read(std::env::current_exe().expect("exe")).expect("read exe");
    let header = elf_header(&me).expect("an ELF file");
    assert!(header.class64 && header.little);
    let host = if cfg!(target_arch = "aarch64") {
        EM_AARCH64
    } else {
        62
    };
    assert_eq!(header.machine, host);
    assert!(elf_header(b"#!/bin/sh\n").is_none());

    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("a.o"), dir.path().join("b.txt"));
    fs::write(&a, &me[..64]).expect("write");
    fs::write(&b, b"hello").expect("write");
    let ar = dir.path().join("x.a");
    run(
        Command::new("ar").arg("rcS").arg(&ar).arg(&a).arg(&b),
        "ar rcS",
    );
    let archive = fs::read(&ar).expect("read x.a");
    let members = ar_members(&archive);
    let names: Vec<&str> = members.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["a.o/", "b.txt/"]);
    assert_eq!(members[1].1, b"hello");
    assert_eq!(elf_header(members[0].1), Some(header));
}
