#!/bin/sh
# Runs the kernel matrix's checks on the kernel it runs on (inside a guest of
# tests/kernels/guest, or on the host for the host's column):
#
#   tests/kernels/matrix.sh OUT BIN_DIR [TEST_BINARY FILTER]...
#
# 1. every eBPF probe of BIN_DIR with `--plan` (run from the repository's root): which hook each sub-item's needs got here
#    (OUT/plan.<probe>.jsonl, its log in OUT/plan.<probe>.log, exit status in .status);
# 2. each end-to-end test binary with its FILTER ("" for all of it), one test at a time
#    (OUT/tests.<binary>.log).
# OUT/kernel holds `uname -r`; OUT/seconds how long each part took. tests/kernels/matrix.py
# reads OUT. POSIX sh: it also runs on the busybox userland of the arm64 guests.
set -u
OUT=${1:?usage: matrix.sh OUT BIN_DIR [TEST_BINARY FILTER]...}
BIN=${2:?usage: matrix.sh OUT BIN_DIR [TEST_BINARY FILTER]...}
shift 2
mkdir -p "$OUT"
rm -f "$OUT"/plan.* "$OUT"/tests.* "$OUT/seconds"
uname -r >"$OUT/kernel"
uname -m >"$OUT/machine"

# The eBPF probes: the cargo probes of probes/packaging.list with BPF sources (src/bpf/).
ebpf_probes=$(awk '$2 == "cargo" {print $3, $4}' probes/packaging.list |
    while read -r dir program; do [ -d "$dir/src/bpf" ] && echo "$program"; done)
for probe in $ebpf_probes; do
    start=$(date +%s)
    "$BIN/$probe" --plan >"$OUT/plan.$probe.jsonl" 2>"$OUT/plan.$probe.log"
    echo $? >"$OUT/plan.$probe.status"
    echo "plan.$probe $(($(date +%s) - start))" >>"$OUT/seconds"
    echo "matrix: $probe --plan: exit $(cat "$OUT/plan.$probe.status"), $(wc -l <"$OUT/plan.$probe.jsonl") needs"
done

while [ $# -ge 2 ]; do
    binary=$1 filter=$2
    shift 2
    name=$(basename "$binary" | sed 's/-[0-9a-f]\{16\}$//')
    start=$(date +%s)
    echo "matrix: $name ${filter:-(all)}"
    # shellcheck disable=SC2086 # an empty filter is no argument
    "$binary" $filter --test-threads=1 2>&1 | tee "$OUT/tests.$name.log"
    echo "tests.$name $(($(date +%s) - start))" >>"$OUT/seconds"
done
exit 0
