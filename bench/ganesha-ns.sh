#!/usr/bin/env bash
# ganesha-ns.sh - the reference NFSv3 server for `npm run bench`.
#
# Runs rpcbind + nfs-ganesha (FSAL VFS, NFSv3 only, TCP only, 127.0.0.1) as
# PID 1 of private pid + network + mount namespaces, so its rpcbind (ganesha
# will not start without one) cannot clash with anything else on the machine,
# and everything in it dies when this script exits. src/bench/ganesha.ts
# starts it as:
#
#   unshare --pid --fork --kill-child=SIGTERM --mount-proc --net --mount \
#           --propagation private -- bash ganesha-ns.sh STATE_DIR EXPORT_DIR \
#           NFS_PORT MOUNT_PORT MAX_SECONDS
#
# and runs the clients with `nsenter --net=/proc/<unshare pid>/ns/net`.
# Prints "GANESHA_READY" on stdout when both ports listen; then waits until it
# gets SIGTERM (or MAX_SECONDS pass, or ganesha dies) and stops both daemons.
# The export's MOUNT path is /bench (Pseudo path, mount_path_pseudo = true).
set -uo pipefail
STATE=${1:?state dir} EXPORT=${2:?export dir} NFS_PORT=${3:-2049} MOUNT_PORT=${4:-20048} MAX_SECONDS=${5:-3600}

if [[ $$ != 1 ]]; then
  echo "ganesha-ns.sh: must run as PID 1 of its own pid namespace (see header)" >&2
  exit 2
fi

mkdir -p "$STATE"/{recov,run} "$EXPORT" || exit 1
chmod 0777 "$EXPORT"

# loopback only; glibc's getaddrinfo (AI_ADDRCONFIG) will not resolve
# Bind_addr = 127.0.0.1 unless some non-loopback address exists, so add one
# from the documentation range (never routed anywhere).
ip link set lo up || exit 1
ip addr add 192.0.2.1/32 dev lo || exit 1
ip -6 addr add 2001:db8::1/128 dev lo 2>/dev/null || true
# rpcbind's unix socket lives in /run: give this namespace its own.
mount -t tmpfs tmpfs /run || exit 1
mkdir -p /run/rpcbind

cat > "$STATE/ganesha.conf" <<EOF
NFS_CORE_PARAM {
    Bind_addr = 127.0.0.1;
    NFS_Port = $NFS_PORT;
    MNT_Port = $MOUNT_PORT;
    Protocols = 3;
    Enable_NLM = false;
    Enable_RQUOTA = false;
    Enable_UDP = false;
    mount_path_pseudo = true;
    Plugins_Dir = /usr/lib/x86_64-linux-gnu/ganesha;
}
NFSV4 { Graceless = true; RecoveryRoot = $STATE/recov; }
NFS_KRB5 { Active_krb5 = false; }
LOG { Default_Log_Level = EVENT; }
EXPORT {
    Export_Id = 1;
    Path = $EXPORT;
    Pseudo = /bench;
    Protocols = 3;
    Transports = TCP;
    Access_Type = RW;
    Squash = No_Root_Squash;
    SecType = sys;
    FSAL { Name = VFS; }
}
EOF

RPCBIND_PID= GANESHA_PID=
stop_all() {
  if [[ -n $GANESHA_PID ]] && kill -0 "$GANESHA_PID" 2>/dev/null; then
    kill -TERM "$GANESHA_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$GANESHA_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$GANESHA_PID" 2>/dev/null
  fi
  [[ -n $RPCBIND_PID ]] && kill -TERM "$RPCBIND_PID" 2>/dev/null
  GANESHA_PID= RPCBIND_PID=
}
STOP=0
trap 'STOP=1' TERM INT HUP
trap 'stop_all' EXIT

rpcbind -f >"$STATE/rpcbind.log" 2>&1 &
RPCBIND_PID=$!
for _ in $(seq 50); do [[ -S /run/rpcbind.sock ]] && break; sleep 0.1; done
[[ -S /run/rpcbind.sock ]] || { echo "ganesha-ns.sh: rpcbind did not start" >&2; exit 1; }

ganesha.nfsd -F -f "$STATE/ganesha.conf" -L "$STATE/ganesha.log" -p "$STATE/run/ganesha.pid" -N NIV_EVENT \
  >"$STATE/ganesha.stdout" 2>&1 &
GANESHA_PID=$!

up=0
for _ in $(seq 150); do
  if ss -ltnH "sport = :$NFS_PORT" | grep -q . && ss -ltnH "sport = :$MOUNT_PORT" | grep -q .; then up=1; break; fi
  kill -0 "$GANESHA_PID" 2>/dev/null || break
  [[ $STOP == 1 ]] && break
  sleep 0.1
done
if [[ $up != 1 ]]; then
  echo "ganesha-ns.sh: ganesha did not come up; last log lines:" >&2
  tail -n 20 "$STATE/ganesha.log" >&2 2>/dev/null
  exit 1
fi
echo "GANESHA_READY pid=$GANESHA_PID nfs=$NFS_PORT mount=$MOUNT_PORT"

# wait (bounded) for SIGTERM; `sleep & wait` so the trap runs promptly
deadline=$((SECONDS + MAX_SECONDS))
while [[ $STOP == 0 && $SECONDS -lt $deadline ]] && kill -0 "$GANESHA_PID" 2>/dev/null; do
  sleep 0.5 & wait $!
done
if [[ $STOP == 0 ]] && ! kill -0 "$GANESHA_PID" 2>/dev/null; then
  echo "ganesha-ns.sh: ganesha exited on its own; last log lines:" >&2
  tail -n 20 "$STATE/ganesha.log" >&2 2>/dev/null
  exit 1
fi
exit 0
