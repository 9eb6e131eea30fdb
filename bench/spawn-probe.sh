#!/usr/bin/env bash
# Counts the starts of bench/spawn_probe.c that hang, one spawn a stage against one
# MPI_Comm_spawn_multiple for every stage (issue 26), on the hosts bed (test/hosts/bed.sh, h1
# and h2, a hostfile) or the Slurm bed (test/slurm/bed.sh, inside `salloc -N2`, map_by node):
#   bash bench/spawn-probe.sh each|multiple [N=50] [DEADLINE_S=15] [hosts|slurm]
# Builds the probe with mpicc.openmpi, brings the bed up and down, runs the probe N times as a
# singleton (as commloop's hub in spawn mode), each under the deadline; one that does not
# print "started" within it hung, and its processes are killed. Prints one line and appends
# it as JSON to bench/results/spawn-probe.json. Needs root. SPAWN_PROBE_DELAY_MS=D makes each
# child wait up to D ms before MPI_Init (a Node stage's boot); SPAWN_PROBE_SYNC=1 makes the
# parent meet each stage before the next spawn (commloop's hello).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?usage: bash bench/spawn-probe.sh each|multiple [N] [DEADLINE_S]}
n=${2:-50}
deadline=${3:-15}
bed=${4:-hosts}
work=$(mktemp -d)
mpicc.openmpi -O2 -o "$work/spawn_probe" bench/spawn_probe.c
# As commloop: a ring holds more processes than slots; TCP between hosts.
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1
if [[ $bed == slurm ]]; then
  trap 'sh test/slurm/bed.sh down >/dev/null 2>&1; rm -rf "$work"' EXIT
  sh test/slurm/bed.sh up >/dev/null
  unset "${!SLURM_@}"
  eval "$(sh test/slurm/bed.sh env)"
  export OMPI_MCA_oob_tcp_if_include=10.78.0.0/24 OMPI_MCA_btl_tcp_if_include=10.78.0.0/24
  # The nodes are ready once a job step runs on both: not counted.
  timeout 60 srun -N2 true || true
  run=(salloc -N2 "$work/spawn_probe" "$mode" - 3 2)
else
  trap 'sh test/hosts/bed.sh down >/dev/null 2>&1; rm -rf "$work"' EXIT
  printf 'h1 slots=1\nh2 slots=1\n' >"$work/hosts"
  sh test/hosts/bed.sh up h1 h2 >/dev/null
  # As test/hosts.test.mjs: the bed's rsh agent, round robin over its hosts, its bridge.
  export OMPI_MCA_plm_rsh_agent=$PWD/test/hosts/agent.sh OMPI_MCA_plm_rsh_no_tree_spawn=1 \
    OMPI_MCA_rmaps_base_mapping_policy=node OMPI_MCA_oob_tcp_if_include=10.77.0.0/24 \
    OMPI_MCA_btl_tcp_if_include=10.77.0.0/24
  run=("$work/spawn_probe" "$mode" "$work/hosts" 3 2)
fi
ok=0 hung=0 failed=0
for ((k = 1; k <= n; k++)); do
  # A session of its own: whatever of it a hung start leaves (the singleton's orted) is found by it.
  setsid timeout -s KILL "$deadline" "${run[@]}" >"$work/out" 2>"$work/err" &
  sid=$!
  wait "$sid" || true
  out=$(cat "$work/out")
  pkill -9 -s "$sid" 2>/dev/null || true
  if [[ $out == started ]]; then ok=$((ok + 1)); elif grep -v '^salloc: ' "$work/err" | grep -q .; then failed=$((failed + 1)); echo "start $k failed: $(head -c 300 "$work/err")" >&2; else hung=$((hung + 1)); fi
  # Whatever a hung start left, in the bed and here.
  # The singleton's daemon starts the nodes' daemons through an srun of its own session.
  [[ $bed == slurm ]] && { scancel --user=root 2>/dev/null; pkill -9 -f "srun .* orted " 2>/dev/null; } || true
  for p in $(sh "test/$bed/bed.sh" pids) $(pgrep -f "$work/spawn_probe" || true); do kill -9 "$p" 2>/dev/null || true; done
  sleep 0.2
done
line="{\"bed\":\"$bed\",\"mode\":\"$mode\",\"childDelayMs\":${SPAWN_PROBE_DELAY_MS:-0},\"syncEach\":${SPAWN_PROBE_SYNC:-0},\"starts\":$n,\"started\":$ok,\"hung\":$hung,\"failed\":$failed,\"deadlineS\":$deadline,\"date\":\"$(date -u +%FT%TZ)\"}"
echo "$line"
echo "$line" >>bench/results/spawn-probe.json
