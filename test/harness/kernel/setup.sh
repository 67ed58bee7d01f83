#!/usr/bin/env bash
# Prepare a stock Debian cloud kernel and a tiny busybox initramfs so that the
# kernel NFS client test (test/kernel.test.ts) can boot a guest under qemu.
#
#   test/harness/kernel/setup.sh [--rebuild]
#
# Idempotent and cached in $GV_KNFS_CACHE (default /var/cache/gv-kernel-nfs for root,
# ~/.cache/gv-kernel-nfs otherwise):
#   kernel/            the linux-image .deb unpacked with dpkg -x (never installed)
#   vmlinuz            the kernel image
#   base.cpio.gz       busybox + nfs/sunrpc/virtio modules + our /init
#   stamp              what base.cpio.gz was built from (kernel + init.sh digest)
# When the stamp matches, the script returns at once (no apt, no rebuild).
# Host packages qemu-system-x86, busybox-static and cpio are installed with
# apt-get only if missing, and only when running as root.
#
# Env: GV_KNFS_CACHE (cache dir), GV_KNFS_KERNEL_META (default
# linux-image-cloud-amd64), GV_KNFS_KERNEL_PKG (pin an exact linux-image package).
# On success the last line on stdout is the cache directory.
set -euo pipefail

if [[ -n ${GV_KNFS_CACHE:-} ]]; then cache=$GV_KNFS_CACHE
elif [[ $(id -u) == 0 ]]; then cache=/var/cache/gv-kernel-nfs
else cache=${XDG_CACHE_HOME:-$HOME/.cache}/gv-kernel-nfs; fi
meta=${GV_KNFS_KERNEL_META:-linux-image-cloud-amd64}
rebuild=0
[[ ${1:-} == --rebuild ]] && rebuild=1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
init_src=$here/init.sh
say() { printf '[gv-knfs setup] %s\n' "$*" >&2; }
fail() { say "ERROR: $*"; exit 1; }

init_digest=$(sha256sum "$init_src" | cut -c1-16)
setup_digest=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)

# ------------------------------------------------------------------ fast path
have_tools() {
  command -v qemu-system-x86_64 >/dev/null && command -v cpio >/dev/null && [[ -x /bin/busybox ]] &&
    [[ -f /usr/share/qemu/qboot.rom || -f /usr/share/seabios/bios-256k.bin ]]
}
stamp_ok() {
  [[ -s $cache/vmlinuz && -s $cache/base.cpio.gz && -f $cache/stamp ]] &&
    grep -qx "init=$init_digest" "$cache/stamp" && grep -qx "setup=$setup_digest" "$cache/stamp"
}
if [[ $rebuild == 0 ]] && have_tools && stamp_ok; then
  echo "$cache"; exit 0
fi

mkdir -p "$cache"
# one setup at a time (tests may run in parallel on one machine)
exec 9>"$cache/.lock"
flock -w 600 9 || fail "timed out waiting for $cache/.lock"
if [[ $rebuild == 0 ]] && have_tools && stamp_ok; then echo "$cache"; exit 0; fi

# ------------------------------------------------------------------ host packages
apt_install() {
  [[ $(id -u) == 0 ]] || fail "missing $* and not root: install them (apt-get install $*)"
  export DEBIAN_FRONTEND=noninteractive
  say "apt-get install $*"
  apt-cache show "$1" >/dev/null 2>&1 || apt-get -q update >&2
  apt-get -q -y -o DPkg::Lock::Timeout=300 install --no-install-recommends "$@" >&2
}
missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
command -v cpio >/dev/null || missing+=(cpio)
# the guest needs a statically linked busybox (ldd fails on a static binary)
if [[ ! -x /bin/busybox ]] || ldd /bin/busybox >/dev/null 2>&1; then missing+=(busybox-static); fi
((${#missing[@]} == 0)) || apt_install "${missing[@]}"
have_tools || fail "qemu/cpio/busybox still missing after install"

# ------------------------------------------------------------------ kernel
kdir=$cache/kernel
if [[ $rebuild == 1 || ! -s $cache/vmlinuz || ! -f $cache/kernel.pkg ]]; then
  pkg=${GV_KNFS_KERNEL_PKG:-}
  resolve() { apt-cache depends "$meta" 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[^ ]*\)$/\1/p' | head -n1; }
  if [[ -z $pkg ]]; then
    pkg=$(resolve)
    if [[ -z $pkg ]]; then apt-get -q update >&2 || true; pkg=$(resolve); fi
  fi
  [[ -n $pkg ]] || fail "cannot resolve a kernel package from $meta"
  say "kernel package $pkg"
  mkdir -p "$cache/debs"
  deb=$(find "$cache/debs" -maxdepth 1 -name "${pkg}_*.deb" | head -n1)
  if [[ -z $deb ]]; then
    # (apt warns that it downloads unsandboxed as root: harmless, filtered)
    (cd "$cache/debs" && apt-get -q download "$pkg" 2>&1 | grep -v "unsandboxed" >&2; exit "${PIPESTATUS[0]}") || fail "apt-get download $pkg failed"
    deb=$(find "$cache/debs" -maxdepth 1 -name "${pkg}_*.deb" | head -n1)
  fi
  [[ -n $deb ]] || fail "no .deb for $pkg"
  rm -rf "$kdir.tmp"; mkdir -p "$kdir.tmp"
  dpkg -x "$deb" "$kdir.tmp"
  rm -rf "$kdir"; mv "$kdir.tmp" "$kdir"
  cp "$(ls "$kdir"/boot/vmlinuz-* | head -n1)" "$cache/vmlinuz"
  echo "$pkg" > "$cache/kernel.pkg"
  rm -f "$cache/stamp"
fi
kver=$(ls "$kdir/lib/modules" | head -n1)
[[ -n $kver ]] || fail "no modules in $kdir"
mdir=$kdir/lib/modules/$kver
if [[ ! -s $mdir/modules.dep ]]; then
  # dpkg -x skips the postinst that would run depmod
  if command -v depmod >/dev/null; then depmod -b "$kdir" "$kver"; else busybox depmod -b "$kdir" "$kver"; fi
fi

# ------------------------------------------------------------------ initramfs
# Modules we want and, from modules.dep, everything they need, in load order
# (dependencies first). The guest insmods them in this order; no modprobe needed.
load_order() {
  awk -v want="virtio_pci virtio_net nfsv3" '
    { path = $1; sub(/:$/, "", path); deps[path] = ""; for (i = 2; i <= NF; i++) deps[path] = deps[path] " " $i
      name = path; sub(/.*\//, "", name); sub(/\.ko(\.[a-z]+)?$/, "", name); byname[name] = path }
    function visit(p,   n, d, i) {
      if (p in done) return; done[p] = 1
      n = split(deps[p], d, " "); for (i = 1; i <= n; i++) visit(d[i])
      print p
    }
    END { n = split(want, w, " ")
          for (i = 1; i <= n; i++) { if (w[i] in byname) visit(byname[w[i]]); else print "builtin:" w[i] > "/dev/stderr" } }
  ' "$mdir/modules.dep"
}
root=$cache/base.root
rm -rf "$root"
mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,run,mnt,etc,modules}
cp /bin/busybox "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
: > "$root/etc/modules.order"
n=0
while read -r rel; do
  [[ -n $rel ]] || continue
  base=$(basename "$rel")
  case $base in
    *.ko) cp "$mdir/$rel" "$root/modules/$base";;
    *.ko.xz) xz -dc "$mdir/$rel" > "$root/modules/${base%.xz}"; base=${base%.xz};;
    *.ko.zst) zstd -qdc "$mdir/$rel" > "$root/modules/${base%.zst}"; base=${base%.zst};;
    *) fail "unexpected module file $rel";;
  esac
  echo "$base" >> "$root/etc/modules.order"
  n=$((n + 1))
done < <(load_order)
((n > 0)) || fail "no modules resolved"
cp "$init_src" "$root/init"; chmod 0755 "$root/init"
echo "$kver" > "$root/etc/kernel-version"
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet --owner=0:0) | gzip -6 > "$cache/base.cpio.gz.tmp"
mv "$cache/base.cpio.gz.tmp" "$cache/base.cpio.gz"
mods=$(sed 's/\.ko$//' "$root/etc/modules.order" | paste -sd' ')
rm -rf "$root"
printf 'kernel=%s\nversion=%s\ninit=%s\nsetup=%s\n' "$(cat "$cache/kernel.pkg")" "$kver" "$init_digest" "$setup_digest" > "$cache/stamp"
say "built base.cpio.gz ($(du -h "$cache/base.cpio.gz" | cut -f1)) for $kver, modules: $mods"
echo "$cache"
