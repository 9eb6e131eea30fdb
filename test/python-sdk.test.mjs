// The Python runner over the C SDK (python/commloop_stage_c.py driving
// python/commloop_stage_lib.c, built here into a temp dir) as an exec stage of the TypeScript
// hub on Open MPI, against the same module run by the mpi4py runner (kind "python"): the
// final bytes of protocol 2 (with step times and a checkpoint resumed through save and load)
// and of protocol 3 (fields), and a raising function's one line, must be the same.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { MPI_MISSING, cli, haveMpi, pipelineFiles, root } from './helpers.mjs';

const PY = '/usr/bin/python3';
if (!haveMpi()) throw new Error(MPI_MISSING);
if (spawnSync('mpicc.openmpi', ['--version']).error) throw new Error('mpicc.openmpi is missing: apt-get install -y libopenmpi-dev');
if (spawnSync(PY, ['-c', 'import mpi4py, numpy']).status !== 0) {
  throw new Error(`${PY} cannot import mpi4py and numpy (the reference runner): apt-get install -y python3-mpi4py python3-numpy`);
}

const { dir, file: pipelineFile } = pipelineFiles('pysdk');
const lib = join(dir, 'libcommloop_stage.openmpi.so');
const cc = spawnSync('mpicc.openmpi', ['-O2', '-ffp-contract=off', '-Wall', '-Wextra', '-shared', '-fPIC', `-I${join(root, 'include')}`, '-o', lib, join(root, 'python', 'commloop_stage_lib.c')], { encoding: 'utf8' });
if (cc.status !== 0) throw new Error(`python/commloop_stage_lib.c does not build: ${cc.stderr}`);
const fields = join(root, 'test', 'fixtures', 'fields');

// Full-mantissa values from the first iteration on, and a state of 3 float64 that feeds the
// output, saved as a .npy (format 2) and loaded back on resume.
const module = join(dir, 'stage.py');
writeFileSync(
  module,
  `import numpy as np
acc = np.zeros(3)
def transform(x, out, ctx):
    global acc
    j = np.arange(len(out))
    out[:] = x[j % len(x)] * 0.37 + 1e9 / (ctx.iteration * 3 + ctx.rank + j + 0.5) - 0.3 + acc[j % 3]
    acc = acc * 0.5 + x[:1] / 7
def save(ctx):
    return acc
def load(state, ctx):
    global acc
    acc = state.copy()
def fails(x, out, ctx):
    if ctx.iteration == 3 and ctx.rank == 1:
        raise ValueError('not this one\\nrank 1 gave up at iteration 3')
    out[:] = 1
`,
);

/** A stage of `module`'s `fn`: the mpi4py runner (kind "python") or the C SDK's (an exec stage). */
function stage(runner, { name = 'a', ranks = 2, fn = 'transform', mod = module, protocol = 2, ...rest }) {
  if (runner === 'mpi4py') return { name, kind: 'python', ranks, module: mod, function: fn, python: PY, ...rest };
  const command = [PY, join(root, 'python', 'commloop_stage_c.py'), mod, fn, name];
  return { name, kind: 'exec', ranks, protocol, command, env: { COMMLOOP_STAGE_LIB: lib }, ...rest };
}

/** Runs a pipeline with --json; returns the result and the output file's bytes. */
function run(name, spec, args, out) {
  const r = cli(['--pipeline', pipelineFile(name, { ...spec, output: { file: join(dir, out) } }), ...args, '--json']);
  assert.is(r.status, 0, `${name}: ${r.stderr}`);
  return { result: JSON.parse(r.stdout), bytes: readFileSync(join(dir, out)) };
}

const same = suite('the C SDK runner gives the mpi4py runner\'s bytes');

same('protocol 2: spawn and MPMD, with step times, and a run resumed through save and load', () => {
  // The python stage last: its output is the final array, every element compared.
  const ring = (runner, extra = {}) => ({ stages: [{ name: 'b', kind: 'c', ranks: 2, size: 3, source: 'builtin:halffirst' }, stage(runner, { size: 5, ...extra })], initial: 1 });
  const want = run('v2-mpi4py', ring('mpi4py'), ['-i', '12', '--launch', 'mpmd'], 'want.npy');
  const spawned = run('v2-spawn', ring('c', { times: true }), ['-i', '12', '--launch', 'spawn', '--breakdown'], 'spawn.npy');
  assert.is(spawned.result.checksum, want.result.checksum);
  assert.ok(spawned.bytes.equals(want.bytes), 'final array, byte for byte (spawn)');
  // The stage shipped its own step times: a compute per rank.
  assert.is(spawned.result.breakdown.stages[1].rankComputeS.length, 2);
  const ck = join(dir, 'ck');
  run('v2-first', ring('c', { state: true }), ['-i', '7', '--launch', 'mpmd', '--checkpoint', ck], 'first.npy');
  const resumed = run('v2-resume', ring('c', { state: true }), ['-i', '12', '--launch', 'mpmd', '--checkpoint', ck, '--resume'], 'resumed.npy');
  assert.is(resumed.result.resumedFrom, 7);
  assert.is(resumed.result.checksum, want.result.checksum);
  assert.ok(resumed.bytes.equals(want.bytes), 'final array, byte for byte (resumed at 7)');
});

same('protocol 3: a python transform of fields (test/fixtures/fields/sample.py) in a ring of fields', () => {
  const SAMPLE = { p: { dtype: 'float32', shape: [2, 3] }, k: { dtype: 'int64', to: 'all' }, z: { dtype: 'complex64', shape: [2] } };
  const MODEL = { x: { dtype: 'float64', shape: [3] }, n: { dtype: 'int32', shape: [3] }, g: { dtype: 'uint8', shape: [3], to: 'all' } };
  const ring = (runner) => ({
    stages: [
      stage(runner, { name: 'sample', ranks: 3, mod: join(fields, 'sample.py'), protocol: 3, fields: SAMPLE }),
      { name: 'model', kind: 'ts', ranks: 2, module: join(fields, 'model.mjs'), fields: MODEL },
    ],
    initial: { x: 0.1, g: 7 },
  });
  const want = run('v3-mpi4py', ring('mpi4py'), ['-i', '8', '--launch', 'mpmd'], 'want.npz');
  const got = run('v3-c', ring('c'), ['-i', '8', '--launch', 'mpmd'], 'got.npz');
  assert.is(got.result.checksum, want.result.checksum);
  assert.equal(got.result.fields, want.result.fields);
  assert.ok(got.bytes.equals(want.bytes), 'final fields (.npz), byte for byte');
});

same.run();

const fail = suite('the C SDK runner\'s failures');

// The mpi4py runner's line for the same exception, as test/stages.test.mjs holds it.
fail('a raising function fails the run with the mpi4py runner\'s line: stage, rank, type, last line of the message', () => {
  const file = pipelineFile('fail', { stages: [stage('c', { fn: 'fails', size: 2 })] });
  const r = cli(['--pipeline', file, '-i', '10', '--launch', 'mpmd']);
  assert.is(r.status, 1, r.stderr);
  // The whole of stderr: the stage's report, turned into the hub's one line (nothing else printed).
  assert.match(r.stderr, new RegExp(`^commloop: stage "a" rank 1 on ${hostname()}: ValueError: rank 1 gave up at iteration 3( \\(Open MPI's messages: \\S+\\))?\\n$`), r.stderr);
});

fail.run();
