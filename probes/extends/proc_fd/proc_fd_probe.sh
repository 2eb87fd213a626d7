#!/bin/sh
# Example shell probe: open file descriptors, their limit and threads of every snooped
# process, with an event when a process uses more than res_upper_thr percent of its limit.
# It uses the gala-probe helper for its configuration and its output (see README.md).
trap 'exit 0' TERM INT

report() {
    pid=$1
    [ -r "/proc/$pid/status" ] || return 0
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 0
    fds=$(ls "/proc/$pid/fd" 2>/dev/null | wc -l)
    threads=$(awk '/^Threads:/ {print $2}' "/proc/$pid/status")
    limit=$(awk '/^Max open files/ {print $4}' "/proc/$pid/limits" 2>/dev/null)
    case $limit in ''|*[!0-9]*) limit=0 ;; esac
    usage=0
    [ "$limit" -gt 0 ] && usage=$((fds * 100 / limit))
    gala-probe emit proc_fd "$pid" "$comm" "$fds" "$limit" "$threads" "$usage" || return 0
    if [ "$report_event" = true ] && [ "$threshold" -gt 0 ] && [ "$usage" -gt "$threshold" ]; then
        gala-probe event proc_fd "$pid" fd_usage_percent WARN \
            "$comm uses $fds of $limit file descriptors ($usage%), above $threshold%" --pid "$pid"
    fi
}

while :; do
    period=$(gala-probe config get params.report_period) || exit 1
    report_event=$(gala-probe config get params.report_event)
    threshold=$(gala-probe config get params.res_upper_thr)
    for pid in $(gala-probe config get pids); do
        report "$pid"
    done
    gala-probe wait "$period"
    [ $? -eq 11 ] && exit 0
done
