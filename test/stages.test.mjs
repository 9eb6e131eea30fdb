// Stages written as one function: `kind: "python"` (python/commloop_stage.py) and C stages
// built with the SDK (include/commloop_stage.h), in both launch modes, against the
// references; their failure report; the checks that stop a run before anything starts.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { MPI_MISSING, cli, cliJson, haveMpi, pipelineFiles, root } from './helpers.mjs';
import { FIXTURE_KERNELS, fullMantissa, referencePipeline, sameBits } from './reference.mjs';

const PY = '/usr/bin/python3';
if (!haveMpi()) throw new Error(MPI_MISSING);
if (spawnSync('mpicc.openmpi', ['--version']).error) throw new Error('mpicc.openmpi is missing: apt-get install -y libopenmpi-dev');
if (spawnSync(PY, ['-c', 'import mpi4py, numpy']).status !== 0) {
  throw new Error(`${PY} cannot import mpi4py and numpy: apt-get install -y python3-mpi4py python3-numpy`);
}

const fixtures = join(root, 'test', 'fixtures');
const stages = join(fixtures, 'stages');
const example = join(root, 'examples', 'python-stage');
const runner = join(root, 'python', 'commloop_stage.py');
const { dir, file: pipelineFile } = pipelineFiles('stages');
/** The demo ring (-p 2, sizes 10,1000,1000000, 5 iterations): `node dist/master.js --json -p 2 -i 5`. */
const DEMO_5 = 11431291.134835951;


const SHIFT = { name: 'shift', kind: 'ts', ranks: 2, size: 6, module: join(fixtures, 'pipeline', 'shift.ts') };
const THIRD = { name: 'third', kind: 'c', ranks: 3, size: 4, source: join(fixtures, 'pipeline', 'third.c'), function: 'third' };
const QUARTER = { name: 'quarter', kind: 'python', ranks: 2, size: 3, module: join(stages, 'quarter.py'), python: PY };

/** The reference of a ring of the fixtures' kernels from 0.5; `add` is what quarter's env and cwd add. */
const ref = (ring, iterations, add = 0) =>
  referencePipeline(
    ring.map((s) => {
      const f = FIXTURE_KERNELS[s.name];
      return { ranks: s.ranks, size: s.size, f: add && s.name === 'quarter' ? (...a) => f(...a).map((v) => v + add) : f };
    }),
    0.5,
    iterations,
  );

const LAUNCHES = [['--launch', 'spawn'], ['--launch', 'mpmd']];

const bits = suite('python stages: same bits');

bits('the example\'s halfmean and halffirst equal the built-ins bit for bit on full-mantissa data', () => {
  const x = fullMantissa(4099);
  const k = 7;
  const code = `import sys, numpy as np; sys.path.insert(0, ${JSON.stringify(example)}); import stage
from collections import namedtuple
x = np.frombuffer(sys.stdin.buffer.read(), dtype=np.float64)
ctx = namedtuple('C', 'rank nranks iteration')(3, 4, 0)
a, b = np.empty(${k}), np.empty(${k})
stage.transform(x, a, ctx); stage.halffirst(x, b, ctx)
sys.stdout.buffer.write(a.tobytes() + b.tobytes())`;
  const out = execFileSync(PY, ['-c', code], { input: Buffer.from(x.buffer) });
  const got = new Float64Array(out.buffer, out.byteOffset, 2 * k);
  let s = 0;
  for (const v of x) s += v; // left to right, as the TS halfmean
  const want = Float64Array.from({ length: 2 * k }, (_, j) => (j < k ? s / x.length / 2 + (3 * k + j) : x[0] / 2 + (3 * k + j - k)));
  assert.ok(sameBits(got, want), `${got} vs ${want}`);
  // And the pairwise np.sum would not have done: the data tell the two orders apart.
  const pairwise = Number(execFileSync(PY, ['-c', 'import sys, numpy as np; print(repr(float(np.sum(np.frombuffer(sys.stdin.buffer.read())))))'], { input: Buffer.from(x.buffer) }));
  assert.is.not(pairwise, s);
});

for (const extra of LAUNCHES) {
  bits(`examples/python-stage/ring.json (ts1, ts2 in Python) -p 2 -i 5 ${extra.join(' ')}: the TS demo's checksum`, () => {
    const r = cliJson(['--pipeline', join(example, 'ring.json'), '-p', '2', '-i', '5', ...extra]);
    assert.is(r.checksum, DEMO_5);
    assert.equal(r.stages.map((s) => s.kind), ['python', 'c', 'python']);
  });
}

bits('the whole demo ring in Python (halffirst too) gives the demo\'s checksum', () => {
  const py = (name, size, fn) => ({ name, kind: 'python', ranks: 2, size, module: join(example, 'stage.py'), function: fn });
  const file = pipelineFile('all-py', { stages: [py('ts1', 1000, 'transform'), py('c', 1000000, 'halffirst'), py('ts2', 10, 'transform')] });
  assert.is(cliJson(['--pipeline', file, '-i', '5']).checksum, DEMO_5);
});

bits.run();

const ring = suite('python stages in a user ring');

for (const extra of LAUNCHES) {
  ring(`ts + c + python ${extra.join(' ')}: the reference's checksum; prints stay off stdout`, () => {
    const r = cli(['--pipeline', pipelineFile('three', { stages: [SHIFT, THIRD, QUARTER], initial: 0.5 }), '-i', '5', '--json', ...extra]);
    assert.is(r.status, 0, r.stderr);
    assert.is(JSON.parse(r.stdout).checksum, ref([SHIFT, THIRD, QUARTER], 5).checksum);
    assert.match(r.stderr, /^quarter\.py rank 1 pid \d+$/m);
  });
}

// env goes through env(1) and cwd through wdir / -wdir: quarter.py adds $QUARTER_ADD and ./add.txt.
const cwdDir = join(dir, 'cwd');
mkdirSync(cwdDir);
writeFileSync(join(cwdDir, 'add.txt'), '2\n');
const ENV = { QUARTER_ADD: '0.25', QUARTER_READ_CWD: '1' };
for (const extra of LAUNCHES) {
  ring(`a python stage's env and cwd ${extra.join(' ')}`, () => {
    const file = pipelineFile('env', { stages: [SHIFT, THIRD, { ...QUARTER, env: ENV, cwd: cwdDir }], initial: 0.5 });
    assert.is(cliJson(['--pipeline', file, '-i', '4', ...extra]).checksum, ref([SHIFT, THIRD, QUARTER], 4, 2.25).checksum);
  });
}

ring('an exec stage\'s env (the Python runner started by hand), spawn and mpmd', () => {
  const exec = { name: 'quarter', kind: 'exec', ranks: 2, size: 3, command: [PY, runner, join(stages, 'quarter.py'), 'transform', 'quarter'], env: { QUARTER_ADD: '0.25' } };
  const file = pipelineFile('exec-env', { stages: [SHIFT, THIRD, exec], initial: 0.5 });
  for (const extra of LAUNCHES) assert.is(cliJson(['--pipeline', file, '-i', '4', ...extra]).checksum, ref([SHIFT, THIRD, QUARTER], 4, 0.25).checksum, extra[1]);
});

ring('with env the rank\'s pid is still the stage\'s: a rank that exits is reported by that pid', () => {
  const file = pipelineFile('exit', { stages: [SHIFT, THIRD, { ...QUARTER, env: { QUARTER_EXIT_AT: '2' } }], initial: 0.5 });
  const r = cli(['--pipeline', file, '-i', '100']);
  assert.is(r.status, 1);
  const pid = r.stderr.match(/^quarter\.py rank 0 pid (\d+)$/m)?.[1];
  assert.ok(pid, r.stderr);
  assert.match(r.stderr, new RegExp(`\\ncommloop: stage "quarter" rank 0 on ${hostname()}: (exited with code \\d+|died) \\(pid ${pid}\\)`), r.stderr);
});

ring('by default the first python3 with mpi4py runs the stage: one without it earlier on PATH is passed over', () => {
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  // Debian's python3 without its site-packages: no NumPy, no mpi4py.
  writeFileSync(join(bin, 'python3'), `#!/bin/sh\nexec ${PY} -S "$@"\n`);
  chmodSync(join(bin, 'python3'), 0o755);
  const { python, ...noPython } = QUARTER;
  const file = pipelineFile('default-py', { stages: [SHIFT, THIRD, noPython], initial: 0.5 });
  const r = cli(['--pipeline', file, '-i', '3', '--json'], { env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } });
  assert.is(r.status, 0, r.stderr);
  assert.is(JSON.parse(r.stdout).checksum, ref([SHIFT, THIRD, QUARTER], 3).checksum);
});

ring.run();

const fail = suite('python stage failures');

const BOOM = { name: 'boom', kind: 'python', ranks: 2, size: 6, module: join(stages, 'boom.py'), python: PY };

// The stage's failure report names it, though Open MPI's abort takes every stage down after
// it: the supervisor prefers the report to whichever rank it then sees gone first.
for (const launch of LAUNCHES) {
  fail(`a raising function: exit 1 and one line naming the stage, rank and the exception (${launch[1]})`, () => {
    const r = cli(['--pipeline', pipelineFile('boom', { stages: [SHIFT, BOOM] }), '-i', '10', ...launch]);
    assert.is(r.status, 1);
    assert.match(r.stderr, new RegExp(`^commloop: stage "boom" rank 1 on ${hostname()}: ValueError: boom( \\(Open MPI's messages: \\S+\\))?\\n$`), r.stderr);
  });
}

const noMpi4py = join(dir, 'nompi', 'python3');
mkdirSync(join(dir, 'nompi'));
writeFileSync(noMpi4py, `#!/bin/sh\nexec ${PY} -S "$@"\n`);
chmodSync(noMpi4py, 0o755);

const BAD = [
  [{ ...QUARTER, python: '/nonexistent/python3' }, 'stage "quarter": "python" interpreter not found: /nonexistent/python3'],
  [
    { ...QUARTER, python: noMpi4py },
    `stage "quarter": "python" ${noMpi4py} cannot import mpi4py, numpy: run ${noMpi4py} -m pip install mpi4py numpy, or leave "python" out for the default`,
  ],
  [{ ...QUARTER, function: 'nope' }, `stage "quarter": "module" ${join(stages, 'quarter.py')} has no function "nope"`],
  [{ ...QUARTER, function: '2x' }, 'stage "quarter": "function" must be a Python identifier (got "2x")'],
  [
    { ...QUARTER, module: join(stages, 'broken.py') },
    `stage "quarter": "module" ${join(stages, 'broken.py')} fails to import: ModuleNotFoundError: No module named 'not_a_module_commloop_has'`,
  ],
  [{ ...QUARTER, module: join(stages, 'missing.py') }, `stage "quarter": "module" file not found: ${join(stages, 'missing.py')}`],
  [{ ...QUARTER, env: { '1X': 'a' } }, 'stage "quarter": "env" name "1X" is not a variable name (letters, digits, _; not starting with a digit)'],
  [{ ...QUARTER, env: { X: 1 } }, 'stage "quarter": "env" value of X must be a string (got 1)'],
  [{ ...QUARTER, env: ['X=1'] }, 'stage "quarter": "env" must be an object of variable names to strings (got ["X=1"])'],
  [{ ...QUARTER, cwd: join(dir, 'nope') }, `stage "quarter": "cwd" directory not found: ${join(dir, 'nope')}`],
  [
    { ...QUARTER, command: ['x'] },
    'stage "quarter": unknown field "command" for kind python (fields: name, kind, ranks, size, fields, module, function, python, cwd, env)',
  ],
];

for (const [stage, message] of BAD) {
  fail(`exit 2 before anything starts: ${message}`, () => {
    const r = cli(['--pipeline', pipelineFile('bad', { stages: [SHIFT, THIRD, stage], initial: 0.5 }), '-i', '2']);
    assert.is(r.stderr, `commloop: ${message}\n`);
    assert.is(r.status, 2);
  });
}

fail('a python stage needs the MPI transport', () => {
  const r = cli(['--pipeline', pipelineFile('threads', { stages: [SHIFT, THIRD, QUARTER] }), '-i', '2', '--transport', 'threads']);
  assert.is(r.stderr, 'commloop: stage "quarter": kind python runs only with --transport mpi (it is a separate MPI program)\n');
  assert.is(r.status, 2);
});

fail.run();

const sdk = suite('C stage SDK');

const thirdStage = join(dir, 'third_stage');
execFileSync('mpicc.openmpi', ['-O3', '-ffp-contract=off', '-Wall', '-Wextra', join(stages, 'third_stage.c'), join(fixtures, 'pipeline', 'third.c'), '-I', join(root, 'include'), '-o', thirdStage]);

// The SDK speaks both versions: v1 by default for an exec stage, v2 when the pipeline says so,
// here with sizes that change every iteration (the v2 step table cycles).
for (const extra of LAUNCHES) {
  for (const protocol of [undefined, 2]) {
    sdk(`third.c's kernel as an exec stage through the SDK, protocol ${protocol ?? '1 (default)'} ${extra.join(' ')}: the same checksum as the c stage`, () => {
      const exec = { name: 'third3', kind: 'exec', ranks: 3, size: 4, command: [thirdStage], ...(protocol ? { protocol } : {}) };
      const sizes = [[2, 6, 4], [4, 12, 8], [2, 3, 2]];
      const r = cliJson(['--pipeline', pipelineFile('sdk', { stages: [SHIFT, THIRD, exec], initial: 0.5 }), '-i', '7', '--sizes', sizes.map((g) => g.join(',')).join('/'), ...extra]);
      // The c stage's checksum on threads: the same bits as over MPI (mpi.test.mjs), a tenth of the time.
      const viaC = cliJson(['--pipeline', pipelineFile('sdk-c', { stages: [SHIFT, THIRD, { ...THIRD, name: 'third2' }], initial: 0.5 }), '-i', '7', '--sizes', sizes.map((g) => g.join(',')).join('/'), '--transport', 'threads']);
      assert.is(r.checksum, viaC.checksum);
    });
  }
}

sdk('an exec stage\'s "protocol" must be 1, 2 or 3', () => {
  const exec = { name: 'third', kind: 'exec', ranks: 3, size: 4, command: [thirdStage], protocol: 4 };
  const r = cli(['--pipeline', pipelineFile('sdk-bad', { stages: [SHIFT, exec], initial: 0.5 }), '-i', '2']);
  assert.is(r.status, 2);
  assert.is(r.stderr, 'commloop: stage "third": "protocol" must be 1, 2 or 3 (got 4)\n');
});

sdk('the built-in C worker (the SDK around halffirst) as an exec stage gives the demo\'s checksum', () => {
  const file = pipelineFile('worker-exec', {
    stages: [
      { name: 'ts1', kind: 'ts', ranks: 2, size: 1000, module: 'builtin:halfmean' },
      { name: 'c', kind: 'exec', ranks: 2, size: 1000000, command: [join(root, 'dist', 'commloop_c_worker'), 'halffirst'] },
      { name: 'ts2', kind: 'ts', ranks: 2, size: 10, module: 'builtin:halfmean' },
    ],
  });
  assert.is(cliJson(['--pipeline', file, '-i', '5']).checksum, DEMO_5);
});

sdk('an SDK stage started without a master says how to start it', () => {
  const r = spawnSync(thirdStage, [], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1', OMPI_MCA_btl_tcp_if_include: 'lo' },
  });
  assert.is(r.status, 1);
  assert.match(r.stderr, /^third_stage: ProtocolError: no master: start this from a commloop master \(spawn\) or as a stage of its MPMD mpirun$/m);
});

sdk.run();

const docs = suite('README');

readmeBlock('A stage in Python', (steps) => {
  docs('"A stage in Python" runs as written and prints the demo\'s checksum', () => {
    const r = spawnSync('bash', ['-e', '-c', steps], { cwd: root, encoding: 'utf8', timeout: 120_000 });
    assert.is(r.status, 0, r.stderr);
    assert.ok(r.stdout.includes(`checksum  ${DEMO_5}\n`), r.stdout);
  });
});

readmeBlock('A stage in C', (steps) => {
  docs('"A stage in C" builds and runs as written, with the same checksum as the c stage', () => {
    const cwd = mkdtempSync(join(tmpdir(), 'commloop-readme-c-'));
    for (const d of ['dist', 'include']) symlinkSync(join(root, d), join(cwd, d));
    const r = spawnSync('bash', ['-e', '-c', steps], { cwd, encoding: 'utf8', timeout: 120_000 });
    assert.is(r.status, 0, r.stderr);
    const sums = r.stdout.split('\n').filter((l) => l.startsWith('checksum'));
    assert.is(sums.length, 2, r.stdout);
    assert.is(sums[0], sums[1]);
  });
});

docs.run();

/** Calls `define` with the first ```sh block under the README heading `## title`. */
function readmeBlock(title, define) {
  const text = readFileSync(join(root, 'README.md'), 'utf8');
  const at = text.indexOf(`## ${title}\n`);
  const start = text.indexOf('```sh\n', at) + 6;
  define(at < 0 ? 'echo "README has no section ' + title + '" >&2; exit 1' : text.slice(start, text.indexOf('```', start)));
}
