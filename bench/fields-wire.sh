#!/usr/bin/env bash
# Times bench/fields_wire.c's ways of moving a message of 4 typed fields (issue 27) against
# the same bytes as one float64 field, at N ranks: 8 B per field and 1 MiB in all per rank
# (256 KiB a field), ROUNDS rounds with the methods interleaved, under one mpirun each (MPMD
# on this host: Open MPI's shared memory, as commloop's MPMD runs). Prints each method's
# median of its rounds' medians and its ratio to "one", and appends them as a JSON line to
# bench/results/fields-wire.jsonl.
#   bash bench/fields-wire.sh [ROUNDS=5] [N=2]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
n=${2:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mpicc.openmpi -O2 -o "$work/fields_wire" bench/fields_wire.c
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1
methods=(one packed copy p2p alltoallw)
for r in $(seq "$rounds"); do
  for cell in "8 20000" "262144 400"; do
    set -- $cell
    for m in "${methods[@]}"; do
      mpirun.openmpi -np $((n + 1)) --bind-to none "$work/fields_wire" "$m" "$1" "$2" >>"$work/out"
    done
  done
done
node - "$work/out" "$rounds" "$n" <<'EOF'
const fs = require('fs');
const [file, rounds, n] = process.argv.slice(2);
const rows = fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => l.split(' '));
if (rows.some((r) => r[4] === 'BAD')) throw new Error('a method moved wrong bytes: ' + rows.filter((r) => r[4]).join(' | '));
const median = (a) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };
const out = { date: new Date().toISOString(), rounds: Number(rounds), ranks: Number(n), fields: 'float64, int32, float32, uint8', cells: [] };
for (const bytes of ['8', '262144']) {
  const of = (m) => median(rows.filter((r) => r[0] === m && r[1] === bytes).map((r) => Number(r[3])));
  const ref = of('one');
  const cell = { perFieldBytes: Number(bytes), perRankBytes: Number(bytes) * 4, medianUs: {}, ratioToOne: {} };
  for (const m of ['one', 'packed', 'copy', 'p2p', 'alltoallw']) {
    cell.medianUs[m] = of(m);
    cell.ratioToOne[m] = Number((of(m) / ref).toFixed(3));
    console.log(`N=${n} ${bytes === '8' ? '8 B a field ' : '1 MiB in all'}  ${m.padEnd(10)} ${of(m).toFixed(2).padStart(9)} us  ${(of(m) / ref).toFixed(2)}x of one float64 field`);
  }
  out.cells.push(cell);
}
fs.mkdirSync('bench/results', { recursive: true });
fs.appendFileSync('bench/results/fields-wire.jsonl', JSON.stringify(out) + '\n');
EOF
