#!/usr/bin/env bash
# Builds gala-gopher, as the original's build.sh:
#
#   ./build.sh --check            install the build dependencies (dnf/yum on openEuler, apt on
#                                 Debian); non-interactive, installs only what is missing
#   ./build.sh --release          build the daemon, gopher-ctl, gala-probe, the C SDK and the
#                                 probes in ${CARGO_TARGET_DIR:-target}/release (the default)
#   ./build.sh --debug            the same with debug info and checks, in .../debug
#   ./build.sh --clean            remove the build output (cargo clean, the C probes)
#   ./build.sh --package [DIR]    the source tarball gala-gopher-<version>.tar.gz and the vendored
#                                 crates gala-gopher-<version>-vendor.tar.gz (cargo vendor) for an
#                                 offline RPM build, in DIR (default ${CARGO_TARGET_DIR:-target}/package)
#
# Options of --release and --debug:
#   --frozen                      build offline from Cargo.lock and vendored crates (the RPM build)
#   --without NAMES               leave out probes of probes/packaging.list (comma- or space-separated)
#
# Then ./install.sh (see its --help) installs what was built; the RPM: docs/packaging.md.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
NAME=gala-gopher

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }

usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; }

# The workspace version (Cargo.toml [workspace.package]), which is the RPM's Version too.
version() {
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

cmd_check() {
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
}

# build PROFILE [--frozen] [--without NAMES]
cmd_build() {
    local profile=$1; shift
    local frozen=() without=""
    while [ $# -gt 0 ]; do
        case $1 in
            --frozen) frozen=(--offline --frozen); shift ;;
            --without) without="$without ${2?--without needs probe names}"; shift 2 ;;
            *) die "unknown option $1 (see --help)" ;;
        esac
    done
    without=" ${without//,/ } "
    local cargo_flags=() out=$TARGET_DIR/debug cflags="-O0 -g"
    if [ "$profile" = release ]; then
        cargo_flags=(--release)
        out=$TARGET_DIR/release
        cflags="-O2 -g"
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
        CFLAGS="${CFLAGS:-$cflags}" make -s -C "$dir" SDK_INC="$ROOT/probe-sdk/c/include" SDK_LIB="$out" \
            BUILD_DIR="$out/extend_probes"
    done
    log "built into $out; install with ./install.sh$([ "$profile" = release ] || echo " --bin-dir $out")"
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

cmd_package() {
    local dest=${1:-$TARGET_DIR/package} v
    v=$(version)
    [ -n "$v" ] || die "no version in Cargo.toml [workspace.package]"
    local spec_version
    spec_version=$(sed -n 's/^Version: *//p' $NAME.spec)
    [ "$spec_version" = "$v" ] || die "$NAME.spec has Version $spec_version, Cargo.toml $v: make them equal"
    mkdir -p "$dest"
    dest=$(cd "$dest" && pwd)
    local src=$dest/$NAME-$v.tar.gz vendor=$dest/$NAME-$v-vendor.tar.gz
    local tar_opts=(--owner=0 --group=0 --numeric-owner --sort=name)

    log "source tarball $src"
    source_files | tar "${tar_opts[@]}" --null -T - --transform "s,^,$NAME-$v/," -czf "$src.tmp"
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
    --check) cmd_check ;;
    --release | "") shift || true; cmd_build release "$@" ;;
    --debug) shift; cmd_build debug "$@" ;;
    --clean) cmd_clean ;;
    --package) cmd_package "${2:-}" ;;
    -h | --help) usage ;;
    *) usage >&2; exit 2 ;;
esac
