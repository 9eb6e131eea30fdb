#!/bin/sh
# A Slurm cluster on this machine, for the tests: a controller "ctl" and three compute
# nodes n1 n2 n3, each a network namespace "clslurm-NAME" on a bridge of its own (clsbr0,
# 10.78.0.1/24 in the root namespace; ctl 10.78.0.2, n1..n3 10.78.0.11..13). The names
# differ from test/hosts/bed.sh's (commloop-*, clbr0, clv-*, 10.77.0.0/24): either bed's
# `down` leaves the other alone. The controller has a namespace of its own so that none of
# the bed's daemons listens in the root namespace: munged and slurmctld run in ctl, one
# slurmd in each node. A client (srun, sbatch, salloc, sinfo, scancel) runs anywhere on the
# machine with the exports of `env` (it reaches the bed over the bridge), or inside a node
# with `run`. Nothing has a default route: no packet of the bed leaves the bridge.
#
# A bed host is entered as `nsenter --net` + `unshare --mount --uts`, not `ip netns exec`:
# that remounts /sys, which empties /sys/fs/cgroup, and slurmd 22.05 loads a cgroup plugin
# whatever the config says, so it would not start. The host's own mount namespace gets the
# bed's hosts file (/run/commloop-slurm/hosts) over /etc/hosts, and its own host name.
#
# Everything lives in /run/commloop-slurm: slurm.conf and cgroup.conf, the bed's own munge
# key and socket (munged --socket/--key-file; Slurm finds it through AuthInfo=socket=, so a
# system munge is not touched), the controller's state, per node spool and TmpFS dirs,
# logs (log/), and one pid file per daemon (pid/munged, pid/slurmctld, pid/slurmd-NODE).
# Each node has 2 CPUs (SlurmdParameters=config_overrides: whatever the machine has) and
# KillWait=5: scancel and the time limit send SIGTERM to every process of the job, SIGKILL
# 5 s later (Slurm's default is 30 s).
#   sh test/slurm/bed.sh up             make the bed (tearing down any old one first); waits
#                                       until every node is idle (at most 20 s, else prints
#                                       the daemons' logs, tears down and fails); prints nothing;
#                                       exit 3 when this machine cannot make namespaces or bridges
#   sh test/slurm/bed.sh down           stop every daemon by its pid, kill whatever is left in
#                                       the bed's namespaces, remove them, the links, the bridge
#                                       and the state dir; idempotent
#   sh test/slurm/bed.sh env            the exports a client needs (eval "$(sh bed.sh env)")
#   sh test/slurm/bed.sh run NAME CMD...  run CMD inside bed host NAME (ctl, n1, n2, n3)
#   sh test/slurm/bed.sh pids           the processes inside the bed's hosts other than its
#                                       daemons (what jobs left), one pid a line
#   sh test/slurm/bed.sh pid NAME       the pid of a daemon: munged, slurmctld, or a node
#                                       name for its slurmd
#   sh test/slurm/bed.sh start NODE     start NODE's slurmd again (after a test killed it)
# Needs root, iproute2, util-linux (nsenter, unshare, setpriv), slurm-wlm and munge.
set -eu
. "$(dirname "$0")/../netns.sh"
BR=clsbr0
NET=10.78.0
PREFIX=clslurm-
STATE=/run/commloop-slurm
CONF=$STATE/slurm.conf
NODES='n1 n2 n3'
export SLURM_CONF="$CONF"

# A host's link, root side: "clsv-NAME" cut to the 15 bytes a link name may hold.
link() { printf 'clsv-%s' "$1" | cut -c1-15; }
namespaces() { ip netns list | awk '{print $1}' | grep "^$PREFIX" || true; }
addr() { case $1 in ctl) echo "$NET.2" ;; n*) echo "$NET.$((10 + ${1#n}))" ;; esac; }

# enter NAME CMD...: replaces this shell by CMD inside bed host NAME.
enter() {
  name=$1
  shift
  exec nsenter --net="/run/netns/$PREFIX$name" unshare --mount --uts \
    sh -c 'mount --bind "$1" /etc/hosts && hostname "$2" && shift 2 && exec "$@"' enter "$STATE/hosts" "$name" "$@"
}

# daemon LABEL NAME CMD...: starts CMD in the background inside bed host NAME; its pid (CMD
# itself: nsenter, unshare and sh each exec the next) goes to pid/LABEL, its output to log/LABEL.out.
daemon() {
  label=$1
  name=$2
  shift 2
  (enter "$name" "$@") </dev/null >>"$STATE/log/$label.out" 2>&1 &
  echo $! >"$STATE/pid/$label"
}

# True while PID is a live process (not a zombie) whose name is COMM.
alive() {
  [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ] || return 1
  ! grep -q '^[0-9]* (.*) Z' "/proc/$1/stat" 2>/dev/null
}

# The daemons that are up, as PID:NAME, checked against their names (a stale pid file never
# kills a stranger).
daemons() {
  for f in "$STATE"/pid/*; do
    [ -f "$f" ] || continue
    pid=$(cat "$f" 2>/dev/null) || continue
    label=${f##*/}
    alive "$pid" "${label%%-*}" || continue
    echo "$pid:${label%%-*}"
    # slurmctld's helper that runs its scripts, a daemon of the bed too.
    cat /proc/[0-9]*/stat 2>/dev/null | awk -v p="$pid" '$2 == "(slurmscriptd)" && $4 == p { print $1 ":slurmscriptd" }'
  done
}

down() {
  # TERM to every daemon; KILL to those still there after 5 s.
  running=$(daemons)
  for d in $running; do kill -TERM "${d%%:*}" 2>/dev/null || true; done
  i=0
  while [ -n "$running" ] && [ $i -lt 50 ]; do
    left=
    for d in $running; do ! alive "${d%%:*}" "${d#*:}" || left="$left $d"; done
    running=$left
    [ -z "$running" ] || sleep 0.1
    i=$((i + 1))
  done
  for d in $running; do kill -KILL "${d%%:*}" 2>/dev/null || true; done
  netns_down "$PREFIX" clsv- "$BR"
  rm -rf "$STATE"
}

# fail MESSAGE: prints it and the tail of every log of the bed, tears the bed down, exits 1.
fail() {
  echo "bed.sh: $*" >&2
  for f in "$STATE"/log/*.out; do
    [ -s "$f" ] || continue
    echo "--- $f" >&2
    tail -n 12 "$f" >&2
  done
  down
  exit 1
}

conf() {
  cat >"$CONF" <<EOF
# The commloop Slurm bed (test/slurm/bed.sh), written by \`bed.sh up\`.
ClusterName=commloop-bed
SlurmctldHost=ctl($(addr ctl))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$STATE/munge/munge.socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$STATE/ctld
# Distinct per node: the nodes share the machine's file systems (PMIx collides on its app dir in a shared TmpFS).
SlurmdSpoolDir=$STATE/spool/%n
TmpFS=$STATE/tmp/%n
SlurmctldPidFile=$STATE/pid/slurmctld
SlurmdPidFile=$STATE/pid/slurmd-%n
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd-%n.log
# No cgroups (they are not there inside a container), no accounting, no mail.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
MailProg=/bin/true
# SIGTERM, then SIGKILL 5 s later (default 30 s).
KillWait=5
# A node whose slurmd comes back is usable again.
ReturnToService=2
SlurmdParameters=config_overrides
EOF
  for n in $NODES; do
    echo "NodeName=$n NodeAddr=$(addr "$n") CPUs=2 State=UNKNOWN" >>"$CONF"
  done
  echo "PartitionName=bed Nodes=$(echo $NODES | tr ' ' ,) Default=YES MaxTime=INFINITE State=UP" >>"$CONF"
  cat >"$STATE/cgroup.conf" <<EOF
# slurmd 22.05 loads a cgroup plugin whatever ProctrackType and TaskPlugin say; the bed uses none.
CgroupPlugin=autodetect
CgroupAutomount=no
EOF
}

up() {
  [ "$(id -u)" = 0 ] || { echo 'bed.sh: needs root' >&2; exit 1; }
  for c in ip nsenter unshare setpriv munged slurmctld slurmd sinfo; do
    command -v "$c" >/dev/null 2>&1 || { echo "bed.sh: no $c (apt-get install -y iproute2 util-linux slurm-wlm munge)" >&2; exit 1; }
  done
  down
  mkdir -p "$STATE/ctld" "$STATE/log" "$STATE/pid" "$STATE/munge"
  for n in $NODES; do mkdir -p "$STATE/spool/$n" "$STATE/tmp/$n"; done
  chmod 755 "$STATE" "$STATE"/spool/*
  printf '127.0.0.1 localhost\n::1 localhost\n%s ctl\n' "$(addr ctl)" >"$STATE/hosts"
  for n in $NODES; do echo "$(addr "$n") $n" >>"$STATE/hosts"; done
  conf

  # Exit 3: no network namespaces or bridges here (not a failure of the bed; the tests skip).
  if ! err=$(ip link add "$BR" type bridge 2>&1); then
    echo "bed.sh: cannot make a bridge here: $err" >&2
    down
    exit 3
  fi
  ip addr add "$NET.1/24" dev "$BR"
  ip link set "$BR" up
  for name in ctl $NODES; do
    ns=$PREFIX$name
    if ! err=$(ip netns add "$ns" 2>&1); then
      echo "bed.sh: cannot make a network namespace here: $err" >&2
      down
      exit 3
    fi
    ip -n "$ns" link set lo up
    ip link add "$(link "$name")" type veth peer name eth0 netns "$ns"
    ip link set "$(link "$name")" master "$BR" up
    ip -n "$ns" addr add "$(addr "$name")/24" dev eth0
    ip -n "$ns" link set eth0 up
  done

  # munge: the bed's own key, socket and state, munged as the munge user (it refuses root's files).
  dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1024 count=1 2>/dev/null
  chmod 400 "$STATE/munge/munge.key"
  chown -R munge:munge "$STATE/munge"
  chmod 755 "$STATE/munge"
  daemon munged ctl setpriv --reuid=munge --regid=munge --init-groups munged -F \
    --socket="$STATE/munge/munge.socket" --key-file="$STATE/munge/munge.key" \
    --pid-file="$STATE/munge/munged.pid" --seed-file="$STATE/munge/munged.seed"
  i=0
  until [ -S "$STATE/munge/munge.socket" ]; do
    [ $i -lt 100 ] || fail 'munged did not start within 10 s'
    sleep 0.1
    i=$((i + 1))
  done

  daemon slurmctld ctl slurmctld -D -i -f "$CONF"
  for n in $NODES; do daemon "slurmd-$n" "$n" slurmd -D -N "$n" -f "$CONF"; done

  # Every node idle, within 20 s.
  i=0
  while :; do
    idle=$(sinfo -h -N -o '%N %T' 2>/dev/null | awk '$2 == "idle"' | wc -l)
    [ "$idle" -eq "$(echo $NODES | wc -w)" ] && break
    [ $i -lt 200 ] || fail "the nodes were not idle within 20 s: $(sinfo -h -N -o '%N %T' 2>&1 | tr '\n' ' ')"
    for f in "$STATE"/pid/*; do
      pid=$(cat "$f" 2>/dev/null) || continue
      [ -e "/proc/$pid" ] && ! grep -q ') Z' "/proc/$pid/stat" || fail "${f##*/} exited"
    done
    sleep 0.1
    i=$((i + 1))
  done
}

case ${1:-} in
  up) up ;;
  down) down ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  run)
    [ $# -ge 3 ] || { echo 'usage: sh bed.sh run NAME CMD...' >&2; exit 2; }
    shift
    enter "$@" ;;
  pids)
    mine=" $(daemons | sed 's/:.*//' | tr '\n' ' ') "
    for ns in $(namespaces); do
      for pid in $(ip netns pids "$ns" 2>/dev/null); do
        case $mine in *" $pid "*) ;; *) echo "$pid" ;; esac
      done
    done ;;
  start)
    # A node's slurmd again, after a test killed it (a node lost and back). The bed's nodes
    # share this machine's /dev/shm: the shared-memory segments of the ranks killed with the
    # node (Open MPI's vader_segment.NODE.*) go, as a real node's reboot would clear them.
    case " $NODES " in *" ${2:-} "*) ;; *) echo "bed.sh: no node ${2:-}" >&2; exit 2 ;; esac
    rm -f /dev/shm/vader_segment."$2".*
    daemon "slurmd-$2" "$2" slurmd -D -N "$2" -f "$CONF" ;;
  pid)
    case ${2:-} in
      munged | slurmctld) f=$STATE/pid/$2 ;;
      *) f=$STATE/pid/slurmd-${2:-} ;;
    esac
    cat "$f" 2>/dev/null || { echo "bed.sh: no daemon ${2:-}" >&2; exit 1; } ;;
  *) echo 'usage: sh bed.sh up | down | env | run NAME CMD... | pids | pid NAME | start NODE' >&2; exit 2 ;;
esac
