#!/usr/bin/env bash
# Builds gala-gopher, as the original's build.sh:
#
#   ./build.sh --check            install the build dependencies (dnf/yum on openEuler, apt on
#                                 Debian); non-interactive, installs only what is missing
#   ./build.sh --check [--target T]
#                                 ... and what a cross build for target T needs (rustup target,
#                                 cross gcc/g++ and libc, the tools to build libelf from source)
#   ./build.sh --release          build the daemon, gopher-ctl, gala-probe, the C SDK and the
#                                 probes in ${CARGO_TARGET_DIR:-target}/release (the default)
#   ./build.sh --debug            the same with debug info and checks, in .../debug
#   ./build.sh --clean            remove the build output (cargo clean, the C probes)
#   ./build.sh --package [DIR]    the source tarball gala-gopher-<version>.tar.gz and the vendored
#                                 crates gala-gopher-<version>-vendor.tar.gz (cargo vendor) for an
#                                 offline RPM build, in DIR (default ${CARGO_TARGET_DIR:-target}/package);
#                                 <version> is the package's, source_version in gala-gopher.spec
#
# Options of --release and --debug:
#   --frozen                      build offline from Cargo.lock and vendored crates (the RPM build)
#   --without NAMES               leave out probes of probes/packaging.list (comma- or space-separated)
#   --target TRIPLE               cross-build for TRIPLE (aarch64-unknown-linux-gnu) into
#                                 .../TRIPLE/release; build.sh sets the cross compilers itself
#
# Then ./install.sh (see its --help) installs what was built; the RPM: docs/packaging.md.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
NAME=gala-gopher

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }

usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; }

# The package version (`%global source_version` of the spec), which names the tarballs. It
# continues the C gala-gopher's versions (docs/packaging.md).
version() {
    sed -n 's/^%global *source_version *\([^ ]*\) *$/\1/p' $NAME.spec | head -n1
}

# The crates' version (version in [workspace.package]), which `gala-gopher -v` prints.
crate_version() {
    sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n1
}

# Rust version the workspace needs (rust-version in Cargo.toml).
rust_version() {
    sed -n '/^\[workspace.package\]/,/^\[/s/^rust-version *= *"\(.*\)"/\1/p' Cargo.toml | head -n1
}

# Whether version $1 >= version $2 (dotted numbers).
version_at_least() {
    [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]
}

# Installs the packages of the Debian list $1 or the openEuler list $2 that are missing.
pkg_install() {
    local debian=$1 openeuler=$2 missing=() p
    if command -v dpkg-query >/dev/null && command -v apt-get >/dev/null; then
        for p in $debian; do
            dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
        done
        [ ${#missing[@]} -eq 0 ] && return 0
        log "apt-get install ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
    elif command -v dnf >/dev/null || command -v yum >/dev/null; then
        for p in $openeuler; do
            rpm -q --whatprovides "$p" >/dev/null 2>&1 || missing+=("$p")
        done
        [ ${#missing[@]} -eq 0 ] && return 0
        local pm; pm=$(command -v dnf || command -v yum)
        log "$pm install ${missing[*]}"
        "$pm" install -y "${missing[@]}" </dev/null
    else
        die "no apt-get, dnf or yum: install by hand: $debian"
    fi
}

# The host's target triple (rustc's), against which --target is compared.
host_triple() { rustc -vV | sed -n 's/^host: //p'; }

# Prefix of the GNU cross tools for target triple $1 (aarch64-linux-gnu-gcc, ...).
cross_prefix() {
    case $1 in
        aarch64-unknown-linux-gnu) echo aarch64-linux-gnu ;;
        x86_64-unknown-linux-gnu) echo x86_64-linux-gnu ;;
        *) die "no cross toolchain known for target $1 (known: aarch64-unknown-linux-gnu, x86_64-unknown-linux-gnu)" ;;
    esac
}

# Cargo options of a cross build; set by cross_env.
CROSS_CARGO=()

# Sets up a build for target triple $1: the linker, C/C++ compilers and archiver cargo, cc-rs
# and cmake-rs use for it (unless already set), and libelf/zlib built from source for the
# target (gala-ebpf's `vendored`), since no -dev packages of the target are installed. Nothing
# is set for the host's own triple, so the native build is unchanged.
cross_env() {
    local triple=$1 prefix var
    [ "$triple" = "$(host_triple)" ] && return 0
    prefix=$(cross_prefix "$triple")
    command -v "$prefix-gcc" >/dev/null || die "$prefix-gcc missing: run ./build.sh --check --target $triple"
    var=${triple//-/_}
    export "CARGO_TARGET_${var^^}_LINKER=$(printenv "CARGO_TARGET_${var^^}_LINKER" || echo "$prefix-gcc")"
    export "CC_$var=$(printenv "CC_$var" || echo "$prefix-gcc")"
    export "CXX_$var=$(printenv "CXX_$var" || echo "$prefix-g++")"
    export "AR_$var=$(printenv "AR_$var" || echo "$prefix-ar")"
    CROSS_CARGO=(--features gala-ebpf/vendored)
}

# What a cross build for target triple $1 needs: the Rust standard library of the target, a
# cross gcc/g++ with the target's libc, and the tools libbpf-sys uses to build libelf.
check_cross() {
    local triple=$1
    [ "$triple" = "$(host_triple)" ] && return 0
    cross_prefix "$triple" >/dev/null
    if [ -d "$(rustc --print sysroot)/lib/rustlib/$triple" ]; then
        :
    elif command -v rustup >/dev/null; then
        log "rustup target add $triple"
        rustup target add "$triple"
    else
        die "the Rust standard library for $triple is missing and there is no rustup to add it"
    fi
    # libbpf-sys `vendored-libelf` runs autoreconf and configure on elfutils.
    pkg_install "autoconf automake autopoint libtool flex bison gawk" \
        "autoconf automake gettext-devel libtool flex bison gawk"
    case $triple in
        aarch64-*)
            if command -v apt-get >/dev/null; then
                pkg_install "gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross" ""
            elif ! command -v aarch64-linux-gnu-gcc >/dev/null; then
                # No cross compiler with an aarch64 glibc is known to be packaged for openEuler
                # (not tried): its aarch64 RPMs are built natively (Kunpeng, the build service).
                die "no aarch64-linux-gnu-gcc: on openEuler build natively on an aarch64 host (./build.sh --release), or install a cross toolchain with glibc (e.g. from a Linaro/Arm GNU Toolchain release) and put aarch64-linux-gnu-gcc on PATH"
            fi
            ;;
        x86_64-*)
            pkg_install "gcc-x86-64-linux-gnu g++-x86-64-linux-gnu libc6-dev-amd64-cross" "gcc-x86_64-linux-gnu"
            ;;
    esac
    log "cross build for $triple ready ($(cross_prefix "$triple")-gcc)"
}

cmd_check() {
    local target=""
    while [ $# -gt 0 ]; do
        case $1 in
            --target) target=${2?--target needs a target triple}; shift 2 ;;
            *) die "unknown option $1 (see --help)" ;;
        esac
    done
    # gcc: the C parts of crates (ring) and the C probes; make: the C probes.
    pkg_install "gcc make pkg-config ca-certificates tar gzip" "gcc make pkgconf-pkg-config ca-certificates tar gzip"
    # cmake and g++: the bundled librdkafka of the Kafka output (rdkafka-sys, cmake-build).
    pkg_install "cmake g++" "cmake gcc-c++"
    if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    command -v cargo >/dev/null || pkg_install "cargo rustc" "cargo rust"
    local need have
    need=$(rust_version)
    have=$(rustc --version | awk '{print $2}')
    version_at_least "${have%%-*}" "$need" ||
        die "rustc $have is older than the $need this workspace needs (rust-version in Cargo.toml); install a newer Rust (rustup) and run again"
    log "build dependencies present (rustc $have)"
    [ -z "$target" ] || check_cross "$target"
}

# build PROFILE [--frozen] [--without NAMES]
cmd_build() {
    local profile=$1; shift
    local frozen=() without="" target=""
    while [ $# -gt 0 ]; do
        case $1 in
            --frozen) frozen=(--offline --frozen); shift ;;
            --target) target=${2?--target needs a target triple}; shift 2 ;;
            --without) without="$without ${2?--without needs probe names}"; shift 2 ;;
            *) die "unknown option $1 (see --help)" ;;
        esac
    done
    without=" ${without//,/ } "
    local cargo_flags=() out=$TARGET_DIR cflags="-O0 -g" cc=()
    if [ -n "$target" ]; then
        cross_env "$target"
        cargo_flags+=(--target "$target" "${CROSS_CARGO[@]}")
        out=$out/$target
        local var=${target//-/_}
        [ "$target" = "$(host_triple)" ] || cc=(CC="$(printenv "CC_$var")")
    fi
    if [ "$profile" = release ]; then
        cargo_flags+=(--release)
        out=$out/release
        cflags="-O2 -g"
    else
        out=$out/debug
    fi
    # Probes of the list: cargo packages to leave out, C probes to build afterwards.
    local excludes=() make_dirs=() name kind dir
    while read -r name kind dir _; do
        case $name in '' | '#'*) continue ;; esac
        if [[ $without == *" $name "* ]]; then
            if [ "$kind" = cargo ]; then
                excludes+=(--exclude "$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$dir/Cargo.toml" | head -n1)")
            fi
            continue
        fi
        [ "$kind" = make ] && make_dirs+=("$dir")
    done < probes/packaging.list
    # Everything of the workspace but the end-to-end tests (and their test probes).
    log "cargo build ${cargo_flags[*]} ${frozen[*]} --workspace --exclude gala-e2e ${excludes[*]}"
    cargo build "${cargo_flags[@]}" "${frozen[@]}" --workspace --exclude gala-e2e "${excludes[@]}"
    for dir in "${make_dirs[@]}"; do
        log "make -C $dir (against the C SDK of $out)"
        # CFLAGS from the environment (the RPM build's), to which the Makefile adds its own.
        CFLAGS="${CFLAGS:-$cflags}" make -s -C "$dir" "${cc[@]}" SDK_INC="$ROOT/probe-sdk/c/include" SDK_LIB="$out" \
            BUILD_DIR="$out/extend_probes"
    done
    log "built into $out; install with ./install.sh$([ "$out" = "$TARGET_DIR/release" ] || echo " --bin-dir $out")"
}

cmd_clean() {
    log "cargo clean (${TARGET_DIR})"
    cargo clean
    local name kind dir
    while read -r name kind dir _; do
        case $name in '' | '#'*) continue ;; esac
        [ "$kind" = make ] && make -s -C "$dir" clean
    done < probes/packaging.list
    return 0
}

# Lists the files of the source tree: what git tracks or would track (untracked but not
# ignored), or, outside a git work tree (an unpacked tarball), every file but target/ and .git/.
source_files() {
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
            [ -e "$f" ] && printf '%s\0' "$f"
        done
    else
        find . \( -path ./target -o -path ./.git -o -path ./vendor -o -path ./.cargo \) -prune -o -type f -printf '%P\0'
    fi
}

# The files of the source tree (source_files) preceded by every directory that holds one, so
# that unpacking restores the directories' times as well: a directory unpacked as new would
# make cargo rerun the build scripts that watch it, and a second build of the same tarball
# (the packaging suite's upgrade test) rebuild half the workspace.
source_entries() {
    local files
    files=$(mktemp)
    source_files > "$files"
    tr '\0' '\n' < "$files" | sed -n 's,/[^/]*$,,p' | awk -F/ '{ p = $1; print p; for (i = 2; i <= NF; i++) { p = p "/" $i; print p } }' | sort -u | tr '\n' '\0'
    cat "$files"
    rm -f "$files"
}

cmd_package() {
    local dest=${1:-$TARGET_DIR/package} v
    v=$(version)
    [[ $v =~ ^[0-9]+(\.[0-9]+)*$ ]] || die "$NAME.spec: no '%global source_version <dotted numbers>' line (found '$v')"
    [[ $v == "$(crate_version)" ]] || die "$NAME.spec says version $v, Cargo.toml $(crate_version): set both"
    mkdir -p "$dest"
    dest=$(cd "$dest" && pwd)
    local src=$dest/$NAME-$v.tar.gz vendor=$dest/$NAME-$v-vendor.tar.gz
    local tar_opts=(--owner=0 --group=0 --numeric-owner --sort=name)

    log "source tarball $src"
    source_entries | tar "${tar_opts[@]}" --no-recursion --null -T - --transform "s,^,$NAME-$v/," -czf "$src.tmp"
    mv "$src.tmp" "$src"

    local tmp
    tmp=$(mktemp -d)
    # shellcheck disable=SC2064
    trap "rm -rf '$tmp'" EXIT
    log "cargo vendor (all crates of Cargo.lock)"
    cargo vendor --quiet --locked --versioned-dirs "$tmp/vendor" >/dev/null
    # Windows-only crates carry prebuilt import libraries (about 200 MB) that no Linux build
    # reads; drop them, and their entries in the checksum file cargo verifies.
    local d
    for d in "$tmp"/vendor/winapi-*-pc-windows-gnu-* "$tmp"/vendor/windows_*_gnu-* \
        "$tmp"/vendor/windows_*_gnullvm-* "$tmp"/vendor/windows_*_msvc-*; do
        [ -d "$d/lib" ] || continue
        rm -rf "${d:?}/lib"
        sed -i -E 's#"lib/[^"]*":"[0-9a-f]+",?##g; s#,\}#}#g' "$d/.cargo-checksum.json"
    done
    log "vendored crates $vendor"
    tar "${tar_opts[@]}" -C "$tmp" -czf "$vendor.tmp" vendor
    mv "$vendor.tmp" "$vendor"
    printf '%s\n%s\n' "$src" "$vendor"
}

case "${1:-}" in
    --check) shift; cmd_check "$@" ;;
    --release | "") shift || true; cmd_build release "$@" ;;
    --debug) shift; cmd_build debug "$@" ;;
    --clean) cmd_clean ;;
    --package) cmd_package "${2:-}" ;;
    -h | --help) usage ;;
    *) usage >&2; exit 2 ;;
esac
