// A C stage's build flags: "cflags" reach the compiler and "libs" the linker on all three
// builds (emcc, gcc, mpicc), and -lm is linked by default, so a kernel calling sqrt gives
// the same bits on every transport and backend. Builds go to a fresh cache: a build left
// over from before (without -lm) must not hide a failing link.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MPI_MISSING, cli, haveMpi, root } from './helpers.mjs';
import { FIXTURE_KERNELS, referencePipeline } from './reference.mjs';

if (!haveMpi()) throw new Error(MPI_MISSING);

const fixtures = join(root, 'test', 'fixtures', 'pipeline');
const dir = mkdtempSync(join(tmpdir(), 'commloop-cflags-'));
const env = { ...process.env, COMMLOOP_CACHE: join(dir, 'cache') };
const run = (args) => cli(args, { env });

const SHIFT = { name: 'shift', kind: 'ts', ranks: 2, size: 6, module: join(fixtures, 'shift.ts') };
const ROOT = { name: 'root', kind: 'c', ranks: 3, size: 4, source: join(fixtures, 'root.c'), function: 'root', cflags: ['-DSCALE=3.0'] };

function pipelineFile(name, spec) {
  const file = join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify(spec));
  return file;
}

// Math.sqrt is correctly rounded, as IEEE 754 requires of C's sqrt: the reference is exact.
const rootRef = (x, k, r) => Float64Array.from({ length: k }, (_, j) => Math.sqrt(x[j % x.length] + j) * 3.0 + r);
const expected = referencePipeline(
  [
    { ranks: 2, size: 6, f: FIXTURE_KERNELS.shift },
    { ranks: 3, size: 4, f: rootRef },
  ],
  0.5,
  4,
).checksum;

const flags = suite('c stage cflags and libs');

const sqrtRing = pipelineFile('sqrt', { stages: [SHIFT, ROOT], initial: 0.5 });
for (const backend of [
  ['--transport', 'threads', '--c-backend', 'wasm'],
  ['--transport', 'threads', '--c-backend', 'native'],
  ['--transport', 'mpi', '--c-backend', 'native'],
  ['--transport', 'mpi', '--c-backend', 'wasm'],
]) {
  flags(`a kernel calling sqrt, SCALE from cflags, ${backend.join(' ')}: checksum ${expected}`, () => {
    const r = run(['--pipeline', sqrtRing, '-i', '4', '--json', ...backend]);
    assert.is(r.status, 0, r.stderr);
    assert.is(JSON.parse(r.stdout).checksum, expected);
  });
}

flags('without the cflags the source does not compile: they are what defines SCALE', () => {
  const { cflags: _none, ...bare } = ROOT;
  const r = run(['--pipeline', pipelineFile('bare', { stages: [SHIFT, bare] }), '-i', '1', '--transport', 'threads', '--c-backend', 'native']);
  assert.is(r.status, 2);
  assert.match(r.stderr, /^commloop: stage "root": "source" .*root\.c does not compile: .*SCALE must come from the stage's cflags/);
});

flags('libs reach the linker: a library that does not exist fails the link, naming it', () => {
  const spec = { stages: [SHIFT, { ...ROOT, libs: ['-lcommloop_no_such_lib'] }] };
  const r = run(['--pipeline', pipelineFile('nolib', spec), '-i', '1', '--transport', 'threads', '--c-backend', 'native']);
  assert.is(r.status, 2);
  assert.match(r.stderr, /^commloop: stage "root": "source" .*root\.c does not compile: .*commloop_no_such_lib/);
});

flags.run();

const bad = suite('invalid cflags and libs');

const BAD = [
  [{ ...ROOT, cflags: '-O2' }, 'stage "root": "cflags" must be an array of non-empty strings (got "-O2")'],
  [{ ...ROOT, libs: ['-lm', ''] }, 'stage "root": "libs" must be an array of non-empty strings (got ["-lm",""])'],
  [{ ...ROOT, libs: [7] }, 'stage "root": "libs" must be an array of non-empty strings (got [7])'],
  [
    { ...ROOT, cflags: ['-DSCALE=3.0', '-ffast-math'] },
    'stage "root": "cflags" must not contain -ffast-math (every build of a stage must give the same bits; -ffp-contract=off is always on)',
  ],
  [
    { ...ROOT, cflags: ['-ffp-contract=fast'] },
    'stage "root": "cflags" must not contain -ffp-contract=fast (every build of a stage must give the same bits; -ffp-contract=off is always on)',
  ],
  [{ ...ROOT, source: 'builtin:halffirst', function: undefined }, 'stage "root": "cflags" applies to a C source file, not to builtin:halffirst'],
  [{ ...SHIFT, cflags: ['-O2'] }, 'stage "shift": unknown field "cflags" for kind ts (fields: name, kind, ranks, size, fields, module, export)'],
];

for (const [stage, message] of BAD) {
  bad(`exits 2: ${message}`, () => {
    const r = run(['--pipeline', pipelineFile('bad', { stages: [stage.kind === 'ts' ? stage : SHIFT, ...(stage.kind === 'ts' ? [] : [stage])] }), '-i', '1']);
    assert.is(r.stderr, `commloop: ${message}\n`);
    assert.is(r.status, 2);
  });
}

bad.run();
