// User pipelines: ts, c and exec stages over both transports and both launch modes,
// the demo as a pipeline file, invalid pipelines, the library API, .npy output.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { runPipeline, readArray, UsageError } from '../dist/index.js';
import { MPI_MISSING, cli, cliJson, haveMpi, pipelineFiles, root } from './helpers.mjs';
import { FIXTURE_KERNELS, referencePipeline, sameBits } from './reference.mjs';

if (!haveMpi()) throw new Error(MPI_MISSING);

const fixtures = join(root, 'test', 'fixtures');
/** Pipeline JSON files in a temp dir; module/source paths point at the fixtures. */
const { dir, file: pipelineFile } = pipelineFiles('pipeline');
const execStage = join(dir, 'exec_stage');
execFileSync('mpicc.openmpi', ['-O2', '-ffp-contract=off', '-o', execStage, join(fixtures, 'exec_stage.c')]);


const SHIFT = { name: 'shift', kind: 'ts', ranks: 2, size: 6, module: join(fixtures, 'pipeline', 'shift.ts') };
const THIRD = { name: 'third', kind: 'c', ranks: 3, size: 4, source: join(fixtures, 'pipeline', 'third.c'), function: 'third' };
const QUARTER = { name: 'quarter', kind: 'exec', ranks: 2, size: 3, command: [execStage] };
const QUARTER_PY = { name: 'quarter', kind: 'exec', ranks: 2, size: 3, command: ['/usr/bin/python3', join(fixtures, 'exec_stage.py')] };

const ref = (stages, iterations) =>
  referencePipeline(
    stages.map((s) => ({ ranks: s.ranks, size: s.size, f: FIXTURE_KERNELS[s.name] })),
    0.5,
    iterations,
  );

const two = pipelineFile('two', { stages: [SHIFT, THIRD], initial: 0.5 });
const three = pipelineFile('three', { stages: [SHIFT, THIRD, QUARTER], initial: 0.5 });
const threePy = pipelineFile('three-py', { stages: [SHIFT, THIRD, QUARTER_PY], initial: 0.5 });

const demo = suite('the demo as a pipeline');

for (const extra of [['--launch', 'spawn'], ['--launch', 'mpmd'], ['--transport', 'threads']]) {
  demo(`examples/demo.json -p 2 --sizes 10,1000,1000000 -i 5 ${extra.join(' ')} -> 11431291.134835951`, () => {
    const r = cliJson(['--pipeline', join(root, 'examples', 'demo.json'), '-p', '2', '--sizes', '10,1000,1000000', '-i', '5', ...extra]);
    assert.is(r.checksum, 11431291.134835951);
    assert.equal(r.stages.map((s) => s.name), ['ts1', 'c', 'ts2']);
  });
}

demo('the demo file with its own ranks and sizes equals the built-in demo at -p 2', () => {
  const a = cliJson(['--pipeline', join(root, 'examples', 'demo.json'), '-i', '3', '--transport', 'threads']);
  const b = cliJson(['-p', '2', '-i', '3', '--transport', 'threads']);
  assert.is(a.checksum, b.checksum);
});

demo.run();

const user = suite('user pipelines');

for (const extra of [
  ['--transport', 'threads', '--c-backend', 'wasm'],
  ['--transport', 'threads', '--c-backend', 'native'],
  ['--c-backend', 'native'],
  ['--c-backend', 'wasm'],
  ['--launch', 'mpmd'],
]) {
  user(`ts + c (two.json) ${extra.join(' ')}: the reference's checksum`, () => {
    const r = cliJson(['--pipeline', two, '-i', '4', ...extra]);
    assert.is(r.checksum, ref([SHIFT, THIRD], 4).checksum);
  });
}

for (const [file, label] of [[three, 'C exec stage'], [threePy, 'mpi4py exec stage']]) {
  for (const extra of [['--launch', 'spawn'], ['--launch', 'mpmd'], ['--launch', 'spawn', '--c-backend', 'wasm']]) {
    user(`ts + c + ${label} ${extra.join(' ')}: the reference's checksum`, () => {
      const r = cliJson(['--pipeline', file, '-i', '5', ...extra]);
      assert.is(r.checksum, ref([SHIFT, THIRD, QUARTER], 5).checksum);
    });
  }
}

user('the mpi4py stage printed in docs/PROTOCOL.md runs as the demo\'s ts1, spawn and mpmd', () => {
  const doc = readFileSync(join(root, 'docs', 'PROTOCOL.md'), 'utf8');
  const code = doc.slice(doc.indexOf('```python\n') + 10, doc.indexOf('```', doc.indexOf('```python\n') + 10));
  const script = join(dir, 'doc_stage.py');
  writeFileSync(script, code);
  const file = pipelineFile('doc', {
    stages: [
      { name: 'ts1', kind: 'exec', ranks: 2, size: 1000, command: ['/usr/bin/python3', script] },
      { name: 'c', kind: 'c', ranks: 2, size: 1000000, source: 'builtin:halffirst' },
      { name: 'ts2', kind: 'ts', ranks: 2, size: 10, module: 'builtin:halfmean' },
    ],
  });
  for (const launch of ['spawn', 'mpmd']) {
    assert.is(cliJson(['--pipeline', file, '-i', '5', '--launch', launch]).checksum, 11431291.134835951, launch);
  }
});

user('-p and --sizes override a pipeline\'s ranks and sizes', () => {
  const r = cliJson(['--pipeline', two, '-i', '3', '-p', '4', '--sizes', '8,12', '--transport', 'threads']);
  const stages = [{ ...SHIFT, ranks: 4, size: 12 }, { ...THIRD, ranks: 4, size: 8 }];
  assert.is(r.checksum, ref(stages, 3).checksum);
});

user('--hostfile naming localhost with slots, spawn and mpmd', () => {
  const hostfile = join(dir, 'hosts');
  writeFileSync(hostfile, 'localhost slots=16\n');
  for (const launch of ['spawn', 'mpmd']) {
    const r = cliJson(['--pipeline', two, '-i', '3', '--hostfile', hostfile, '--launch', launch]);
    assert.is(r.checksum, ref([SHIFT, THIRD], 3).checksum, launch);
  }
});

user.run();

const one = suite('a ring of one stage');

// Its output cannot be its own input: each rank would overwrite what the next still reads
// (shift reads x[j+1]), and over MPI the count sentinels landed on the input (NaN, exit 0).
// Sizes 3/5 change the output between iterations, so rank 0's output overlaps rank 1's input.
const ONE_TS = { ...SHIFT, size: 3 };
const oneRef = (stage, sizes, iterations) => {
  let a = new Float64Array(stage.ranks * sizes[0]).fill(0.5);
  for (let it = 0; it < iterations; it++) {
    const k = sizes[it % sizes.length];
    const m = a.length / stage.ranks;
    const out = new Float64Array(stage.ranks * k);
    for (let r = 0; r < stage.ranks; r++) out.set(FIXTURE_KERNELS[stage.name](a.subarray(r * m, (r + 1) * m), k, r, stage.ranks, it), r * k);
    a = out;
  }
  return a.reduce((x, y) => x + y, 0);
};
for (const [label, stage, extra] of [
  ['ts, threads', ONE_TS, ['--transport', 'threads']],
  ['ts, spawn', ONE_TS, ['--launch', 'spawn']],
  ['ts, mpmd', ONE_TS, ['--launch', 'mpmd']],
  ['exec (C SDK), spawn', { ...QUARTER, size: 3 }, ['--launch', 'spawn']],
  ['c, threads native', { ...THIRD, ranks: 2, size: 3 }, ['--transport', 'threads', '--c-backend', 'native']],
  ['c, spawn wasm', { ...THIRD, ranks: 2, size: 3 }, ['--c-backend', 'wasm']],
]) {
  one(`${label}: sizes 3/5, 4 iterations, the reference's checksum`, () => {
    const r = cliJson(['--pipeline', pipelineFile(`one-${label.replace(/\W+/g, '-')}`, { stages: [stage], initial: 0.5 }), '--sizes', '3/5', '-i', '4', ...extra]);
    assert.is(r.checksum, oneRef(stage, [3, 5], 4));
    assert.is(r.iterations, 4);
  });
}

one.run();

const bad = suite('invalid pipelines fail before anything starts');

const BAD = [
  [{ stages: [{ ...SHIFT, kind: 'rust' }] }, 'stage "shift": "kind" must be one of ts, c, exec, python (got "rust")'],
  [{ stages: [{ ...SHIFT, module: join(dir, 'nope.ts') }] }, `stage "shift": "module" file not found: ${join(dir, 'nope.ts')}`],
  [{ stages: [{ ...THIRD, source: join(fixtures, 'pipeline', 'missing.c') }] }, `stage "third": "source" file not found: ${join(fixtures, 'pipeline', 'missing.c')}`],
  [{ stages: [SHIFT, { ...THIRD, ranks: 0 }] }, 'stage "third": "ranks" must be a positive integer (got 0)'],
  [{ stages: [SHIFT, { ...THIRD, size: 2.5 }] }, 'stage "third": "size" must be a positive integer (got 2.5)'],
  [{ stages: [SHIFT, { ...THIRD, ranks: 5 }] }, 'sizes do not chain: stage "third" gets 12 elements from stage "shift", not divisible by its 5 ranks'],
  [{ stages: [SHIFT, { ...QUARTER, command: [join(dir, 'no-such-program')] }] }, `stage "quarter": "command" program not found: ${join(dir, 'no-such-program')}`],
  [{ stages: [SHIFT, SHIFT] }, 'stage "shift": "name" is used by an earlier stage'],
  [{ stages: [{ ...SHIFT, colour: 'red' }] }, 'stage "shift": unknown field "colour" for kind ts (fields: name, kind, ranks, size, fields, module, export)'],
  [{ stages: [] }, 'pipeline: "stages" must be a non-empty array'],
];

for (const [spec, message] of BAD) {
  bad(message, () => {
    const r = cli(['--pipeline', pipelineFile('bad', spec), '-i', '2']);
    assert.is(r.stderr, `commloop: ${message}\n`);
    assert.is(r.status, 2);
  });
}

bad('a C file that does not compile names the stage, the field and the error', () => {
  const src = join(fixtures, 'pipeline', 'broken.c');
  const r = cli(['--pipeline', pipelineFile('broken', { stages: [SHIFT, { ...THIRD, source: src, function: 'kernel' }] }), '-i', '2', '--c-backend', 'wasm']);
  assert.is(r.status, 2);
  assert.match(r.stderr, new RegExp(`^commloop: stage "third": "source" ${src} does not compile: .*error.*\\n$`));
});

bad('a C kernel with the wrong signature does not compile', () => {
  const src = join(fixtures, 'pipeline', 'wrongsig.c');
  const r = cli(['--pipeline', pipelineFile('wrongsig', { stages: [SHIFT, { ...THIRD, source: src, function: 'kernel' }] }), '-i', '2', '--transport', 'threads', '--c-backend', 'native']);
  assert.is(r.status, 2);
  assert.match(r.stderr, /^commloop: stage "third": "source" .*wrongsig\.c does not compile: .*conflicting types/);
});

bad('an exec stage needs the MPI transport', () => {
  const r = cli(['--pipeline', three, '-i', '2', '--transport', 'threads']);
  assert.is(r.stderr, 'commloop: stage "quarter": kind exec runs only with --transport mpi (it is a separate MPI program)\n');
  assert.is(r.status, 2);
});

bad('--sizes must give one size per array of the pipeline', () => {
  const r = cli(['--pipeline', two, '-i', '2', '--sizes', '1,2,3']);
  assert.is(r.stderr, 'commloop: --sizes must give 2 sizes per group for this 2-stage pipeline (got 3)\n');
  assert.is(r.status, 2);
});

bad.run();

const failing = suite('failing stages');

failing('a throwing TS transform on threads names the stage and rank', () => {
  const boom = { name: 'boom', kind: 'ts', ranks: 2, size: 6, module: join(fixtures, 'pipeline', 'throws.mjs') };
  const r = cli(['--pipeline', pipelineFile('boom', { stages: [boom, THIRD] }), '-i', '5', '--transport', 'threads']);
  assert.is(r.status, 1);
  assert.match(r.stderr, new RegExp(`^commloop: stage "boom" rank [01] on ${hostname()}: refusing iteration 2\\n$`));
});

failing('an exec rank that exits mid-run ends the run naming its stage', () => {
  const dying = { ...QUARTER, command: [execStage, '--fail-at', '3'] };
  const r = cli(['--pipeline', pipelineFile('dying', { stages: [SHIFT, THIRD, dying] }), '-i', '100']);
  assert.is(r.status, 1);
  // The stage's own last words come first; then exactly one line of ours.
  assert.match(r.stderr, /^exec_stage: failing on purpose at iteration 3\n/, r.stderr);
  const ours = r.stderr.split('\n').filter((l) => l.startsWith('commloop'));
  assert.is(ours.length, 1, r.stderr);
  assert.match(ours[0], new RegExp(`^commloop: stage "quarter" rank 0 on ${hostname()}: (exited with code 3|died) \\(pid \\d+\\)( \\(Open MPI's messages: \\S+\\))?$`));
});

failing('an exec program that is not an MPI program fails within --timeout', () => {
  const r = cli(['--pipeline', pipelineFile('notmpi', { stages: [SHIFT, THIRD, { ...QUARTER, command: ['/bin/sleep', '30'] }] }), '-i', '2', '--timeout', '3']);
  assert.is(r.status, 1);
  assert.match(r.stderr, /^commloop: stage "quarter": did not answer its spawn within 3000 ms( \(Open MPI's messages: \S+\))?\n$/, r.stderr);
});

failing.run();

const api = suite('library API');

api('runPipeline returns the final array, checksum and timings', async () => {
  const r = await runPipeline({ stages: [SHIFT, THIRD], initial: 0.5 }, { iterations: 4, transport: 'threads' });
  const expected = ref([SHIFT, THIRD], 4);
  assert.ok(sameBits(r.final, expected.final));
  assert.is(r.checksum, expected.checksum);
  assert.is(r.iterations, 4);
  for (const k of ['startS', 'firstIterS', 'lastIterS', 'meanIterS', 'totalS']) assert.type(r[k], 'number');
});

api('onIteration sees each iteration\'s array and can stop the loop', async () => {
  const seen = [];
  const r = await runPipeline({ stages: [SHIFT, THIRD], initial: 0.5 }, {
    iterations: 50,
    transport: 'threads',
    onIteration: (i, a) => {
      seen.push(a[0]);
      return i < 2;
    },
  });
  assert.is(r.iterations, 3);
  assert.is(r.stopped, true);
  assert.equal(seen, [1, 2, 3].map((n) => ref([SHIFT, THIRD], n).final[0]));
});

api('onIteration stops an MPI run early too, and every stage shuts down', async () => {
  const r = await runPipeline(two, { iterations: 1000, transport: 'mpi', onIteration: (i) => i < 1 });
  assert.is(r.iterations, 2);
  assert.is(r.checksum, ref([SHIFT, THIRD], 2).checksum);
});

api('an invalid pipeline object rejects with a UsageError', async () => {
  try {
    await runPipeline({ stages: [{ ...SHIFT, ranks: -1 }] }, { iterations: 1, transport: 'threads' });
    assert.unreachable();
  } catch (e) {
    assert.instance(e, UsageError);
    assert.is(e.message, 'stage "shift": "ranks" must be a positive integer (got -1)');
  }
});

api('output writes the final array (and every Nth) as .npy', async () => {
  const file = join(dir, 'out', 'final.npy');
  const r = await runPipeline({ stages: [SHIFT, THIRD], initial: 0.5, output: { file, every: 2 } }, { iterations: 4, transport: 'threads' });
  assert.ok(sameBits(readArray(file), r.final));
  assert.ok(sameBits(readArray(join(dir, 'out', 'final.2.npy')), ref([SHIFT, THIRD], 2).final));
  assert.ok(existsSync(join(dir, 'out', 'final.4.npy')));
});

api('initial from a .npy file', async () => {
  const { writeNpy } = await import('../dist/index.js');
  const file = join(dir, 'init.npy');
  writeNpy(file, new Float64Array(12).fill(0.5));
  const r = await runPipeline({ stages: [SHIFT, THIRD], initial: file }, { iterations: 3, transport: 'threads' });
  assert.is(r.checksum, ref([SHIFT, THIRD], 3).checksum);
});

api('examples/converge.mjs imports commloop by name and stops at the fixed point', () => {
  const r = spawnSync(process.execPath, [join(root, 'examples', 'converge.mjs')], { encoding: 'utf8', timeout: 60_000 });
  assert.is(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.is(lines[0], 'iteration 18: Array1 did not change, stopping');
  assert.match(lines[1], /^ran 19 of 1000 iterations, checksum 14497\.142857142813, [0-9.]+ us per iteration$/);
});

api.run();

const readme = suite('README');

readme('the "Your own pipeline" steps run as written, and all four runs agree', () => {
  const text = readFileSync(join(root, 'README.md'), 'utf8');
  const at = text.indexOf('```sh\nmkdir -p my-ring') + 6;
  const steps = text.slice(at, text.indexOf('```', at));
  const cwd = mkdtempSync(join(tmpdir(), 'commloop-readme-'));
  symlinkSync(join(root, 'dist'), join(cwd, 'dist'));
  const r = spawnSync('bash', ['-e', '-c', steps], { cwd, encoding: 'utf8', timeout: 120_000 });
  assert.is(r.status, 0, r.stderr);
  const sums = r.stdout.split('\n').filter((l) => l.startsWith('checksum'));
  const stages = [
    { ranks: 2, size: 8, f: (x, k, rank) => Float64Array.from({ length: k }, (_, j) => 2 * x[j % x.length] + rank) },
    { ranks: 2, size: 4, f: (x, k, rank) => Float64Array.from({ length: k }, (_, j) => x[j % x.length] / 4 + (rank * k + j)) },
  ];
  const expected = `checksum  ${referencePipeline(stages, 1, 10).checksum}`;
  assert.equal(sums, [expected, expected, expected, expected]);
  assert.ok(sameBits(readArray(join(cwd, 'my-ring', 'final.npy')), referencePipeline(stages, 1, 10).final));
});

readme.run();
