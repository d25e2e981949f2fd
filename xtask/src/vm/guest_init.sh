#!/bin/busybox sh
# PID 1 of the test guest (`cargo xtask test --kernel NAME`): mounts what the agent needs, loads
# the modules, mounts the lab disk, runs the suite (or a script) and powers off. The host reads
# the `VIGIE-*` lines off the serial console.
/bin/busybox --install -s /bin
export PATH=/usr/bin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tracefs tracefs /sys/kernel/tracing
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t tmpfs tmpfs /run

for module in $(cat /etc/vigie-vm/modules); do
    insmod "/lib/modules/vigie-vm/$module.ko" || echo "VIGIE-VM insmod $module failed"
done
# The lab lives on ext4, a page cache file system: the initramfs is tmpfs.
mount -t ext4 /dev/vda /lab || echo "VIGIE-VM mount /dev/vda failed"
ip link set lo up

# `vigie.NAME=VALUE` of the kernel command line.
param() {
    for word in $(cat /proc/cmdline); do
        case "$word" in "vigie.$1="*) echo "${word#*=}" ;; esac
    done
}

echo "VIGIE-VM ready $(uname -r) $(cut -d' ' -f1 /proc/uptime)"
cd /lab
if [ "$(param mode)" = script ]; then
    sh /etc/vigie-vm/script.sh
    echo "VIGIE-VM exit $?"
else
    # A debug agent takes tens of seconds to start on the emulated CPU.
    TMPDIR=/lab VIGIE_BIN=/usr/bin/vigie VIGIE_TEST_START_SECS=240 vigie-vm-suite --backend "$(param backend)" \
        --expect-backend "$(param expect)" --cases "$(param cases)"
    echo "VIGIE-VM exit $?"
fi
cd /
umount /lab
poweroff -f
