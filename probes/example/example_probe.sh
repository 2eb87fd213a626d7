#!/bin/sh
# Example extend probe: host load and context switches from /proc, every 5 seconds.
# Any program that prints `|table|v1|v2|...|` lines on stdout is a probe; the tables are
# declared in the .meta file next to it (same name, extension .meta).
host=$(cat /proc/sys/kernel/hostname 2>/dev/null || echo localhost)
while :; do
    read -r l1 l5 l15 procs _ < /proc/loadavg
    running=${procs%/*}
    ctxt=$(awk '/^ctxt/ {print $2}' /proc/stat)
    forks=$(awk '/^processes/ {print $2}' /proc/stat)
    printf '|example_load|%s|%s|%s|%s|%s|\n' "$host" "$l1" "$l5" "$l15" "$running"
    printf '|example_sched|%s|%s|%s|\n' "$host" "$ctxt" "$forks"
    sleep 5
done
