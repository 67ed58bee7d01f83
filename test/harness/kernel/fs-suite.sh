# Filesystem checks run by the Linux kernel NFS client (busybox sh, cwd = the NFS mount).
# test/kernel.test.ts boots one guest with this script and then checks the zone directory on the
# host. Every step prints "GVSTEP <name> OK" when it passed, or "GVFAIL <name>: why".
# Host-provided inputs in $GV_FILES: host-file.md5 (md5 of host-file.bin, made on the host
# before boot), many.count (how many files the host put in hostmany/).
# Each step runs in its own subshell, so one failure does not hide the others; the script exits 1
# if any step failed. The last line is "GVDONE failed=<count>".
step=start
fail() { echo "GVFAIL $step: $*"; exit 1; }
ok() { echo "GVSTEP $step OK${1:+ $1}"; }
eq() { [ "$1" = "$2" ] || fail "expected '$2', got '$1'${3:+ ($3)}"; }
now() { cut -d' ' -f1 /proc/uptime; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2fs", b - a }'; }

t_basic_io() {
  printf 'hello\n' > basic.txt || fail "create"
  eq "$(cat basic.txt)" "hello" "read after write"
  printf 'world\n' >> basic.txt || fail "append"
  eq "$(cat basic.txt)" "$(printf 'hello\nworld')" "read after append"
  eq "$(stat -c %s basic.txt)" 12 "size after append"
  truncate -s 5 basic.txt || fail "truncate shrink"
  eq "$(cat basic.txt)" "hello" "after truncate to 5"
  truncate -s 4096 basic.txt || fail "truncate grow"
  eq "$(stat -c %s basic.txt)" 4096 "size after grow"
  eq "$(tail -c 4091 basic.txt | tr -d '\000' | wc -c)" 0 "grown tail is zeros"
  truncate -s 5 basic.txt && printf '!' >> basic.txt || fail "shrink + append"
  eq "$(cat basic.txt)" "hello!"
  printf 'overwrite' | dd of=basic2.txt bs=1 seek=3 conv=notrunc 2>/dev/null || fail "dd at offset"
  eq "$(od -An -c basic2.txt | tr -d ' \n')" '\0\0\0overwrite' "sparse start"
  ok
}

t_mkdir_p() {
  mkdir -p a/b/c/d || fail "mkdir -p"
  [ -d a/b/c/d ] || fail "a/b/c/d missing"
  echo leaf > a/b/c/d/leaf.txt || fail "create leaf"
  mkdir a 2>/dev/null && fail "mkdir of an existing dir succeeded"
  ok
}

t_rename_file() {
  mkdir src dst || fail "mkdir src dst"
  echo moved > src/file.txt
  mv src/file.txt dst/renamed.txt || fail "mv"
  [ -e src/file.txt ] && fail "source still exists"
  eq "$(cat dst/renamed.txt)" moved
  echo old > dst/victim.txt; echo new > src/over.txt
  mv src/over.txt dst/victim.txt || fail "mv over an existing file"
  eq "$(cat dst/victim.txt)" new "replaced target"
  ok
}

t_rename_dir() {
  mkdir -p src/tree/sub && echo deep > src/tree/sub/x.txt || fail "make tree"
  mv src/tree dst/tree2 || fail "mv dir"
  [ -e src/tree ] && fail "old dir still exists"
  eq "$(cat dst/tree2/sub/x.txt)" deep "content after dir rename"
  eq "$(ls src | wc -l)" 0 "src empty"
  ok
}

t_rm_rf() {
  for d in doomed doomed/x doomed/x/y doomed/z; do
    mkdir "$d" || fail "mkdir $d"
    for i in 1 2 3 4 5; do echo "$i" > "$d/f$i"; done
  done
  ln -s f1 doomed/link
  rm -rf doomed || fail "rm -rf"
  [ -e doomed ] && fail "doomed still exists"
  ok
}

t_hardlink() {
  echo shared > h1.txt
  ln h1.txt h2.txt || fail "ln"
  eq "$(stat -c %h h1.txt)" 2 "link count of h1"
  eq "$(stat -c %h h2.txt)" 2 "link count of h2"
  eq "$(stat -c %i h1.txt)" "$(stat -c %i h2.txt)" "inode numbers"
  echo more >> h2.txt
  eq "$(cat h1.txt)" "$(printf 'shared\nmore')" "content through the other name"
  echo "HARDLINK_INO $(stat -c %i h1.txt)"
  ok
}

t_symlink() {
  ln -s dst/renamed.txt sl || fail "ln -s"
  eq "$(readlink sl)" dst/renamed.txt readlink
  eq "$(cat sl)" moved "read through symlink"
  ln -s does-not-exist dangling || fail "dangling symlink"
  eq "$(readlink dangling)" does-not-exist
  [ -L dangling ] || fail "dangling is not a symlink"
  ok
}

t_chmod() {
  echo m > mode.txt
  chmod 640 mode.txt || fail chmod
  eq "$(stat -c %a mode.txt)" 640 "mode in guest"
  mkdir modedir && chmod 750 modedir || fail "chmod dir"
  eq "$(stat -c %a modedir)" 750 "dir mode in guest"
  chmod 755 mode.txt && chmod 600 mode.txt || fail "chmod again"
  eq "$(stat -c %a mode.txt)" 600 "mode after second chmod"
  ok
}

t_many_files() {
  T=$(now)
  mkdir many || fail "mkdir many"
  # one writer: four parallel writers were not faster under TCG (guest and server share 2 cores)
  i=1
  while [ $i -le 5000 ]; do
    : > "many/file-$i" || fail "create many/file-$i"
    i=$((i + 1))
  done
  made=$(took "$T")
  seq 1 5000 | sed 's/^/file-/' | sort > /tmp/expected
  echo 3 > /proc/sys/vm/drop_caches
  T=$(now)
  ls many > /tmp/listing || fail "ls many"
  eq "$(wc -l < /tmp/listing)" 5000 "ls | wc -l"
  eq "$(sort /tmp/listing | uniq -d | wc -l)" 0 "duplicate names"
  sort /tmp/listing | cmp -s - /tmp/expected || fail "sorted listing differs from expected: $(sort /tmp/listing | diff - /tmp/expected | head -5)"
  eq "$(ls -l many | grep -c '^-')" 5000 "ls -l entries"
  echo "MANY_MD5 $(sort /tmp/listing | md5sum | cut -d' ' -f1)"
  ok "create=$made list=$(took "$T")"
}

t_host_many() {
  want=$(cat "$GV_FILES/many.count")
  ls hostmany > /tmp/hl || fail "ls hostmany"
  eq "$(wc -l < /tmp/hl)" "$want" "ls hostmany | wc -l"
  eq "$(sort /tmp/hl | uniq -d | wc -l)" 0 "duplicate names in hostmany"
  echo "HOSTMANY_MD5 $(sort /tmp/hl | md5sum | cut -d' ' -f1)"
  ok
}

t_big_write() {
  # random data staged in tmpfs first: piping through tee into NFS is 3x slower under TCG
  dd if=/dev/urandom of=/tmp/big bs=1M count=100 2>/dev/null || fail "urandom"
  sum=$(md5sum < /tmp/big | cut -d' ' -f1)
  T=$(now)
  cat /tmp/big > big.bin || fail "write big.bin"
  sync || fail sync
  wrote=$(took "$T")
  rm -f /tmp/big
  eq "$(stat -c %s big.bin)" 104857600 "size of big.bin"
  echo 3 > /proc/sys/vm/drop_caches
  T=$(now)
  eq "$(md5sum < big.bin | cut -d' ' -f1)" "$sum" "md5 read back after dropping caches"
  echo "BIG_MD5 $sum"
  ok "write+sync=$wrote read+md5=$(took "$T")"
}

t_host_file() {
  T=$(now)
  eq "$(md5sum < host-file.bin | cut -d' ' -f1)" "$(cat "$GV_FILES/host-file.md5")" "md5 of host-made file"
  ok "read+md5=$(took "$T")"
}

t_sync() {
  sync || fail "sync"
  ok
}

failed=0
steps="
  basic-io:t_basic_io
  mkdir-p:t_mkdir_p
  rename-file:t_rename_file
  rename-dir:t_rename_dir
  rm-rf:t_rm_rf
  hardlink:t_hardlink
  symlink:t_symlink
  chmod:t_chmod
  many-files:t_many_files
  host-many:t_host_many
  big-write:t_big_write
  host-file:t_host_file
  sync:t_sync
"
for s in $steps; do
  step=${s%%:*}
  ( "${s#*:}" ) || failed=$((failed + 1))
done
echo "GVDONE failed=$failed"
[ $failed = 0 ]
