#!/usr/bin/env bash
# Developer entry points (run as root on a fresh Debian 12 or openEuler machine):
#   ./dev.sh run    install build dependencies, build, run the daemon in the foreground
#   ./dev.sh test   install test dependencies, run the whole test suite
#   ./dev.sh bench  run the benchmarks (see docs/benchmarks.md)
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
    if ! command -v cargo >/dev/null; then
        [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
    fi
    if ! command -v cargo >/dev/null; then
        pkg_install "cargo rustc" "cargo rust"
    fi
}

install_test_deps() {
    install_build_deps
    # promtool and the Prometheus server for the end-to-end tests.
    pkg_install "prometheus" "prometheus2"
    # PostgreSQL and psycopg2 for the pg_stat probe's end-to-end test (the test runs its own
    # server; the policy-rc.d guard keeps Debian's postinst from starting the default cluster).
    pkg_install "postgresql python3-psycopg2" "postgresql-server python3-psycopg2"
    rustup component add clippy rustfmt >/dev/null 2>&1 || true
}

# Lays out an installation under $1 that mirrors /opt/gala-gopher, /etc/gala-gopher,
# /var/log/gala-gopher and /var/run/gala_gopher, with a config pointing there.
stage() {
    local dest=$1 bin_dir=$2
    mkdir -p "$dest"/opt/gala-gopher/{meta,extend_probes,lib/python} "$dest"/etc/gala-gopher "$dest"/var/run "$dest"/var/log/gala-gopher
    find probes -name '*.meta' ! -path 'probes/example/*' ! -path 'probes/extends/*' -exec cp {} "$dest/opt/gala-gopher/meta/" \;
    install -m 0750 probes/example/example_probe.sh "$dest/opt/gala-gopher/extend_probes/"
    install -m 0640 probes/example/example_probe.meta "$dest/opt/gala-gopher/extend_probes/"
    # Extend probes declared in gala-gopher-custom.json: program and meta side by side.
    install -m 0750 probes/extends/pg_stat/pg_stat_probe.py "$dest/opt/gala-gopher/extend_probes/"
    install -m 0640 probes/extends/pg_stat/pg_stat_probe.meta "$dest/opt/gala-gopher/extend_probes/"
    install -m 0750 probes/extends/proc_fd/proc_fd_probe.sh "$dest/opt/gala-gopher/extend_probes/"
    install -m 0640 probes/extends/proc_fd/proc_fd_probe.meta "$dest/opt/gala-gopher/extend_probes/"
    # The sockstat probe (C), linked statically against the C SDK of $bin_dir.
    [ -e "$bin_dir/libgala_probe.a" ] || { log "$bin_dir/libgala_probe.a missing: cargo build -p gala-probe-c"; return 1; }
    make -s -C probes/extends/sockstat install SDK_INC="$ROOT/probe-sdk/c/include" SDK_LIB="$(cd "$bin_dir" && pwd)" \
        BUILD_DIR="$(cd "$bin_dir" && pwd)/extend_probes" DESTDIR="$(cd "$dest" && pwd)"
    # The Python probe SDK, where Python probes look for it.
    install -m 0644 probe-sdk/python/gala_probe.py "$dest/opt/gala-gopher/lib/python/"
    local relocate="s#/opt/gala-gopher/#$dest/opt/gala-gopher/#g; s#/etc/gala-gopher/#$dest/etc/gala-gopher/#g; s#/var/log/gala-gopher/#$dest/var/log/gala-gopher/#g; s#/var/run/gala_gopher#$dest/var/run/gala_gopher#g"
    sed "$relocate" config/gala-gopher.conf > "$dest/etc/gala-gopher/gala-gopher.conf"
    sed "$relocate" config/gala-gopher-custom.json > "$dest/etc/gala-gopher/gala-gopher-custom.json"
    chmod 0640 "$dest/etc/gala-gopher/gala-gopher-custom.json"
    # The shipped default every time: the staged daemon rewrites it at shutdown.
    cp config/probes.init "$dest/etc/gala-gopher/probes.init"
    cp "$bin_dir/gala-gopher" "$dest/gala-gopher"
    cp "$bin_dir/gopher-ctl" "$dest/gopher-ctl"
    # The shell probe helper; `run` puts $dest on the daemon's PATH as /usr/bin is in a package.
    cp "$bin_dir/gala-probe" "$dest/gala-probe"
}

cmd_run() {
    install_build_deps
    log "cargo build --release"
    cargo build --release --workspace --lib --bins
    local dest="$ROOT/target/dev-root"
    stage "$dest" target/release
    log "running gala-gopher in the foreground; metrics on http://127.0.0.1:8888/metrics, REST on http://127.0.0.1:9999/<probe>,"
    log "gopher-ctl: $dest/gopher-ctl --socket $dest/var/run/gala_gopher/gala_gopher_cmd.sock probe get example (Ctrl-C stops)"
    PATH="$dest:$PATH" exec "$dest/gala-gopher" -c "$dest/etc/gala-gopher/gala-gopher.conf"
}

cmd_test() {
    install_test_deps
    log "cargo fmt --check"
    cargo fmt --all -- --check
    log "cargo clippy"
    cargo clippy --workspace --all-targets -- -D warnings
    log "cargo build (binaries and the C SDK library the end-to-end tests run)"
    cargo build --workspace --lib --bins
    log "cargo test"
    cargo test --workspace
    log "python SDK tests"
    python3 -m unittest discover -s probe-sdk/python -v
    log "benchmark smoke run (release build)"
    cargo build --release --workspace --bins
    target/release/gopher-bench --quick
}

cmd_bench() {
    install_build_deps
    cargo build --release --workspace --bins
    "$ROOT/target/release/gopher-bench" "$@"
}

case "${1:-}" in
    run) cmd_run ;;
    test) cmd_test ;;
    bench) shift; cmd_bench "$@" ;;
    stage) stage "$2" "${3:-target/release}" ;;
    *) echo "usage: $0 run|test|bench" >&2; exit 2 ;;
esac
