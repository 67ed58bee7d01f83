#!/bin/sh
# PID 1 of the qemu guest used by test/harness/kernel-guest.ts.
# Built into base.cpio.gz by setup.sh; each run appends a second archive with
#   /gv/params     shell assignments (GV_SERVER, GV_EXPORT, GV_MNT, GV_OPTS, GV_MOUNT, GV_ERREXIT)
#   /gv/script.sh  the test script (runs with cwd = the mount point)
#   /gv/files/     extra files for the script ($GV_FILES)
# ttyS0 (console) carries kernel messages and our phase lines "@@GV_PHASE <name> <uptime>".
# ttyS1 carries the script's stdout+stderr and, last, "@@GV_EXIT <code>@@".
# Codes: the script's own status (0..121); 122 script ok but umount failed;
# 123 mount failed; 125 guest setup failed (modules, network).
PATH=/bin:/sbin
export PATH
/bin/busybox --install -s /bin
mount -t proc none /proc
mount -t sysfs none /sys
mount -t devtmpfs none /dev 2>/dev/null
mount -t tmpfs none /tmp
mount -t tmpfs none /run

OUT=/dev/ttyS1
stty -F "$OUT" raw -echo 2>/dev/null
phase() { echo "@@GV_PHASE $1 $(cut -d' ' -f1 /proc/uptime)" > /dev/console; }
note() { echo "gv-init: $*" > /dev/console; }
halt_with() {
  echo "@@GV_EXIT $1@@" > "$OUT"
  phase halt
  sync
  poweroff -f
  sleep 5
  reboot -f
}

GV_SERVER=10.0.2.2 GV_EXPORT=/ GV_MNT=/mnt GV_OPTS=vers=3,nolock GV_MOUNT=1 GV_ERREXIT=0
[ -r /gv/params ] && . /gv/params
export GV_SERVER GV_EXPORT GV_MNT GV_OPTS
phase init

# modules, dependencies first (order computed by setup.sh from modules.dep)
while read -r ko; do
  [ -n "$ko" ] || continue
  insmod "/modules/$ko" 2>/tmp/insmod.err || { note "insmod $ko failed: $(cat /tmp/insmod.err)"; }
done < /etc/modules.order

n=0
until [ -e /sys/class/net/eth0 ]; do
  n=$((n + 1)); [ $n -gt 100 ] && { echo "gv-init: no eth0 after 10s" > "$OUT"; halt_with 125; }
  sleep 0.1
done
ip link set lo up && ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 &&
  ip route add default via 10.0.2.2 || { echo "gv-init: network setup failed" > "$OUT"; halt_with 125; }
phase net

if [ "$GV_MOUNT" = 1 ]; then
  mkdir -p "$GV_MNT"
  phase mount_begin
  if ! mount -t nfs -o "$GV_OPTS" "$GV_SERVER:$GV_EXPORT" "$GV_MNT" > /tmp/mount.err 2>&1; then
    {
      echo "gv-init: mount -t nfs -o $GV_OPTS $GV_SERVER:$GV_EXPORT $GV_MNT failed:"
      cat /tmp/mount.err
      dmesg | tail -n 15
    } > "$OUT" 2>&1
    halt_with 123
  fi
  phase mounted
fi

[ -d /gv/files ] && GV_FILES=/gv/files && export GV_FILES
cd "$GV_MNT" 2>/dev/null || cd /
phase script_begin
if [ "$GV_ERREXIT" = 1 ]; then sh -e /gv/script.sh > "$OUT" 2>&1 < /dev/null; else sh /gv/script.sh > "$OUT" 2>&1 < /dev/null; fi
rc=$?
phase script_end
if [ $rc -gt 121 ]; then echo "gv-init: script exited $rc (reserved code), reported as 121" > "$OUT"; rc=121; fi
cd /
if [ "$GV_MOUNT" = 1 ]; then
  # umount in the background so a dead server cannot wedge power-off
  umount "$GV_MNT" > /tmp/umount.err 2>&1 &
  upid=$!
  n=0
  while kill -0 $upid 2>/dev/null && [ $n -lt 300 ]; do sleep 0.1; n=$((n + 1)); done
  if kill -0 $upid 2>/dev/null; then
    echo "gv-init: umount $GV_MNT still hanging after 30s" > "$OUT"
    [ $rc = 0 ] && rc=122
  elif ! wait $upid; then
    echo "gv-init: umount $GV_MNT failed: $(cat /tmp/umount.err)" > "$OUT"
    [ $rc = 0 ] && rc=122
  else
    phase umounted
  fi
fi
halt_with $rc
