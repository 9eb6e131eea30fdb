#!/usr/bin/env node
/**
 * What fields cost (issue 27, item 9): a ring of 3 stages (ts, c, ts; N=2 ranks each) whose
 * messages are 4 fields of mixed dtypes (float64, int32, float32, uint8) against the same ring
 * moving the same bytes as one float64 field, at 8 B a field (32 B a rank) and at 1 MiB a rank
 * in all; and a float32 field of 1 MiB (262144 elements) against a float64 field of as many (2 MiB).
 * Every stage copies its input fields into its output fields (bench/fixtures/fields:
 * one TypedArray.set or one byte loop per field, plus 1 on each field's first element), so
 * the work per byte is the same in both variants. On spawn, MPMD and threads.
 *
 * Each run is a fresh process; rounds are interleaved (every cell and target in each round,
 * the variant under test then its reference, back to back). A cell's figure is the median
 * over rounds of (medianIterS of the variant / medianIterS of its reference in the same
 * round). Targets: 4 fields within 1.1x of one float64 field; float32 at most 0.6x of float64.
 * Writes bench/results/fields.jsonl, then docs/BENCHMARKS.md again (its "Fields" section; the
 * rest from bench/results/latest.jsonl as it is).
 *   node bench/fields.mjs [--quick] [--rounds=N]
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeReport } from './report.mjs';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const quick = process.argv.includes('--quick');
const roundsArg = process.argv.find((a) => a.startsWith('--rounds='));
const rounds = roundsArg ? Number(roundsArg.slice('--rounds='.length)) : quick ? 2 : 7;
if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds must be a positive integer (got "${roundsArg.slice(9)}")`);
const master = join(root, 'dist', 'master.js');
const fixtures = join(root, 'bench', 'fixtures', 'fields');
const work = mkdtempSync(join(tmpdir(), 'commloop-bench-fields-'));
const out = join(root, 'bench', 'results', 'fields.jsonl');

const f = (dtype, n) => ({ dtype, shape: [n] });
/** The cells: a variant under test and its reference, each a table of fields per rank (the same in every stage), and the target. */
const CELLS = [
  {
    cell: '4 fields, 8 B each',
    test: { a: f('float64', 1), b: f('int32', 2), c: f('float32', 2), d: f('uint8', 8) },
    ref: { x: f('float64', 4) },
    limit: 1.1,
    iterations: { mpi: 6000, threads: 20000 },
  },
  {
    cell: '4 fields, 1 MiB in all',
    test: { a: f('float64', 32768), b: f('int32', 65536), c: f('float32', 65536), d: f('uint8', 262144) },
    ref: { x: f('float64', 131072) },
    limit: 1.1,
    iterations: { mpi: 400, threads: 4000 },
  },
  {
    // The cell: a float32 field of 1 MiB against the float64 field of as many elements.
    cell: 'float32 [262144]',
    test: { x: f('float32', 262144) },
    ref: { x: f('float64', 262144) },
    limit: 0.6,
    iterations: { mpi: 300, threads: 2000 },
  },
];
const TARGETS = [
  { target: 'spawn', args: ['--transport', 'mpi', '--launch', 'spawn'], kind: 'mpi' },
  { target: 'mpmd', args: ['--transport', 'mpi', '--launch', 'mpmd'], kind: 'mpi' },
  { target: 'threads', args: ['--transport', 'threads'], kind: 'threads' },
];

const bytesOf = (fields) => Object.values(fields).reduce((s, { dtype, shape }) => s + Math.ceil((shape[0] * (dtype.endsWith('64') ? 8 : dtype.endsWith('32') ? 4 : 1)) / 8) * 8, 0);
let nPipelines = 0;
function pipeline(fields) {
  const file = join(work, `ring${++nPipelines}.json`);
  const ts = (name) => ({ name, kind: 'ts', ranks: 2, module: join(fixtures, 'copy.mjs'), fields });
  writeFileSync(file, JSON.stringify({ stages: [ts('ts1'), { name: 'c', kind: 'c', ranks: 2, source: join(fixtures, 'copy.c'), function: 'copy', fields }, ts('ts2')] }));
  return file;
}
for (const c of CELLS) {
  c.files = { test: pipeline(c.test), ref: pipeline(c.ref) };
  c.bytes = { test: bytesOf(c.test), ref: bytesOf(c.ref) };
}

/** Failed runs, kept in the results: on a machine shared with other work a start can miss its deadline; a run is tried at most 3 times. */
const failures = [];
function run(file, target, iterations, what) {
  // --timeout 300: the start and every step may take 5 minutes (default 1) when the machine is loaded; it does not change the timing.
  const args = [master, '--pipeline', file, '-i', String(iterations), ...target.args, '--timeout', '300', '--json'];
  for (let attempt = 1; ; attempt++) {
    const r = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 900_000 });
    if (r.status === 0) return JSON.parse(r.stdout);
    const reason = (r.stderr ?? '').trim().split('\n').filter((l) => l.startsWith('commloop:')).join(' ') || `exit ${r.status} ${r.signal ?? ''}`;
    failures.push({ kind: 'failure', ...what, attempt, status: r.status, reason, load1: loadavg()[0] });
    process.stderr.write(`failed (attempt ${attempt}): ${args.join(' ')}: ${reason}\n`);
    if (attempt === 3) throw new Error(`${args.join(' ')}: exit ${r.status}: ${r.stderr}`);
  }
}
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return (s[(s.length - 1) >> 1] + s[s.length >> 1]) / 2;
};
const version = (cmd, args) => {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8' }).split('\n')[0].trim();
  } catch {
    return 'unknown';
  }
};

const machine = {
  kind: 'machine',
  date: new Date().toISOString(),
  mode: quick ? 'quick' : 'full',
  rounds,
  cpu: cpus()[0]?.model ?? 'unknown',
  cores: availableParallelism(),
  node: process.version,
  openmpi: version('mpirun', ['--version']),
  loadStart: loadavg(),
};
const runs = [];
/** Each variant's checksum at an iteration count, the same in every round and on every target (the same arithmetic natively and in WASM). */
const checksums = new Map();
for (let k = 0; k < rounds; k++) {
  for (const c of CELLS) {
    for (const t of TARGETS) {
      const iterations = Math.max(quick ? 10 : 1, Math.round(c.iterations[t.kind] / (quick ? 10 : 1)));
      const pair = {};
      // The order swaps every other round: the second run of a pair found the machine after the
      // first MPI job's teardown (6 of 7 MPMD rounds at 1 MiB had the second run slower).
      for (const variant of k % 2 ? ['ref', 'test'] : ['test', 'ref']) {
        const load1 = loadavg()[0];
        const r = run(c.files[variant], t, iterations, { cell: c.cell, target: t.target, variant, round: k });
        const key = `${c.cell} ${variant} -i ${iterations}`;
        if (!checksums.has(key)) checksums.set(key, r.checksum);
        if (checksums.get(key) !== r.checksum) throw new Error(`${key} ${t.target}: checksum ${r.checksum}, another run gave ${checksums.get(key)}`);
        if (r.stages[0].bytes.out !== c.bytes[variant]) throw new Error(`${key}: blocks of ${r.stages[0].bytes.out} B, not ${c.bytes[variant]}`);
        pair[variant] = r;
        runs.push({
          kind: 'run', cell: c.cell, target: t.target, variant, round: k, iterations, bytes: r.stages[0].bytes.out, load1,
          medianIterS: r.medianIterS, minIterS: r.minIterS, meanIterS: r.meanIterS, p95IterS: r.p95IterS, startS: r.startS, totalS: r.totalS,
          checksum: r.checksum, wire: r.wire, cBackend: r.cBackend,
        });
      }
      const ratio = pair.test.medianIterS / pair.ref.medianIterS;
      process.stderr.write(`round ${k + 1}/${rounds}  ${c.cell.padEnd(24)} ${t.target.padEnd(8)} ${(pair.test.medianIterS * 1e6).toFixed(1).padStart(9)} / ${(pair.ref.medianIterS * 1e6).toFixed(1).padStart(9)} µs = ${ratio.toFixed(3)}x  (load ${loadavg()[0].toFixed(1)})\n`);
    }
  }
}
machine.loadEnd = loadavg();
rmSync(work, { recursive: true, force: true });

const summaries = [];
for (const c of CELLS) {
  for (const t of TARGETS) {
    const mine = runs.filter((r) => r.cell === c.cell && r.target === t.target);
    const at = (variant) => mine.filter((r) => r.variant === variant).sort((a, b) => a.round - b.round);
    const test = at('test');
    const ref = at('ref');
    const ratios = test.map((r, i) => r.medianIterS / ref[i].medianIterS);
    const ratio = median(ratios);
    summaries.push({
      kind: 'cell', cell: c.cell, target: t.target, bytes: c.bytes, fields: { test: c.test, ref: c.ref }, iterations: test[0].iterations, rounds,
      ratio, limit: c.limit, met: ratio <= c.limit, ratios, testMedianIterS: median(test.map((r) => r.medianIterS)), refMedianIterS: median(ref.map((r) => r.medianIterS)),
    });
    process.stderr.write(`${c.cell.padEnd(24)} ${t.target.padEnd(8)} ${ratio.toFixed(3)}x (target ${c.limit}x: ${ratio <= c.limit ? 'met' : 'missed'}; rounds ${Math.min(...ratios).toFixed(3)}…${Math.max(...ratios).toFixed(3)})\n`);
  }
}
writeFileSync(out, [machine, ...runs, ...failures, ...summaries].map((o) => JSON.stringify(o)).join('\n') + '\n');
const latest = join(root, 'bench', 'results', 'latest.jsonl');
writeReport(readFileSync(latest, 'utf8').trim().split('\n').map((l) => JSON.parse(l)), root);
process.stderr.write(`wrote ${out} and docs/BENCHMARKS.md (load ${machine.loadStart.map((l) => l.toFixed(1)).join(' ')} at the start, ${machine.loadEnd.map((l) => l.toFixed(1)).join(' ')} at the end)\n`);
