#!/bin/bash
# Second stage of a kernel-matrix guest (tests/kernels/guest), on the host's userland under a
# writable overlay: the file systems a BPF probe and its tests expect, loopback, then the job
# (/gala-job/job.sh, written by the host) with its output on the console and its exit status
# in /gala-job/status. Powers the guest off whatever happens.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
off() {
    sync
    echo o >/proc/sysrq-trigger
    sleep 10
}
trap off EXIT
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
mount -t bpf bpf /sys/fs/bpf
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t cgroup2 cgroup2 /sys/fs/cgroup
ip link set lo up
# The loop driver, which the io and proc tests' loop devices need: a module on Debian's
# kernels, loaded on a booted system by opening /dev/loop-control (kmod's static nodes, made
# by systemd-tmpfiles), which this guest does not have.
modprobe loop 2>/dev/null
# /boot/config-<release> as the kernel's package installs it (libbpf's __kconfig reads it).
mkdir -p /boot
cp "/lib/modules/$(uname -r)/config" "/boot/config-$(uname -r)" 2>/dev/null
hostname "guest-$(uname -r)"
ulimit -l unlimited
echo "guest: kernel $(uname -r) $(uname -m), $(nproc) CPUs, up $(cut -d' ' -f1 /proc/uptime) s"

if [ -e /gala-job/hide-btf ]; then
    # A kernel without /sys/kernel/btf/vmlinux, as far as user space can tell: the probes then
    # take their BTF from /opt/gala-gopher/btf/<release>.btf (docs/btf.md).
    mount -t tmpfs -o mode=0555 tmpfs /sys/kernel/btf
    mkdir -p /opt/gala-gopher/btf
    cp /gala-job/btf "/opt/gala-gopher/btf/$(uname -r).btf"
    echo "guest: /sys/kernel/btf hidden; BTF in /opt/gala-gopher/btf/$(uname -r).btf"
fi

bash /gala-job/job.sh </dev/null
echo $? >/gala-job/status
