//! Build-script helper of the eBPF probes. A probe's `build.rs` is one call:
//!
//! ```no_run
//! gala_ebpf_build::skeletons(&["tcp"]);
//! ```
//!
//! which compiles `src/bpf/tcp.bpf.c` with clang (CO-RE, `-target bpf`, `__TARGET_ARCH_<arch>`,
//! the vendored `vmlinux.h` of the target architecture and `gala.bpf.h` on the include path)
//! and writes the libbpf-rs skeleton `$OUT_DIR/tcp.skel.rs`, to be included with
//! [`include_skeleton!`]-style `include!(concat!(env!("OUT_DIR"), "/tcp.skel.rs"))`.

use std::path::{Path, PathBuf};

/// The directory holding `gala.bpf.h` and, per architecture, `<arch>/vmlinux.h`.
pub fn include_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("probes/ebpf")
        .join("include")
}

/// The kernel's name of cargo's target architecture: the `__TARGET_ARCH_*` macro of
/// `bpf_tracing.h` (`PT_REGS_*`) and the directory of its `vmlinux.h` (`include/<arch>/`).
fn target_arch() -> &'static str {
    match std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("aarch64") => "arm64",
        Ok("riscv64") => "riscv",
        Ok("powerpc64") => "powerpc",
        Ok("s390x") => "s390",
        Ok("loongarch64") => "loongarch",
        _ => "x86",
    }
}

/// Compiles each `src/bpf/<name>.bpf.c` of the calling crate into `$OUT_DIR/<name>.skel.rs`.
/// Panics with clang's message on a compile error: this runs in a build script.
pub fn skeletons(names: &[&str]) {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let include = include_dir();
    let arch = target_arch();
    // Kernel types differ per architecture (pt_regs above all), so each has its own header,
    // generated from a kernel of that architecture (include/gen-vmlinux.sh).
    let arch_include = include.join(arch);
    assert!(
        arch_include.join("vmlinux.h").is_file(),
        "no {}/vmlinux.h: generate it with include/gen-vmlinux.sh {arch}",
        arch_include.display()
    );
    for name in names {
        let source = PathBuf::from(format!("src/bpf/{name}.bpf.c"));
        libbpf_cargo::SkeletonBuilder::new()
            .source(&source)
            .clang_args([
                format!("-I{}", arch_include.display()),
                format!("-I{}", include.display()),
                format!("-D__TARGET_ARCH_{arch}"),
                "-Wall".to_owned(),
                "-Wno-unused-function".to_owned(),
            ])
            .build_and_generate(out.join(format!("{name}.skel.rs")))
            .unwrap_or_else(|e| panic!("compiling {}: {e:#}", source.display()));
    }
    println!("cargo:rerun-if-changed=src/bpf");
    println!("cargo:rerun-if-changed={}", include.display());
}
