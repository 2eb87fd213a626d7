#!/bin/sh
# The shell SDK's conformance probe: the behaviour described in sdk_echo.meta, written with
# the gala-probe helper (found on PATH), run by tests/e2e/sdk.rs under the real daemon.
trap 'exit 0' TERM INT

joined() { # space-separated words -> comma-separated, or "none"
    if [ -z "$1" ]; then echo none; else echo "$1" | tr ' ' ','; fi
}

announce() {
    seq=$(gala-probe config get seq)
    level=$(gala-probe config get custom.params.level)
    gala-probe event sdk_echo "sh-$seq" seq WARN "applied config $seq with level ${level:-0} | ok"
}

announce
while :; do
    seq=$(gala-probe config get seq)
    period=$(gala-probe config get params.report_period)
    level=$(gala-probe config get custom.params.level)
    gala-probe emit sdk_echo sh "$(gala-probe config get probe_name)" \
        "$(joined "$(gala-probe config get custom.subitems)")" \
        "$(joined "$(gala-probe config get pids)")" \
        "$period" "${level:-0}" "$seq"
    gala-probe wait "$period"
    case $? in
        10) announce ;;
        11) exit 0 ;;
    esac
done
