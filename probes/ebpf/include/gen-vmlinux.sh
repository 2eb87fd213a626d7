#!/usr/bin/env bash
# Regenerates the vendored kernel type header of one BPF target architecture:
#
#   probes/ebpf/include/gen-vmlinux.sh x86     x86/vmlinux.h   from this host's BTF
#                                              (/sys/kernel/btf/vmlinux)
#   probes/ebpf/include/gen-vmlinux.sh arm64   arm64/vmlinux.h from the BTF inside Debian's
#                                              newest linux-image-6.18.*-arm64 (trixie-backports;
#                                              SUITE=... SERIES=... for another)
#   probes/ebpf/include/gen-vmlinux.sh arm64 FILE
#                                              ... from FILE: a raw BTF blob, a kernel Image
#                                              (gzip'd or not) or a .deb holding one
#
# The arm64 kernel comes from the suite's arm64 package index, fetched into a scratch directory
# (never the host's apt configuration): InRelease checked with the Debian archive keyring
# (debian-archive-keyring, gpgv), Packages.xz and the .deb checked against their SHA256 sums.
# The BTF is the kernel's `.BTF` section; an arm64 Image is a raw binary without section
# headers, so the blob is found by its header (magic 0xeB9F, version 1, hdr_len 24) and cut to
# hdr_len + max(type_off + type_len, str_off + str_len). `bpftool btf dump ... format c` writes
# the header; the first line names the kernel it came from.
#
# Needs curl, gpgv, xz, dpkg-deb, python3 and bpftool (Debian: bpftool).
set -euo pipefail
cd "$(dirname "$0")"

arch=${1:?usage: gen-vmlinux.sh x86|arm64 [FILE]}
src=${2:-}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# The kernel series of the arm64 header: the one of x86/vmlinux.h (6.18), so that the BPF
# sources see the same kernel types on both (CO-RE adapts them to older kernels at load time).
suite=${SUITE:-trixie-backports}
series=${SERIES:-6.18}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'gen-vmlinux.sh: %s\n' "$*" >&2; exit 1; }

command -v bpftool >/dev/null || die "bpftool missing (Debian: apt-get install bpftool)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Downloads the newest linux-image-<SERIES>.N+debN-<debian arch> of $SUITE into $tmp; prints
# its path.
fetch_kernel_deb() {
    local debarch=$1 pkg filename sha
    log "$suite InRelease, checked with $keyring"
    curl -sSf -o "$tmp/InRelease" "$mirror/dists/$suite/InRelease"
    gpgv --keyring "$keyring" "$tmp/InRelease" 2>/dev/null || die "InRelease: bad signature"
    sha=$(awk -v f="main/binary-$debarch/Packages.xz" '$3 == f && length($1) == 64 { print $1 }' "$tmp/InRelease")
    [ -n "$sha" ] || die "no main/binary-$debarch/Packages.xz in InRelease"
    curl -sSf -o "$tmp/Packages.xz" "$mirror/dists/$suite/main/binary-$debarch/Packages.xz"
    echo "$sha  $tmp/Packages.xz" | sha256sum -c --quiet
    # "version package filename sha256" of each linux-image-<series>.N+debN-<arch> (not the
    # cloud or rt flavours), the newest version last.
    read -r _ pkg filename sha < <(xz -dc "$tmp/Packages.xz" | awk -v RS= -v a="$debarch" -v s="$series" '
        BEGIN { gsub(/\./, "\\.", s) }
        $0 ~ ("^Package: linux-image-" s "\\.[0-9]+\\+deb[0-9]+-" a "\n") {
            match($0, /^Package: [^\n]+/); p = substr($0, 10, RLENGTH - 9)
            match($0, /\nVersion: [^\n]+/); v = substr($0, RSTART + 10, RLENGTH - 10)
            match($0, /\nFilename: [^\n]+/); f = substr($0, RSTART + 11, RLENGTH - 11)
            match($0, /\nSHA256: [^\n]+/); h = substr($0, RSTART + 9, RLENGTH - 9)
            print v, p, f, h
        }' | sort -V | tail -n1)
    [ -n "$pkg" ] || die "no linux-image-$series.*-$debarch in $suite"
    log "$pkg: $mirror/$filename"
    curl -sSf -o "$tmp/kernel.deb" "$mirror/$filename"
    echo "$sha  $tmp/kernel.deb" | sha256sum -c --quiet
    echo "$tmp/kernel.deb"
}

# Writes the BTF blob of kernel image/deb/BTF file $1 to $2; prints where it came from.
extract_btf() {
    local in=$1 out=$2 image
    case $(file -b "$in") in
        *"Debian binary package"*)
            mkdir -p "$tmp/deb"
            dpkg-deb -x "$in" "$tmp/deb"
            image=$(ls "$tmp"/deb/boot/vmlinuz-*)
            echo "$(basename "$image") of $(dpkg-deb -f "$in" Package) $(dpkg-deb -f "$in" Version)"
            ;;
        *) image=$in; basename "$in" ;;
    esac
    # The Image, gunzipped when it is (Debian's arm64 vmlinuz is a raw Image or gzip'd one).
    if gzip -t "$image" 2>/dev/null; then
        gzip -dc "$image" >"$tmp/Image"
        image=$tmp/Image
    fi
    python3 - "$image" "$out" <<'EOF'
import struct, sys
data = open(sys.argv[1], "rb").read()
best = None
start = 0
# magic 0xeB9F (little-endian), version 1, flags 0, hdr_len 24
sig = b"\x9f\xeb\x01\x00\x18\x00\x00\x00"
while (i := data.find(sig, start)) >= 0:
    start = i + 1
    hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<5I", data, i + 4)
    end = hdr_len + max(type_off + type_len, str_off + str_len)
    if type_off != 0 or str_off != type_len or i + end > len(data):
        continue
    if best is None or end > best[1]:
        best = (i, end)
if best is None:
    sys.exit("no BTF blob found in " + sys.argv[1])
open(sys.argv[2], "wb").write(data[best[0]:best[0] + best[1]])
EOF
}

case $arch in
    x86)
        [ -n "$src" ] || src=/sys/kernel/btf/vmlinux
        from="$src of $(uname -r) ($(uname -m))"
        cp "$src" "$tmp/btf"
        ;;
    arm64)
        [ -n "$src" ] || src=$(fetch_kernel_deb arm64)
        from=$(extract_btf "$src" "$tmp/btf")
        ;;
    *) die "unknown architecture $arch (x86, arm64)" ;;
esac
mkdir -p "$arch"
{
    printf '/* Generated by probes/ebpf/include/gen-vmlinux.sh %s from the BTF of %s. */\n' "$arch" "$from"
    bpftool btf dump file "$tmp/btf" format c
} >"$arch/vmlinux.h.tmp"
mv "$arch/vmlinux.h.tmp" "$arch/vmlinux.h"
log "$arch/vmlinux.h: $(wc -l <"$arch/vmlinux.h") lines, from $from"
