#!/usr/bin/env bash
# Installs what the test suite needs on a Debian machine, only what is missing.
# Real peers the tests drive: libnfs client tools and headers, the kernel NFS client in qemu
# (qemu, busybox, cpio; the kernel itself is fetched by the test harness with apt-get download),
# rpcbind/showmount for portmapper checks, avahi (daemon, avahi-browse, dbus) as an mDNS observer;
# for the multi-host cluster harness and the replication bench: nftables (pair partitions and
# per-pair byte counters in the lab's switch namespace), iputils-ping, rsync (the bench's baseline).
set -euo pipefail
pkgs=(libnfs-utils libnfs-dev gcc make python3 g++ qemu-system-x86 busybox-static cpio rpcbind nfs-common zfs-fuse avahi-daemon avahi-utils dbus nftables iputils-ping rsync)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "test-deps: all Debian packages present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "test-deps: missing ${missing[*]}; run as root or: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "test-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Keep package maintainer scripts from starting services (rpcbind) on the host.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "test-deps: done"
