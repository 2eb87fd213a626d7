//! Build script of the C SDK: gives `libgala_probe.so` the SONAME `libgala_probe.so.1`, so a C
//! probe linked with `-lgala_probe` records that name (`NEEDED libgala_probe.so.1`) and the
//! package can ship `libgala_probe.so.1` with the `libgala_probe.so` development symlink. The
//! `.1` changes when the C ABI of `gala_probe.h` changes incompatibly (docs/packaging.md).

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libgala_probe.so.1");
    println!("cargo:rerun-if-changed=build.rs");
}
