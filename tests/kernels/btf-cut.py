#!/usr/bin/env python3
"""Cuts the vmlinux BTF out of a kernel image: `btf-cut.py IMAGE OUT`.

IMAGE is a bzImage (x86: a compressed vmlinux inside), a gzip'd arm64 Image or a raw one. The
BTF (the `.BTF` section, what the kernel serves as /sys/kernel/btf/vmlinux) is found by its
header: magic 0xeB9F, version 1, a 24-byte header, the type section at offset 0 and the string
section right after it, whose first string is the empty one. The largest such blob wins.
Exit status 1 when there is none (a kernel built without CONFIG_DEBUG_INFO_BTF).
"""

import lzma
import struct
import sys
import zlib

MAGICS = {
    b"\x1f\x8b\x08": lambda: zlib.decompressobj(31),
    b"\xfd7zXZ\x00": lzma.LZMADecompressor,
}


def images(data):
    """The image itself and every compressed stream inside it, decompressed."""
    yield data
    for magic, make in MAGICS.items():
        start = data.find(magic)
        while start >= 0:
            try:
                out = make().decompress(data[start:])
                if len(out) > 1 << 20:
                    yield out
            except (zlib.error, lzma.LZMAError, EOFError):
                pass
            start = data.find(magic, start + 1)


def btf_blobs(data):
    """Every plausible BTF blob in `data`."""
    at = data.find(b"\x9f\xeb\x01\x00")
    while at >= 0:
        hdr = data[at : at + 24]
        if len(hdr) == 24:
            _, _, _, hdr_len, type_off, type_len, str_off, str_len = struct.unpack("<HBBIIIII", hdr)
            end = at + hdr_len + str_off + str_len
            if (
                hdr_len == 24
                and type_off == 0
                and str_off == type_len
                and str_len > 0
                and end <= len(data)
                and data[at + hdr_len + str_off] == 0
            ):
                yield data[at:end]
        at = data.find(b"\x9f\xeb\x01\x00", at + 1)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: btf-cut.py IMAGE OUT")
    with open(sys.argv[1], "rb") as f:
        data = f.read()
    best = max((b for img in images(data) for b in btf_blobs(img)), key=len, default=None)
    if best is None:
        sys.exit(f"btf-cut.py: no BTF found in {sys.argv[1]}")
    with open(sys.argv[2], "wb") as f:
        f.write(best)
    print(f"btf-cut.py: {len(best)} bytes of BTF from {sys.argv[1]}", file=sys.stderr)


if __name__ == "__main__":
    main()
