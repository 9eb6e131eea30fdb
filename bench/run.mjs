// npm run bench [-- --quick]: runs the trial table (bench/trials.mjs), each trial in a
// fresh process, appends one JSON line per result to bench/results/latest.jsonl, checks
// every checksum of a cell against the others and against the JS reference, runs the
// kernel micro-benchmark, then writes docs/BENCHMARKS.md and its plot (bench/report.mjs).
import { spawnSync, execFileSync } from 'node:child_process';
import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { referenceRing } from '../test/reference.mjs';
import { FULL, IMPLS, QUICK, SHAPES, iterationsFor } from './trials.mjs';
import { writeReport } from './report.mjs';

const HELP = `Usage: node bench/run.mjs [--quick] [--only=TEXT] [--cell=RANKS/SHAPE] [--mpis]

  --quick             the quick table (N=2: 8B, 1MiB, default), about 1 minute; default: the full table
  --mpis              Open MPI beside MPICH (npm run bench:mpis): the MPMD rows and their floors under
                      each MPI at N=2, 8 B and 1 MiB, 5 rounds; writes bench/results/mpis.jsonl and the
                      report's "Open MPI and MPICH" section (the other sections stay the last full run's)
  --only=TEXT         only implementations whose id contains TEXT (e.g. --only=py: mpi/python-stages and mpi4py)
  --cell=RANKS/SHAPE  only this cell (e.g. --cell=2/8B); shapes: ${Object.keys(SHAPES).join(', ')}

A full run writes bench/results/latest.jsonl, docs/BENCHMARKS.md and docs/bench-plot.svg. A partial
run (--only or --cell) writes bench/results/partial.jsonl only and leaves the report alone.
`;
if (process.argv.includes('--help') || process.argv.includes('-h')) {
  process.stdout.write(HELP);
  process.exit(0);
}
const root = dirname(dirname(fileURLToPath(import.meta.url)));
const quick = process.argv.includes('--quick');
const only = process.argv.find((a) => a.startsWith('--only='))?.slice(7);
const cell = process.argv.find((a) => a.startsWith('--cell='))?.slice(7);
if (cell && !/^[0-9]+\/\w+$/.test(cell)) {
  process.stderr.write(`--cell must be RANKS/SHAPE, e.g. 2/8B (got "${cell}")\n`);
  process.exit(2);
}
if (cell && !SHAPES[cell.split('/')[1]]) {
  process.stderr.write(`--cell shape must be one of ${Object.keys(SHAPES).join(', ')} (got "${cell.split('/')[1]}")\n`);
  process.exit(2);
}
const mpis = process.argv.includes('--mpis');
/** --mpis: the project's MPMD row and the MPMD floor program, each built for and run under each MPI. */
const MPIS = ['mpmd/native', 'c-floor-mpmd', 'mpmd/native-mpich', 'c-floor-mpmd-mpich'];
const partial = Boolean(only || cell);
const out = join(root, 'bench', 'results', mpis ? 'mpis.jsonl' : partial ? 'partial.jsonl' : 'latest.jsonl');
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, '');
const record = (o) => appendFileSync(out, JSON.stringify(o) + '\n');

function version(cmd, args, pick = (s) => s.split('\n')[0]) {
  try {
    return pick(execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim());
  } catch {
    return 'not found';
  }
}

/**
 * What starting one Node process costs here (`node -e 0`, median of 15, seconds): the report
 * sets the start-up rows' gap to their floors against it, times their Node stage processes.
 */
function nodeBootS() {
  const each = [];
  for (let k = 0; k < 15; k++) {
    const t0 = performance.now();
    spawnSync(process.execPath, ['-e', '0']);
    each.push((performance.now() - t0) / 1000);
  }
  return each.sort((a, b) => a - b)[7];
}

record({
  kind: 'machine',
  nodeBootS: nodeBootS(),
  date: new Date().toISOString(),
  mode: quick ? 'quick' : 'full',
  cpu: cpus()[0]?.model ?? 'unknown',
  cores: availableParallelism(),
  node: process.version,
  openmpi: version('mpirun', ['--version']),
  mpich: version('mpiexec.hydra', ['--version'], (s) => /Version:\s*(\S+)/.exec(s)?.[1] ?? s.split('\n')[0]),
  python: version('/usr/bin/python3', ['--version']),
  mpi4py: version('/usr/bin/python3', ['-c', 'import mpi4py, numpy; print(mpi4py.__version__, numpy.__version__)']),
});

function command(impl, ranks, sizes, iterations) {
  const common = ['-p', String(ranks), '--sizes', sizes.map((t) => t.join(',')).join('/'), '-i', String(iterations)];
  if (impl.kind === 'project') {
    const args = impl.args.map((a) => (a.startsWith('bench/') ? join(root, a) : a));
    return [process.execPath, [join(root, 'dist', 'master.js'), ...common, ...args, '--json']];
  }
  if (impl.id === 'c-floor-mpmd-mpich') return [join(root, 'dist', 'commloop_c_floor_mpmd_mpich'), [...common, '--comm', 'merged']];
  if (impl.id.startsWith('c-floor-mpmd')) {
    return [join(root, 'dist', 'commloop_c_floor_mpmd'), [...common, '--comm', impl.id.endsWith('-inter') ? 'inter' : 'merged']];
  }
  if (impl.id.startsWith('c-floor')) {
    const protocol = impl.id.startsWith('c-floor-min') ? '2' : '1';
    const comm = impl.comm ? ['--comm', impl.comm] : [];
    return [join(root, 'dist', 'commloop_c_floor'), [...common, '--worker', join(root, 'dist', 'commloop_c_worker'), '--protocol', protocol, ...comm]];
  }
  return ['/usr/bin/python3', [join(root, 'bench', 'mpi4py_ring.py'), ...common]];
}

const cells = mpis ? ['8B', '1MiB'].map((shape) => ({ ranks: 2, shape })) : cell ? [{ ranks: Number(cell.split('/')[0]), shape: cell.split('/')[1] }] : quick ? QUICK : FULL;
/**
 * Every cell of a full run runs ROUNDS times, implementations interleaved round by round:
 * the shared machine's pace drifts up to 2x over minutes (seen at N=2, 1 MiB: one row 5.5 ms
 * in one round, 9.9 ms in the next), so the report pairs rows within a round and gives the
 * median of the rounds' ratios with their spread.
 */
const ROUNDS = 3;
const roundsFor = () => (quick ? 1 : mpis ? 5 : ROUNDS);
const seconds = quick ? 0.4 : 1.0;
let failures = 0;
for (const { ranks, shape } of cells) {
  const { sizes, label } = SHAPES[shape];
  // --mpis: at most 150 iterations, every row alike: MPICH's ranks spin while they wait, and 7
  // of them on 2 cores take ~45 ms a step (its floor as much), where a second's worth of Open
  // MPI's steps would take minutes.
  const iterations = mpis ? Math.min(150, iterationsFor(ranks, sizes, seconds)) : iterationsFor(ranks, sizes, seconds);
  const expected = referenceRing(ranks, sizes, iterations).checksum;
  const rounds = roundsFor();
  for (let round = 0; round < rounds; round++)
  for (const impl of IMPLS) {
    if (only && !impl.id.includes(only)) continue;
    if (mpis ? !MPIS.includes(impl.id) : impl.mpisOnly) continue;
    if (impl.cells && !impl.cells.includes(`${ranks}/${shape}`)) continue;
    const [cmd, args] = command(impl, ranks, sizes, iterations);
    const t0 = performance.now();
    const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 300_000, env: { ...process.env, ...impl.env } });
    const wallS = (performance.now() - t0) / 1000;
    const line = r.stdout?.trim().split('\n').filter((l) => l.startsWith('{')).pop();
    let result;
    try {
      result = JSON.parse(line);
    } catch {
      result = undefined;
    }
    const ok = r.status === 0 && result?.checksum === expected;
    if (!ok) failures++;
    const wire = result?.wire ?? impl.wire;
    const trial = { kind: 'trial', ranks, shape, label, sizes, iterations, round, impl: impl.id, wire, wallS, ok, expected };
    record(ok ? { ...trial, result } : { ...trial, status: r.status, stderr: (r.stderr ?? '').slice(-2000), result });
    const med = result ? `${(result.medianIterS * 1e6).toFixed(1)} us/iter` : 'no result';
    process.stderr.write(
      `${ok ? 'ok  ' : 'FAIL'} N=${ranks} ${label.padEnd(24)} ${impl.id.padEnd(15)} ${String(iterations).padStart(6)} it  ${med}  (${wallS.toFixed(1)} s${rounds > 1 ? `, round ${round + 1}/${rounds}` : ''})\n`,
    );
  }
}

if (mpis) {
  // The report's other sections stay the last full run's (latest.jsonl); its MPI section is this run's.
  writeReport(readFileSync(join(root, 'bench', 'results', 'latest.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)), root);
  process.stderr.write(`wrote ${out} and docs/BENCHMARKS.md ("Open MPI and MPICH")\n`);
} else if (partial) {
  // The committed report stays the last full run's; a partial run only prints and records.
  const trials = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((t) => t.kind === 'trial' && t.ok);
  const refs = ['mpi4py', 'mpi4py-ucx', 'c-floor', 'c-floor-min', 'c-floor-min-tcp', 'c-floor-mpmd', 'c-floor-mpmd-inter'];
  for (const ref of trials.filter((t) => refs.includes(t.impl))) {
    for (const t of trials.filter((t) => t.ranks === ref.ranks && t.shape === ref.shape && t.round === ref.round && !refs.includes(t.impl))) {
      process.stderr.write(`N=${t.ranks} ${t.label}: ${t.impl} / ${ref.impl} = ${(t.result.medianIterS / ref.result.medianIterS).toFixed(2)}x\n`);
    }
  }
  process.stderr.write(`wrote ${out}; the report is written by full runs only\n`);
} else {
  const kernel = spawnSync(process.execPath, [join(root, 'bench', 'kernel.mjs'), quick ? '200' : '600'], { encoding: 'utf8' });
  for (const l of kernel.stdout.trim().split('\n').filter(Boolean)) record(JSON.parse(l));
  const results = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  writeReport(results, root);
  process.stderr.write(`wrote docs/BENCHMARKS.md and docs/bench-plot.svg from ${out}\n`);
}
if (failures) {
  process.stderr.write(`${failures} trial(s) failed or gave a checksum other than the reference's\n`);
  process.exit(1);
}
