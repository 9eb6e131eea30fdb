// Property-based tests (fast-check): random pipelines against the plain reference on every
// transport, C backend and launch mode their kinds allow; random rings of fields (random
// names, dtypes, shapes, "to": "all") likewise, compared byte for byte; random failures injected into one
// stage and rank of a random pipeline, which must end the run in time with exit 1, one line
// naming that stage and rank, and nothing of the run left.
//
// Each differential case runs on both threads backends when its kinds allow (they are cheap)
// and on one MPI target (Open MPI spawn or mpmd, or MPICH, native or wasm) drawn with the case.
//
// Every run draws a new seed and prints it; a failure prints the seed, fast-check's path and
// the shrunk (minimal) counterexample. Environment:
//   COMMLOOP_PROPERTY_SEED=S       replay the cases of seed S
//   COMMLOOP_PROPERTY_RUNS=N       differential cases (default 6)
//   COMMLOOP_PROPERTY_FIELDS_RUNS=N  cases of fields (default 5, or COMMLOOP_PROPERTY_RUNS when that is set)
//   COMMLOOP_PROPERTY_FAIL_RUNS=N  failure cases (default 4, or half of COMMLOOP_PROPERTY_RUNS when that is set)
//   COMMLOOP_PROPERTY_VERBOSE=1    print every case as it runs
import { suite } from 'uvu';
import fc from 'fast-check';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { MPI_MISSING, cmdline, descendants, haveMpi, pipelineFiles, root, startCli } from './helpers.mjs';
import { FIXTURE_KERNELS, propertyFieldsKernel, referenceFields, referenceSchedule } from './reference.mjs';

const PY = '/usr/bin/python3';
if (!haveMpi()) throw new Error(MPI_MISSING);
if (spawnSync('mpicc.openmpi', ['--version']).error) throw new Error('mpicc.openmpi is missing: apt-get install -y libopenmpi-dev');
if (spawnSync(PY, ['-c', 'import mpi4py, numpy']).status !== 0) {
  throw new Error(`${PY} cannot import mpi4py and numpy: apt-get install -y python3-mpi4py python3-numpy`);
}

/** A positive integer from the environment, or `fallback`. */
function envCount(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^[0-9]+$/.test(raw) || Number(raw) < 1) throw new Error(`${name} must be a positive integer (got "${raw}")`);
  return Number(raw);
}
const SEED = process.env.COMMLOOP_PROPERTY_SEED ? Number(process.env.COMMLOOP_PROPERTY_SEED) : (Date.now() ^ (Math.random() * 0x7fffffff)) | 0;
if (!Number.isSafeInteger(SEED)) throw new Error(`COMMLOOP_PROPERTY_SEED must be an integer (got "${process.env.COMMLOOP_PROPERTY_SEED}")`);
const RUNS = envCount('COMMLOOP_PROPERTY_RUNS', 6);
const FIELDS_RUNS = envCount('COMMLOOP_PROPERTY_FIELDS_RUNS', process.env.COMMLOOP_PROPERTY_RUNS ? RUNS : 5);
const FAIL_RUNS = envCount('COMMLOOP_PROPERTY_FAIL_RUNS', process.env.COMMLOOP_PROPERTY_RUNS ? Math.max(1, Math.ceil(RUNS / 2)) : 4);
const VERBOSE = !!process.env.COMMLOOP_PROPERTY_VERBOSE;
/** A property stops drawing (or shrinking) new cases after this long; what it found so far is reported. */
const PROPERTY_LIMIT_MS = 300_000;

const HOST = hostname();
const escapeRe = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const fixtures = join(root, 'test', 'fixtures');
const { dir, file: pipelineFile } = pipelineFiles('property');
const execStage = join(dir, 'exec_stage');
execFileSync('mpicc.openmpi', ['-O2', '-ffp-contract=off', '-o', execStage, join(fixtures, 'exec_stage.c')]);
const failStage = join(dir, 'fail_stage');
execFileSync('mpicc.openmpi', ['-O2', '-ffp-contract=off', '-Wall', '-Wextra', '-o', failStage, join(fixtures, 'property', 'fail_stage.c'), '-I', join(root, 'include')]);
const fieldsExec = join(dir, 'fields_exec');
execFileSync('mpicc.openmpi', ['-O2', '-ffp-contract=off', '-Wall', '-Wextra', '-o', fieldsExec, join(fixtures, 'property', 'fields_exec.c'), '-I', join(root, 'include')]);

// MPICH (issue 28): the differential cases draw its targets too, with the exec stages built by
// its mpicc; an exec stage in Python (mpi4py, Open MPI's) runs as the C one, the same kernel.
if (spawnSync('mpicc.mpich', ['-show']).error || !existsSync(join(root, 'build', 'Release', 'commloop_mpi_mpich.node'))) {
  throw new Error('MPICH or its addon is missing: apt-get install -y mpich libmpich-dev (bash build.sh --test does), then bash build.sh');
}
const MPICH_EXEC = Object.fromEntries(
  [[execStage, 'exec_stage.c'], [failStage, 'property/fail_stage.c'], [fieldsExec, 'property/fields_exec.c']].map(([exe, src]) => {
    execFileSync('mpicc.mpich', ['-O2', '-ffp-contract=off', '-Wall', '-Wextra', '-o', `${exe}_mpich`, join(fixtures, src), '-I', join(root, 'include')]);
    return [exe, `${exe}_mpich`];
  }),
);
/** The pipeline as it runs on `target`: under MPICH its exec stages are MPICH's builds. */
function forTarget(spec, target) {
  if (!target.startsWith('mpich/')) return spec;
  const command = (cmd) => (cmd[0] === PY ? [MPICH_EXEC[execStage]] : [MPICH_EXEC[cmd[0]] ?? cmd[0], ...cmd.slice(1)]);
  return { ...spec, stages: spec.stages.map((st) => (st.command ? { ...st, command: command(st.command) } : st)) };
}

/** Where a run goes: transport, C backend, launch mode. */
const TARGETS = {
  'threads/wasm': ['--transport', 'threads', '--c-backend', 'wasm'],
  'threads/native': ['--transport', 'threads', '--c-backend', 'native'],
  'spawn/native': ['--launch', 'spawn', '--c-backend', 'native'],
  'spawn/wasm': ['--launch', 'spawn', '--c-backend', 'wasm'],
  'mpmd/native': ['--launch', 'mpmd', '--c-backend', 'native'],
  'mpmd/wasm': ['--launch', 'mpmd', '--c-backend', 'wasm'],
  'mpich/native': ['--mpi', 'mpich', '--c-backend', 'native'],
  'mpich/wasm': ['--mpi', 'mpich', '--c-backend', 'wasm'],
};
const MPI_TARGETS = ['spawn/native', 'mpmd/native', 'spawn/wasm', 'mpmd/wasm', 'mpich/native', 'mpich/wasm'];
const onThreads = (target) => target.startsWith('threads/');
const THREADS_KINDS = ['ts', 'c'];
/** The kernel of test/reference.mjs each kind's fixture computes; stage names start with it. */
const KERNEL = { ts: 'shift', c: 'third', python: 'quarter', exec: 'quarter' };

const gcd = (a, b) => (b === 0 ? a : gcd(b, a % b));
/**
 * Output sizes that chain: stage s's output, ranks[s] * size, must divide by the next stage's
 * ranks (stage 0 after the last). size = m * j with m = ranks[s+1] / gcd(ranks[s], ranks[s+1])
 * makes ranks[s] * size a multiple of lcm(ranks[s], ranks[s+1]); j from `k`, so size <= 6.
 */
function chainedSize(ranks, s, k) {
  const next = ranks[(s + 1) % ranks.length];
  const m = next / gcd(ranks[s], next);
  return m * (1 + ((k - 1) % Math.floor(6 / m)));
}

/** The pipeline stage of kind `kind` at index s (no failure): the fixtures the other tests use. */
function plainStage(kind, s, ranks, size, exec = 'c', protocol = 1) {
  const name = `${KERNEL[kind]}_${s}`;
  if (kind === 'ts') return { name, kind, ranks, size, module: join(fixtures, 'pipeline', 'shift.ts') };
  if (kind === 'c') return { name, kind, ranks, size, source: join(fixtures, 'pipeline', 'third.c'), function: 'third' };
  if (kind === 'python') return { name, kind, ranks, size, module: join(fixtures, 'stages', 'quarter.py'), python: PY };
  if (exec === 'py') return { name, kind, ranks, size, command: [PY, join(fixtures, 'exec_stage.py')] };
  if (exec === 'sdk') return { name, kind, ranks, size, command: [failStage], protocol, ...(protocol === 2 ? { times: true } : {}) };
  return { name, kind, ranks, size, command: [execStage] };
}

/** The groups of --sizes for per-stage output sizes: Array1 (the last stage's) first, then Array2.. */
const sizesFlag = (groups) => groups.map((out) => [out[out.length - 1], ...out.slice(0, -1)].join(',')).join('/');

/** Every process seen below `pid` while the run lasts, by pid and start time (so a reused pid is not it). */
function track(pid, everyMs) {
  const seen = new Map();
  /** The start time of a live process, undefined once it is gone or a zombie (it has exited: only its reaper is left to act). */
  const startOf = (p) => {
    try {
      const s = readFileSync(`/proc/${p}/stat`, 'utf8');
      const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
      return rest[0] === 'Z' ? undefined : rest[19];
    } catch {
      return undefined;
    }
  };
  const look = () => {
    for (const p of descendants(pid)) if (!seen.has(p)) seen.set(p, { start: startOf(p), cmd: cmdline(p) });
  };
  look();
  const timer = setInterval(look, everyMs);
  return {
    stop: () => clearInterval(timer),
    /** Seen processes that still run (zombies excepted: init may take a second or two to reap an orphan). */
    alive: () => [...seen].filter(([p, s]) => s.start !== undefined && startOf(p) === s.start),
  };
}

/**
 * Runs the CLI with a hard limit; resolves { code, signal, stdout, stderr, ms, left, timedOut }:
 * `left` lists the run's processes still running 5 s after it ended (they are then killed).
 */
async function runCli(args, { env = {}, limitMs, trackMs = 50 }) {
  const run = startCli(args, [], env);
  const procs = track(run.child.pid, trackMs);
  let timedOut = false;
  const killer = setTimeout(() => {
    timedOut = true;
    procs.stop();
    for (const [p] of procs.alive()) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {}
    }
    run.child.kill('SIGKILL');
  }, limitMs);
  const r = await run.exit;
  clearTimeout(killer);
  procs.stop();
  const end = Date.now() + 5000;
  while (procs.alive().length > 0 && Date.now() < end) await new Promise((res) => setTimeout(res, 50));
  const lingerMs = 5000 - (end - Date.now());
  const left = procs.alive().map(([p, s]) => `${p} ${s.cmd}`);
  for (const [p] of procs.alive()) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {}
  }
  return { ...r, left, timedOut, lingerMs };
}

/** The build the runs use; a rebuild while the properties run (another shell's build.sh) is worth a word in a failure. */
const BUILD = ['dist/master.js', 'dist/hub.js', 'dist/worker.js', 'build/Release/commloop_mpi.node', 'build/Release/commloop_kernel.node'];
const buildStamp = () => BUILD.map((f) => {
  try {
    return String(statSync(join(root, f)).mtimeMs);
  } catch {
    return 'missing';
  }
}).join(' ');
const BUILD_AT_START = buildStamp();
const rebuiltNote = () =>
  buildStamp() === BUILD_AT_START ? '' : '\n  NOTE: dist/ or build/ changed while the properties ran (a rebuild?): this failure may be the rebuild\'s; run again';

/** A compact account of a run for a failure message. */
const account = (what, file, args, r, env) =>
  `${what}${rebuiltNote()}\n  command: ${env ? Object.entries(env).map(([k, v]) => `${k}=${v} `).join('') : ''}node dist/master.js ${args.join(' ')}\n` +
  `  pipeline: ${readFileSync(file, 'utf8')}\n  exit: ${r.code}${r.signal ? ` (${r.signal})` : ''} after ${r.ms} ms${r.timedOut ? ' (killed: over the limit)' : ''}\n` +
  `  stdout: ${r.stdout.slice(0, 600)}\n  stderr: ${r.stderr.slice(0, 2000)}` +
  (r.left.length ? `\n  left behind: ${r.left.join(' | ')}` : '');

// --- 1. Differential: random pipelines against the reference ------------------------------

const kindArb = fc.oneof(
  { withCrossShrink: true }, // a counterexample's kinds shrink towards ts
  { weight: 3, arbitrary: fc.constant('ts') },
  { weight: 3, arbitrary: fc.constant('c') },
  { weight: 2, arbitrary: fc.constant('python') },
  { weight: 2, arbitrary: fc.constant('exec') },
);
const stageArb = fc.record({
  kind: kindArb,
  ranks: fc.integer({ min: 1, max: 4 }),
  /** Per size group: what picks the stage's output size (chainedSize). */
  k: fc.tuple(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 6 })),
  /** An exec stage's program: exec_stage.c, exec_stage.py, or the SDK stage (fail_stage.c, failing nowhere). */
  exec: fc.constantFrom('c', 'py', 'sdk'),
  protocol: fc.constantFrom(1, 2),
});
const caseArb = fc.record({
  // 1 to 5 stages, a ring of one (its output is its own next input) drawn a third of the time.
  stages: fc.oneof(
    { weight: 1, arbitrary: fc.array(stageArb, { minLength: 1, maxLength: 1 }) },
    { weight: 4, arbitrary: fc.array(stageArb, { minLength: 1, maxLength: 5 }) },
  ),
  /** Only kinds both transports run (python becomes ts, exec c), so the case runs on threads too. */
  portable: fc.boolean(),
  iterations: fc.integer({ min: 1, max: 5 }),
  /** Size groups, one per iteration in turn; one group goes through --sizes only if `flag`. */
  groups: fc.integer({ min: 1, max: 3 }),
  flag: fc.boolean(),
  mpi: fc.constantFrom(...MPI_TARGETS),
  threads: fc.option(fc.integer({ min: 1, max: 4 }), { nil: undefined }),
});

/** The pipeline, the size groups and the reference of a generated case. */
function materialize(c) {
  const kinds = c.stages.map((st) => (!c.portable ? st.kind : st.kind === 'python' ? 'ts' : st.kind === 'exec' ? 'c' : st.kind));
  const ranks = c.stages.map((s) => s.ranks);
  const groups = Array.from({ length: c.groups }, (_, g) => c.stages.map((st, s) => chainedSize(ranks, s, st.k[g])));
  const stages = c.stages.map((st, s) => plainStage(kinds[s], s, st.ranks, groups[0][s], st.exec, st.protocol));
  const ref = referenceSchedule(
    stages.map((st) => ({ ranks: st.ranks, f: FIXTURE_KERNELS[st.name.split('_')[0]] })),
    groups,
    0.5,
    c.iterations,
  );
  const targets = kinds.every((k) => THREADS_KINDS.includes(k)) ? ['threads/wasm', 'threads/native', c.mpi] : [c.mpi];
  return { spec: { stages, initial: 0.5 }, groups, ref, targets };
}

/** Cases drawn, CLI runs, and cases tried while shrinking (after the first counterexample). */
const counts = { diff: { cases: 0, runs: 0, shrinks: 0, failed: false }, fields: { cases: 0, runs: 0, shrinks: 0, failed: false }, fail: { cases: 0, runs: 0, shrinks: 0, failed: false } };
/** Wraps a property's body: counts its cases, and those after the first failure as shrinking. */
const counted = (n, body) => async (c) => {
  if (n.failed) n.shrinks++;
  else n.cases++;
  try {
    await body(c, n.cases + n.shrinks);
  } catch (e) {
    n.failed = true;
    throw e;
  }
};
const summary = (label, n) =>
  `property: ${label}: ${n.cases} cases${n.failed ? ` (the last failed; ${n.shrinks} more while shrinking)` : ''}, ${n.runs} runs, seed ${SEED} (COMMLOOP_PROPERTY_SEED=${SEED} replays)`;

const diff = suite('property: random pipelines equal the reference');

diff(`random pipelines of 1-5 stages on every transport they allow (${RUNS} cases)`, async () => {
  try {
    await fc.assert(
      fc.asyncProperty(caseArb, counted(counts.diff, async (c, id) => {
        const { spec, groups, ref, targets } = materialize(c);
        for (const target of targets) {
          const file = pipelineFile(`case-${id}-${target.replace('/', '-')}`, forTarget(spec, target));
          const args = ['--pipeline', file, '-i', String(c.iterations), '--json', ...TARGETS[target]];
          if (groups.length > 1 || c.flag) args.push('--sizes', sizesFlag(groups));
          if (onThreads(target) && c.threads !== undefined) args.push('--threads', String(c.threads));
          if (VERBOSE) console.log(`property: case ${id} ${target}: ${args.slice(2).join(' ')} ${JSON.stringify(spec.stages.map((s) => [s.name, s.ranks, s.size]))}`);
          counts.diff.runs++;
          const r = await runCli(args, { limitMs: 120_000, trackMs: 100 });
          if (VERBOSE) console.log(`property:   exit ${r.code} in ${r.ms} ms (its processes gone ${r.lingerMs} ms later)`);
          const fail = (what) => {
            throw new Error(account(`${target}: ${what}`, file, args, r));
          };
          if (r.code !== 0) fail(`exit ${r.code}, not 0`);
          let out;
          try {
            out = JSON.parse(r.stdout);
          } catch {
            fail('stdout is not one JSON object');
          }
          if (out.checksum !== ref.checksum) fail(`checksum ${out.checksum}, the reference's is ${ref.checksum}`);
          if (out.iterations !== c.iterations) fail(`${out.iterations} iterations, not ${c.iterations}`);
          if (r.stderr.split('\n').some((l) => l.startsWith('commloop'))) fail('a run that worked printed a "commloop" line');
          if (r.left.length) fail('processes of the run were left');
        }
      })),
      { numRuns: RUNS, seed: SEED, includeErrorInReport: true, plugins: [fc.interruptAfterTimeLimit(PROPERTY_LIMIT_MS)] },
    );
  } finally {
    console.log(summary('differential', counts.diff));
  }
});

diff.run();

// --- 2. Differential: random rings of fields against the reference -------------------------
//
// Every stage declares 1-4 output fields of random names, dtypes (all twelve), shapes and
// "to"; every kind runs one generic stage (test/fixtures/property/fields.*: the formula is in
// fields.c) over whatever fields arrive, and test/reference.mjs's referenceFields and
// propertyFieldsKernel compute the ring again. The run writes Array1's fields to a .npz, read
// here without the product's reader, and compared with the reference's byte for byte.

const DTYPE_NAMES = ['float64', 'float32', 'int64', 'int32', 'int16', 'int8', 'uint64', 'uint32', 'uint16', 'uint8', 'complex128', 'complex64'];
/** NumPy's descr of each dtype, as a .npy header says it. */
const NPY_DESCR = { float64: '<f8', float32: '<f4', int64: '<i8', int32: '<i4', int16: '<i2', int8: '|i1', uint64: '<u8', uint32: '<u4', uint16: '<u2', uint8: '|u1', complex128: '<c16', complex64: '<c8' };
const FIELD_CTOR = { float64: Float64Array, float32: Float32Array, int64: BigInt64Array, int32: Int32Array, int16: Int16Array, int8: Int8Array, uint64: BigUint64Array, uint32: Uint32Array, uint16: Uint16Array, uint8: Uint8Array, complex128: Float64Array, complex64: Float32Array };
const fieldArb = fc.record({
  name: fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,7}$/),
  dtype: fc.constantFrom(...DTYPE_NAMES),
  /** Per-rank shape: the first axis is made to chain (fieldShape), the second as drawn. */
  dims: fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 1, maxLength: 2 }),
  all: fc.oneof({ weight: 3, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
  /** Which value of INITIAL a field of Array1 starts from. */
  initial: fc.nat({ max: 3 }),
});
const fieldsStageArb = fc.record({
  kind: kindArb,
  ranks: fc.integer({ min: 1, max: 3 }),
  fields: fc.uniqueArray(fieldArb, { minLength: 1, maxLength: 4, selector: (f) => f.name }),
});
const fieldsCaseArb = fc.record({
  stages: fc.array(fieldsStageArb, { minLength: 1, maxLength: 3 }),
  portable: fc.boolean(),
  iterations: fc.integer({ min: 1, max: 4 }),
  mpi: fc.constantFrom(...MPI_TARGETS),
  threads: fc.option(fc.integer({ min: 1, max: 4 }), { nil: undefined }),
});

/**
 * A field's per-rank shape. A split field's rows over the producer's ranks, ranks * shape[0],
 * must divide by the next stage's ranks: shape[0] = m * j with m = next / gcd(ranks, next)
 * (as chainedSize), j from the drawn first dim, so shape[0] <= 3. A field "to": "all" takes its dims as drawn.
 */
function fieldShape(f, ranks, next) {
  if (f.all) return f.dims;
  const m = next / gcd(ranks, next);
  return [m * (1 + ((f.dims[0] - 1) % Math.floor(3 / m))), ...f.dims.slice(1)];
}
/** The number a field of Array1 starts from ("initial"), by its drawn index: each fits its dtype. */
const INITIAL = { float: [1, 0.1, -2.5, 3.75], int: [1, -3, 0, 7], uint: [1, 0, 3, 200] };
const initialOf = (f) => INITIAL[f.dtype.startsWith('uint') ? 'uint' : f.dtype.includes('int') ? 'int' : 'float'][f.initial];

/** The pipeline, the stages as the reference takes them, and the reference's Array1 of a generated case. */
function materializeFields(c) {
  const kinds = c.stages.map((st) => (!c.portable ? st.kind : st.kind === 'python' ? 'ts' : st.kind === 'exec' ? 'c' : st.kind));
  const ranks = c.stages.map((st) => st.ranks);
  const lists = c.stages.map((st, s) =>
    st.fields.map((f) => ({ name: f.name, dtype: f.dtype, shape: fieldShape(f, ranks[s], ranks[(s + 1) % ranks.length]), to: f.all ? 'all' : 'split', initial: initialOf(f) })),
  );
  const stages = kinds.map((kind, s) => {
    const fields = Object.fromEntries(lists[s].map((f) => [f.name, { dtype: f.dtype, shape: f.shape, ...(f.to === 'all' ? { to: 'all' } : {}) }]));
    const base = { name: `${kind}_${s}`, kind, ranks: ranks[s], fields };
    if (kind === 'ts') return { ...base, module: join(fixtures, 'property', 'fields.mjs') };
    if (kind === 'c') return { ...base, source: join(fixtures, 'property', 'fields.c'), function: 'property_fields' };
    if (kind === 'python') return { ...base, module: join(fixtures, 'property', 'fields.py'), python: PY };
    return { ...base, command: [fieldsExec], protocol: 3 };
  });
  const last = lists[lists.length - 1];
  const lastRanks = ranks[ranks.length - 1];
  const initial = Object.fromEntries(last.map((f) => [f.name, f.initial]));
  // The reference's Array1: each field whole, filled with its number (a complex one as (v, 0)).
  const whole = Object.fromEntries(
    last.map((f) => {
      const n = f.shape.reduce((a, b) => a * b, 1) * lastRanks;
      const a = new FIELD_CTOR[f.dtype](f.dtype.startsWith('complex') ? 2 * n : n);
      for (let i = 0; i < n; i++) {
        if (f.dtype.startsWith('complex')) a[2 * i] = f.initial;
        else a[i] = a instanceof BigInt64Array || a instanceof BigUint64Array ? BigInt(f.initial) : f.initial;
      }
      return [f.name, a];
    }),
  );
  const ref = referenceFields(
    lists.map((fields, s) => ({ ranks: ranks[s], fields, f: propertyFieldsKernel(fields) })),
    whole,
    c.iterations,
  );
  const targets = kinds.every((k) => THREADS_KINDS.includes(k)) ? ['threads/wasm', 'threads/native', c.mpi] : [c.mpi];
  return { spec: { stages, initial }, last, lastRanks, ref, targets };
}

/** A .npz's entries (stored, as NumPy's savez writes them), read with no help from the product: name -> { descr, shape, fortran, data }. */
function readNpz(buf) {
  const out = new Map();
  let at = 0;
  while (at + 30 <= buf.length && buf.readUInt32LE(at) === 0x04034b50) {
    if (buf.readUInt16LE(at + 8) !== 0) throw new Error(`entry at byte ${at} is compressed`);
    const size = buf.readUInt32LE(at + 18);
    const nameLen = buf.readUInt16LE(at + 26);
    const start = at + 30 + nameLen + buf.readUInt16LE(at + 28);
    const name = buf.toString('utf8', at + 30, at + 30 + nameLen);
    const npy = buf.subarray(start, start + size);
    if (npy.toString('latin1', 0, 6) !== '\x93NUMPY') throw new Error(`entry ${name} is not a .npy`);
    const v2 = npy[6] >= 2;
    const headerLen = v2 ? npy.readUInt32LE(8) : npy.readUInt16LE(8);
    const headerAt = v2 ? 12 : 10;
    const header = npy.toString('latin1', headerAt, headerAt + headerLen);
    const descr = /'descr': *'([^']+)'/.exec(header)?.[1];
    const fortran = /'fortran_order': *(True|False)/.exec(header)?.[1];
    const shape = /'shape': *\(([^)]*)\)/.exec(header)?.[1].split(',').map((d) => d.trim()).filter((d) => d !== '').map(Number);
    out.set(name, { descr, shape, fortran, data: npy.subarray(headerAt + headerLen) });
    at = start + size;
  }
  return out;
}

/** Where a run's fields differ from the reference's, in words; '' when they are the same bytes. */
function fieldsDiffer(npz, last, lastRanks, ref) {
  const want = last.map((f) => `${f.name}.npy`);
  if (JSON.stringify([...npz.keys()]) !== JSON.stringify(want)) return `the .npz holds ${JSON.stringify([...npz.keys()])}, not ${JSON.stringify(want)}`;
  for (const f of last) {
    const e = npz.get(`${f.name}.npy`);
    const shape = [lastRanks * f.shape[0], ...f.shape.slice(1)];
    if (e.descr !== NPY_DESCR[f.dtype] || e.fortran !== 'False' || JSON.stringify(e.shape) !== JSON.stringify(shape)) {
      return `field "${f.name}": the .npy says ${e.descr} ${JSON.stringify(e.shape)} fortran_order ${e.fortran}, not ${NPY_DESCR[f.dtype]} ${JSON.stringify(shape)} False`;
    }
    const r = ref[f.name];
    const bytes = Buffer.from(r.buffer, r.byteOffset, r.byteLength);
    if (!e.data.equals(bytes)) {
      const got = new FIELD_CTOR[f.dtype](new Uint8Array(e.data).buffer, 0, Math.floor(e.data.length / r.BYTES_PER_ELEMENT));
      let byte = 0;
      while (byte < Math.min(bytes.length, e.data.length) && bytes[byte] === e.data[byte]) byte++;
      const i = Math.floor(byte / r.BYTES_PER_ELEMENT);
      return `field "${f.name}" (${f.dtype}): ${e.data.length} bytes, the reference's ${bytes.length}; first difference at scalar ${i}: ${got[i]}, the reference's ${r[i]}\n    got: ${[...got].join(' ')}\n    ref: ${[...r].join(' ')}`;
    }
  }
  return '';
}

const fieldsDiff = suite('property: random rings of fields equal the reference');

fieldsDiff(`random rings of 1-3 stages of 1-4 random fields on every transport they allow (${FIELDS_RUNS} cases)`, async () => {
  try {
    await fc.assert(
      fc.asyncProperty(fieldsCaseArb, counted(counts.fields, async (c, id) => {
        const { spec, last, lastRanks, ref, targets } = materializeFields(c);
        for (const target of targets) {
          const out = join(dir, `fields-${id}-${target.replace('/', '-')}.npz`);
          const file = pipelineFile(`fields-${id}-${target.replace('/', '-')}`, { ...forTarget(spec, target), output: { file: out } });
          const args = ['--pipeline', file, '-i', String(c.iterations), '--json', ...TARGETS[target]];
          if (onThreads(target) && c.threads !== undefined) args.push('--threads', String(c.threads));
          const shown = spec.stages.map((s) => `${s.name}x${s.ranks}{${Object.entries(s.fields).map(([n, f]) => `${n}:${f.dtype}[${f.shape}]${f.to ? '>all' : ''}`).join(' ')}}`).join(' ');
          if (VERBOSE) console.log(`property: fields case ${id} ${target}: -i ${c.iterations} ${shown}`);
          counts.fields.runs++;
          const r = await runCli(args, { limitMs: 120_000, trackMs: 100 });
          if (VERBOSE) console.log(`property:   exit ${r.code} in ${r.ms} ms (its processes gone ${r.lingerMs} ms later)`);
          const fail = (what) => {
            throw new Error(account(`${target}: ${what}`, file, args, r));
          };
          if (r.code !== 0) fail(`exit ${r.code}, not 0`);
          let npz;
          try {
            npz = readNpz(readFileSync(out));
          } catch (e) {
            fail(`the output ${out} cannot be read: ${e.message}`);
          }
          const differ = fieldsDiffer(npz, last, lastRanks, ref);
          if (differ) fail(differ);
          let json;
          try {
            json = JSON.parse(r.stdout);
          } catch {
            fail('stdout is not one JSON object');
          }
          if (json.iterations !== c.iterations) fail(`${json.iterations} iterations, not ${c.iterations}`);
          // The report: each field's dtype, whole shape and values summed as doubles in order; the run's checksum, every field's in turn.
          const sumOf = (a) => [...a].reduce((s, v) => s + Number(v), 0);
          const report = Object.fromEntries(last.map((f) => [f.name, { dtype: f.dtype, shape: [lastRanks * f.shape[0], ...f.shape.slice(1)], checksum: sumOf(ref[f.name]) }]));
          if (JSON.stringify(json.fields) !== JSON.stringify(report)) fail(`"fields" ${JSON.stringify(json.fields)}, the reference's ${JSON.stringify(report)}`);
          const checksum = last.reduce((s, f) => [...ref[f.name]].reduce((t, v) => t + Number(v), s), 0);
          if (json.checksum !== checksum) fail(`checksum ${json.checksum}, the reference's ${checksum}`);
          if (r.stderr.split('\n').some((l) => l.startsWith('commloop'))) fail('a run that worked printed a "commloop" line');
          if (r.left.length) fail('processes of the run were left');
        }
      })),
      { numRuns: FIELDS_RUNS, seed: SEED, includeErrorInReport: true, plugins: [fc.interruptAfterTimeLimit(PROPERTY_LIMIT_MS)] },
    );
  } finally {
    console.log(summary('fields', counts.fields));
  }
});

fieldsDiff.run();

// --- 3. Failure injection: one stage, one rank, one way ------------------------------------

/** How a kind can fail on a target (what the fixture can do and the run can still report). */
function modesFor(kind, target) {
  // Under MPICH a rank SIGKILLed is named only when the hub's watchdog outruns Hydra's cleanup,
  // which SIGKILLs the rest; else the line names the host and the ranks it may be (README).
  return modesOn(kind, target).filter((m) => !(m === 'kill' && target.startsWith('mpich/')));
}
function modesOn(kind, target) {
  const threads = onThreads(target);
  const wasm = target.endsWith('/wasm');
  // Under threads a ts stage shares the run's process: SIGKILL would end the run unreported.
  if (kind === 'ts') return threads ? ['throw', 'exit', 'hang'] : ['throw', 'exit', 'kill', 'hang'];
  // A C kernel under WASM can only trap or spin; natively under threads it runs in the run's
  // process, where exit and SIGKILL end the run itself (a trap, SIGILL, is caught and named).
  if (kind === 'c') return wasm || threads ? ['throw', 'hang'] : ['throw', 'exit', 'kill', 'hang'];
  return ['throw', 'exit', 'kill', 'hang'];
}
const C_MODE = { exit: 1, kill: 2, throw: 3, hang: 4 };
const HANG_TIMEOUT_S = 4;
const FAIL_LIMIT_MS = 20_000;

const failArb = fc.record({
  target: fc.constantFrom('threads/wasm', 'spawn/native', 'mpmd/native', 'threads/native', 'spawn/wasm', 'mpmd/wasm', 'mpich/native', 'mpich/wasm'),
  stages: fc.array(
    fc.record({ kind: fc.constantFrom('ts', 'c', 'python', 'exec'), ranks: fc.integer({ min: 1, max: 3 }), k: fc.integer({ min: 1, max: 6 }) }),
    { minLength: 1, maxLength: 3 },
  ),
  iterations: fc.integer({ min: 1, max: 4 }),
  /** Which stage, rank, iteration and mode fail (each taken modulo what the case has). */
  // Unbiased: fast-check's bias towards small values would make stage 0, rank 0 and iteration 0 fail most of the time.
  stage: fc.noBias(fc.nat({ max: 11 })),
  rank: fc.noBias(fc.nat({ max: 11 })),
  iteration: fc.noBias(fc.nat({ max: 11 })),
  mode: fc.noBias(fc.nat({ max: 11 })),
  /** The exit code of mode exit (a few values: each C one is a build of its own, cached). */
  code: fc.constantFrom(3, 1, 42, 255),
  protocol: fc.constantFrom(1, 2),
  threads: fc.option(fc.integer({ min: 1, max: 4 }), { nil: undefined }),
});

/** The pipeline of a failure case, which stage/rank fails how, and the CLI's environment. */
function materializeFailure(c) {
  const threads = onThreads(c.target);
  // Under threads python and exec cannot run: they become ts and c.
  const kinds = c.stages.map((st) => (threads && st.kind === 'python' ? 'ts' : threads && st.kind === 'exec' ? 'c' : st.kind));
  const ranks = c.stages.map((st) => st.ranks);
  const sizes = c.stages.map((st, s) => chainedSize(ranks, s, st.k));
  const at = c.stage % kinds.length;
  const kind = kinds[at];
  const modes = modesFor(kind, c.target);
  const failure = { stage: at, rank: c.rank % ranks[at], iteration: c.iteration % c.iterations, mode: modes[c.mode % modes.length], code: c.code };
  const stages = kinds.map((k, s) => plainStage(k, s, ranks[s], sizes[s]));
  const spec = `${failure.rank}:${failure.iteration}:${failure.mode}:${failure.code}`;
  const env = {};
  const st = stages[at];
  if (kind === 'ts') {
    Object.assign(st, { module: join(fixtures, 'property', 'fail.ts'), export: 'fail' });
    env.COMMLOOP_PROPERTY_FAIL = spec; // through the CLI's environment: a ts stage has no "env"
  } else if (kind === 'c') {
    const flags = { FAIL_RANK: failure.rank, FAIL_ITER: failure.iteration, FAIL_MODE: C_MODE[failure.mode], ...(failure.mode === 'exit' ? { FAIL_CODE: failure.code } : {}) };
    Object.assign(st, { source: join(fixtures, 'property', 'fail.c'), function: 'third_fail', cflags: Object.entries(flags).map(([k, v]) => `-D${k}=${v}`) });
  } else if (kind === 'python') {
    Object.assign(st, { module: join(fixtures, 'property', 'fail.py'), env: { COMMLOOP_PROPERTY_FAIL: spec } });
  } else {
    Object.assign(st, { command: [failStage], protocol: c.protocol, env: { COMMLOOP_PROPERTY_FAIL: `${spec}:${at}` } });
  }
  return { spec: { stages, initial: 0.5 }, failure, name: st.name, env };
}

const fail = suite('property: an injected failure is named and ends the run');

fail(`random failures in random pipelines of 1-3 stages (${FAIL_RUNS} cases)`, async () => {
  try {
    await fc.assert(
      fc.asyncProperty(failArb, counted(counts.fail, async (c, id) => {
        const { spec, failure, name, env } = materializeFailure(c);
        const file = pipelineFile(`fail-${id}`, forTarget(spec, c.target));
        const hang = failure.mode === 'hang';
        const args = ['--pipeline', file, '-i', String(c.iterations), ...TARGETS[c.target]];
        if (hang) args.push('--timeout', String(HANG_TIMEOUT_S));
        if (onThreads(c.target) && c.threads !== undefined) args.push('--threads', String(c.threads));
        if (VERBOSE) console.log(`property: failure ${id} ${c.target}: stage ${name} rank ${failure.rank} iteration ${failure.iteration} ${failure.mode} ${JSON.stringify(spec.stages.map((s) => [s.name, s.ranks, s.size]))}`);
        counts.fail.runs++;
        const r = await runCli(args, { env, limitMs: FAIL_LIMIT_MS });
        if (VERBOSE) console.log(`property:   exit ${r.code} in ${r.ms} ms: ${r.stderr.split('\n').find((l) => l.startsWith('commloop: '))}`);
        const what = `${c.target}: stage "${name}" rank ${failure.rank} fails (${failure.mode}${failure.mode === 'exit' ? ` ${failure.code}` : ''}) at iteration ${failure.iteration}`;
        const check = (ok, why) => {
          if (!ok) throw new Error(account(`${what}: ${why}`, file, args, r, env));
        };
        check(!r.timedOut, `the run did not end within ${FAIL_LIMIT_MS} ms`);
        check(r.code === 1, `exit ${r.code}${r.signal ? ` (${r.signal})` : ''}, not 1`);
        const ours = r.stderr.split('\n').filter((l) => l.startsWith('commloop: '));
        check(ours.length === 1, `${ours.length} lines start with "commloop: ", not 1`);
        const host = onThreads(c.target) ? `(?: on ${escapeRe(HOST)})?` : ` on ${escapeRe(HOST)}`;
        // A hang too: every failing fixture is a project stage (ts, c, the Python runner, the C
        // SDK), which watches its own compute (docs/PROTOCOL.md, "A rank that never returns").
        check(new RegExp(`^commloop: stage "${name}" rank ${failure.rank}${host}: `).test(ours[0]), `the line does not name stage "${name}" rank ${failure.rank}`);
        check(r.left.length === 0, 'processes of the run were left 5 s after it ended');
      })),
      { numRuns: FAIL_RUNS, seed: SEED, includeErrorInReport: true, plugins: [fc.interruptAfterTimeLimit(PROPERTY_LIMIT_MS)] },
    );
  } finally {
    console.log(summary('failure injection', counts.fail));
  }
});

fail.run();
