#!/usr/bin/env bash
# Fetches a Debian kernel for the qemu guests of the kernel matrix (docs/kernels.md):
#
#   tests/kernels/fetch.sh VERSION [ARCH]     VERSION: 5.10 or 6.1; ARCH: amd64 (default) or arm64
#
# into ${GALA_KERNELS_DIR:-target/kernels}/<VERSION>-<ARCH>/:
#   vmlinuz        the kernel (arm64: the uncompressed Image qemu boots)
#   lib/modules/   its modules (lib/modules/<release> of the .deb, with depmod's index)
#   release        its `uname -r`
#   config         its build configuration
#   btf            its vmlinux BTF, cut out of the image (for checking hooks: bpftool btf dump)
#   busybox        a static busybox of ARCH, for the guest's first stage
# Idempotent: a kernel already there is kept. Packages come through apt with a configuration of
# its own under the same directory (sources, lists, cache), never the host's: bullseye for 5.10,
# bookworm for 6.1, both architectures, signatures checked with Debian's archive keyring.
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION=${1:?usage: fetch.sh VERSION [ARCH]}
ARCH=${2:-amd64}
TOP=${GALA_KERNELS_DIR:-$PWD/target/kernels}
DEST=$TOP/$VERSION-$ARCH

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'fetch.sh: %s\n' "$*" >&2; exit 1; }

case $VERSION in
    5.10) SUITE=bullseye ;;
    6.1) SUITE=bookworm ;;
    *) die "no Debian suite known for kernel $VERSION (5.10, 6.1)" ;;
esac
case $ARCH in amd64 | arm64) ;; *) die "architecture $ARCH: amd64 or arm64" ;; esac

[ -s "$DEST/release" ] && [ -s "$DEST/btf" ] && [ -x "$DEST/busybox" ] && exit 0

APT=$TOP/apt
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
[ -r "$KEYRING" ] || die "$KEYRING is missing (package debian-archive-keyring)"
mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$APT/debs"
cat >"$APT/sources.list" <<EOF
deb [arch=amd64,arm64 signed-by=$KEYRING] http://deb.debian.org/debian bullseye main
deb [arch=amd64,arm64 signed-by=$KEYRING] http://deb.debian.org/debian bookworm main
EOF
apt_opts=(
    -o "Dir::Etc::SourceList=$APT/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT/cache" -o Dir::State::status=/dev/null
    -o APT::Architecture=amd64 -o APT::Architectures::=amd64 -o APT::Architectures::=arm64
    -o Debug::NoLocking=1 -o APT::Sandbox::User=root -o APT::Get::List-Cleanup=0 -q
)
if [ -z "$(find "$APT/lists" -maxdepth 1 -name "*${SUITE}_main_binary-${ARCH}_Packages*" -mmin -1440 2>/dev/null)" ]; then
    log "apt-get update (own configuration, $APT)"
    apt-get "${apt_opts[@]}" update >&2
fi

# The newest linux-image-<VERSION>.0-N-<ARCH> of the suite: the flavour with the most builds.
pkg=$(apt-cache "${apt_opts[@]}" pkgnames "linux-image-$VERSION.0-" |
    grep -E "^linux-image-$VERSION\.0-[0-9]+-$ARCH\$" | sort -V | tail -n1)
[ -n "$pkg" ] || die "no linux-image-$VERSION.0-*-$ARCH in $SUITE"
log "downloading $pkg and busybox-static:$ARCH"
(cd "$APT/debs" && apt-get "${apt_opts[@]}" download "$pkg:$ARCH" "busybox-static:$ARCH/bookworm" >&2)

rm -rf "$DEST.tmp" && mkdir -p "$DEST.tmp/x"
newest() { find "$APT/debs" -name "$1" -printf '%T@ %p\n' | sort -n | tail -n1 | cut -d' ' -f2-; }
deb=$(newest "${pkg}_*_$ARCH.deb")
dpkg-deb -x "$deb" "$DEST.tmp/x"
release=$(ls "$DEST.tmp/x/lib/modules")
image=$(ls "$DEST.tmp/x/boot/vmlinuz-$release")
if [ "$ARCH" = arm64 ]; then
    # qemu-system-aarch64 boots the raw Image; Debian ships it gzip'd.
    gzip -dc "$image" >"$DEST.tmp/vmlinuz"
else
    cp "$image" "$DEST.tmp/vmlinuz"
fi
mkdir -p "$DEST.tmp/lib/modules"
mv "$DEST.tmp/x/lib/modules/$release" "$DEST.tmp/lib/modules/"
depmod -b "$DEST.tmp" "$release"
cp "$DEST.tmp/x/boot/config-$release" "$DEST.tmp/config"
dpkg-deb -x "$(newest "busybox-static_*_$ARCH.deb")" "$DEST.tmp/bb"
mv "$DEST.tmp/bb/bin/busybox" "$DEST.tmp/busybox"
python3 tests/kernels/btf-cut.py "$DEST.tmp/x/boot/vmlinuz-$release" "$DEST.tmp/btf" ||
    python3 tests/kernels/btf-cut.py "$DEST.tmp/vmlinuz" "$DEST.tmp/btf"
echo "$release" >"$DEST.tmp/release"
rm -rf "$DEST.tmp/x" "$DEST.tmp/bb" "$DEST"
mv "$DEST.tmp" "$DEST"
log "kernel $release ($ARCH) in $DEST"
