#!/usr/bin/env bash
# Installs a built gala-gopher (./build.sh --release) as on openEuler:
#
#   ./install.sh [--bin-dir DIR] [--libdir DIR] [--without NAMES] [DESTDIR]
#
#   DESTDIR          root the files go under (default /): DESTDIR/usr/bin, DESTDIR/opt/gala-gopher, ...
#   --bin-dir DIR    where the built binaries and the C SDK are (default: the release build,
#                    ${CARGO_TARGET_DIR:-target}/release)
#   --libdir DIR     directory of libgala_probe.a and .so (default /usr/lib64 on 64-bit machines,
#                    else /usr/lib)
#   --without NAMES  probes of probes/packaging.list to leave out (comma- or space-separated)
#
# What goes where: the daemon, gopher-ctl and gala-probe to /usr/bin; probes to
# /opt/gala-gopher/extend_probes/ (with their .meta files), the built-in probes' .meta files to
# /opt/gala-gopher/meta/; gala-gopher.conf, probes.init and gala-gopher-custom.json to
# /etc/gala-gopher/; the systemd unit; the docs and the LICENSE; the SDKs (gala_probe.h,
# libgala_probe.a, libgala_probe.so.1 with the libgala_probe.so symlink, the Python module in
# /opt/gala-gopher/lib/python/). Programs are 0550 and config files 0640, as the C package's.
# The RPM's file list is this script's output. docs/packaging.md explains the choices.
#
# A config file that exists and differs from the shipped one (edited, or rewritten by the
# daemon, as probes.init is at every stop) is never overwritten: it is kept and the shipped
# version is written beside it as <file>.new.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)

log() { printf 'install.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

default_libdir() {
    case $(uname -m) in
        x86_64 | aarch64 | ppc64* | s390x | riscv64 | loongarch64 | sw_64 | mips64*) echo /usr/lib64 ;;
        *) echo /usr/lib ;;
    esac
}

BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/release"
LIBDIR=$(default_libdir)
WITHOUT=""
DESTDIR=""
while [ $# -gt 0 ]; do
    case $1 in
        --bin-dir) BIN_DIR=${2:?--bin-dir needs a directory}; shift 2 ;;
        --libdir) LIBDIR=${2:?--libdir needs a directory}; shift 2 ;;
        --without) WITHOUT="$WITHOUT ${2?--without needs probe names}"; shift 2 ;;
        -h | --help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) [ -z "$DESTDIR" ] || die "more than one DESTDIR: $DESTDIR $1"; DESTDIR=$1; shift ;;
    esac
done
DESTDIR=${DESTDIR%/}
if [ -n "$DESTDIR" ]; then
    mkdir -p "$DESTDIR"
    DESTDIR=$(cd "$DESTDIR" && pwd)
    [ "$DESTDIR" != / ] || DESTDIR=""
fi
[ -d "$BIN_DIR" ] || die "$BIN_DIR: no such directory; run ./build.sh --release first (or give --bin-dir)"
BIN_DIR=$(cd "$BIN_DIR" && pwd)
WITHOUT=" ${WITHOUT//,/ } "

GOPHER_DIR=/opt/gala-gopher
CONF_DIR=/etc/gala-gopher
DOC_DIR=/usr/share/doc/gala-gopher
UNIT_DIR=/usr/lib/systemd/system
LICENSE_DIR=/usr/share/licenses/gala-gopher
# Modes as the C package's: programs readable and runnable by root only (and its group), config
# files (which may hold credentials) not readable by others. The REST API accepts a custom
# probe's program only at exactly 0550 and gala-gopher-custom.json only at exactly 0640.
PROGRAM_MODE=0550
CONFIG_MODE=0640

without() { [[ $WITHOUT == *" $1 "* ]]; }

# install_file MODE SOURCE TARGET: TARGET is a path inside DESTDIR.
install_file() {
    [ -f "$2" ] || die "$2 missing (built? see ./build.sh --help)"
    install -D -m "$1" "$2" "$DESTDIR$3"
}

# install_config SOURCE TARGET: as install_file $CONFIG_MODE, but an existing file that differs
# is kept.
install_config() {
    local target=$DESTDIR$2
    if [ -e "$target" ] && ! cmp -s "$1" "$target"; then
        install -m "$CONFIG_MODE" "$1" "$target.new"
        log "kept $2 (it differs from the shipped one); the shipped version is $2.new"
    else
        install -D -m "$CONFIG_MODE" "$1" "$target"
    fi
}

# Directories first, with their modes (the package owns them).
install -d -m 0755 "$DESTDIR$GOPHER_DIR" "$DESTDIR$GOPHER_DIR/meta" "$DESTDIR$GOPHER_DIR/extend_probes" \
    "$DESTDIR$GOPHER_DIR/lib" "$DESTDIR$GOPHER_DIR/lib/python" "$DESTDIR$CONF_DIR" "$DESTDIR$DOC_DIR" \
    "$DESTDIR$DOC_DIR/docs" "$DESTDIR$DOC_DIR/probe-sdk" "$DESTDIR/var/log/gala-gopher" \
    "$DESTDIR$LICENSE_DIR"

for bin in gala-gopher gopher-ctl gala-probe; do
    install_file "$PROGRAM_MODE" "$BIN_DIR/$bin" "/usr/bin/$bin"
done

install_config config/gala-gopher.conf "$CONF_DIR/gala-gopher.conf"
install_config config/probes.init "$CONF_DIR/probes.init"
install_config config/gala-gopher-custom.json "$CONF_DIR/gala-gopher-custom.json"

install_file 0644 service/gala-gopher.service "$UNIT_DIR/gala-gopher.service"

# The SDKs: the C header, the static library (a C probe linked with it depends on libc only),
# the shared library under its SONAME libgala_probe.so.1 with the development symlink
# libgala_probe.so (what `cc ... -lgala_probe` finds first), the Python module where Python
# probes look for it.
install_file 0644 probe-sdk/c/include/gala_probe.h /usr/include/gala_probe.h
install_file 0644 "$BIN_DIR/libgala_probe.a" "$LIBDIR/libgala_probe.a"
install_file 0755 "$BIN_DIR/libgala_probe.so" "$LIBDIR/libgala_probe.so.1"
ln -sfn libgala_probe.so.1 "$DESTDIR$LIBDIR/libgala_probe.so"
install_file 0644 probe-sdk/python/gala_probe.py "$GOPHER_DIR/lib/python/gala_probe.py"

# Docs, in the source tree's layout so that their relative links keep working.
install_file 0644 README.md "$DOC_DIR/README.md"
install_file 0644 LICENSE "$LICENSE_DIR/LICENSE"
for doc in docs/*.md; do
    install_file 0644 "$doc" "$DOC_DIR/$doc"
done
install_file 0644 probe-sdk/API.md "$DOC_DIR/probe-sdk/API.md"

# Probes, as probes/packaging.list describes them.
without_dirs=""
while read -r name kind dir program; do
    case $name in '' | '#'*) continue ;; esac
    [ -n "$program" ] || die "probes/packaging.list: incomplete line for $name"
    if without "$name"; then
        without_dirs="$without_dirs $dir"
        continue
    fi
    case $kind in
        script)
            install_file "$PROGRAM_MODE" "$dir/$program" "$GOPHER_DIR/extend_probes/$program"
            install_file 0644 "$dir/${program%.*}.meta" "$GOPHER_DIR/extend_probes/${program%.*}.meta"
            ;;
        make)
            # Built by build.sh into $BIN_DIR/extend_probes (make builds it now if not).
            make -s -C "$dir" SDK_INC="$ROOT/probe-sdk/c/include" SDK_LIB="$BIN_DIR" BUILD_DIR="$BIN_DIR/extend_probes"
            install_file "$PROGRAM_MODE" "$BIN_DIR/extend_probes/$program" "$GOPHER_DIR/extend_probes/$program"
            install_file 0644 "$dir/$program.meta" "$GOPHER_DIR/extend_probes/$program.meta"
            ;;
        cargo) install_file "$PROGRAM_MODE" "$BIN_DIR/$program" "$GOPHER_DIR/extend_probes/$program" ;;
        *) die "probes/packaging.list: unknown kind $kind of $name" ;;
    esac
done < probes/packaging.list

# The built-in probes' tables: every .meta file under probes/ outside example/, extends/ and
# the probes' tests (probes/baseinfo/meta/*.meta, ...). They share one directory, so two files
# with the same name would silently replace each other: refuse that.
declare -A meta_seen=()
while IFS= read -r -d '' meta; do
    name=${meta##*/}
    [ -z "${meta_seen[$name]:-}" ] || die "two meta files install as meta/$name: ${meta_seen[$name]} and $meta"
    meta_seen[$name]=$meta
    skip=""
    for dir in $without_dirs; do
        [[ $meta == "$dir"/* ]] && skip=1
    done
    [ -n "$skip" ] || install_file 0644 "$meta" "$GOPHER_DIR/meta/${meta##*/}"
done < <(find probes \( -path probes/example -o -path probes/extends -o -name tests -o -name testdata \) -prune \
    -o -name '*.meta' -type f -print0 | sort -z)

# The table of the built-in opengauss_sli, which runs the pg_stat program (docs/reference/probes.md §12).
without pg_stat || install_file 0644 probes/extends/pg_stat/opengauss_sli.meta "$GOPHER_DIR/meta/opengauss_sli.meta"

log "installed into ${DESTDIR:-/}"
