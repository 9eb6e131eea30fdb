#!/usr/bin/env bash
# Counts the starts of bench/spawn_probe.c that hang on the hosts bed (test/hosts/bed.sh, h1
# and h2), one spawn a stage against one MPI_Comm_spawn_multiple for every stage (issue 26):
#   bash bench/spawn-probe.sh each|multiple [N=50] [DEADLINE_S=15]
# Builds the probe with mpicc.openmpi, brings the bed up and down, runs the probe N times as a
# singleton in the root namespace (as commloop's hub in spawn mode), each under the deadline;
# one that does not print "started" within it hung, and its processes are killed. Prints one
# line and appends it as JSON to bench/results/spawn-probe.json. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?usage: bash bench/spawn-probe.sh each|multiple [N] [DEADLINE_S]}
n=${2:-50}
deadline=${3:-15}
work=$(mktemp -d)
trap 'sh test/hosts/bed.sh down >/dev/null 2>&1; rm -rf "$work"' EXIT
mpicc.openmpi -O2 -o "$work/spawn_probe" bench/spawn_probe.c
printf 'h1 slots=1\nh2 slots=1\n' >"$work/hosts"
sh test/hosts/bed.sh up h1 h2 >/dev/null
# As test/hosts.test.mjs: the bed's rsh agent, round robin over its hosts, its bridge; and as
# commloop: a ring holds more processes than slots.
export OMPI_MCA_plm_rsh_agent=$PWD/test/hosts/agent.sh OMPI_MCA_plm_rsh_no_tree_spawn=1 \
  OMPI_MCA_rmaps_base_mapping_policy=node OMPI_MCA_oob_tcp_if_include=10.77.0.0/24 \
  OMPI_MCA_btl_tcp_if_include=10.77.0.0/24 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1
ok=0 hung=0 failed=0
for ((k = 1; k <= n; k++)); do
  # A session of its own: whatever of it a hung start leaves (the singleton's orted) is found by it.
  setsid timeout -s KILL "$deadline" "$work/spawn_probe" "$mode" "$work/hosts" 3 2 >"$work/out" 2>"$work/err" &
  sid=$!
  wait "$sid" || true
  out=$(cat "$work/out")
  pkill -9 -s "$sid" 2>/dev/null || true
  if [[ $out == started ]]; then ok=$((ok + 1)); elif grep -qv '^$' "$work/err"; then failed=$((failed + 1)); echo "start $k failed: $(head -c 300 "$work/err")" >&2; else hung=$((hung + 1)); fi
  # Whatever a hung start left, in the bed and here.
  for p in $(sh test/hosts/bed.sh pids) $(pgrep -f "$work/spawn_probe" || true); do kill -9 "$p" 2>/dev/null || true; done
  sleep 0.2
done
line="{\"mode\":\"$mode\",\"starts\":$n,\"started\":$ok,\"hung\":$hung,\"failed\":$failed,\"deadlineS\":$deadline,\"date\":\"$(date -u +%FT%TZ)\"}"
echo "$line"
echo "$line" >>bench/results/spawn-probe.json
