// What the docs promise about themselves and about a pipeline's edges: every path the
// README, --help and docs/ name exists; a stage's prints never reach the master's stdout;
// an exec stage's relative paths mean the pipeline file's directory.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { MPI_MISSING, cli, haveMpi, root } from './helpers.mjs';

const links = suite('paths named by the docs');

/** Paths a text names: markdown link targets (relative to the file) and `repo/paths` in backticks. */
function namedPaths(text, from) {
  const out = new Set();
  for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
    if (/^[a-z]+:/.test(target) || target.startsWith('#')) continue;
    out.add(resolve(from, target.split('#')[0]));
  }
  const repoPath = /(?:^|[\s`(])((?:src|transport|wasm|docs|examples|bench|test|include|python)\/[\w./-]*[\w/]|build\.sh|binding\.gyp|package\.json|LICENSE)(?=$|[\s`),:;])/gm;
  for (const [, p] of text.matchAll(repoPath)) out.add(join(root, p));
  return [...out];
}

const docs = ['README.md', ...readdirSync(join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
for (const doc of docs) {
  links(`every path ${doc} names exists`, () => {
    const file = join(root, doc);
    const missing = namedPaths(readFileSync(file, 'utf8'), dirname(file)).filter((p) => !existsSync(p));
    assert.equal(missing, []);
  });
}

links('every path --help names exists, docs/PIPELINES.md among them', () => {
  const r = cli(['--help']);
  assert.is(r.status, 0);
  const named = namedPaths(r.stdout, root);
  assert.ok(named.includes(join(root, 'docs/PIPELINES.md')), r.stdout);
  assert.equal(named.filter((p) => !existsSync(p)), []);
});

links('docs/API.md names every option of RunOptions and every field of RunResult', () => {
  const dts = readFileSync(join(root, 'dist', 'types', 'run.d.ts'), 'utf8');
  const api = readFileSync(join(root, 'docs', 'API.md'), 'utf8');
  for (const iface of ['RunOptions', 'RunResult']) {
    const at = dts.indexOf(`export interface ${iface} {`);
    const body = dts.slice(at, dts.indexOf('\n}', at));
    // Top-level members only (four spaces in tsc's output): nested object fields are not options.
    const names = [...body.matchAll(/^ {4}(\w+)\??:/gm)].map((m) => m[1]);
    assert.ok(names.length > 10, `${iface}: ${names}`);
    assert.equal(names.filter((n) => !api.includes(`\`${n}\``)), [], iface);
  }
});

links('the licence matches package.json', () => {
  const { license } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  assert.is(license, 'MIT');
  assert.match(readFileSync(join(root, 'LICENSE'), 'utf8'), /^MIT License\n/);
});

links.run();

const prints = suite('what a stage prints');
const dir = mkdtempSync(join(tmpdir(), 'commloop-docs-'));
const fixtures = join(root, 'test', 'fixtures');

// A TS stage that prints on every call, beside the C built-in: checksum 44 for 2 iterations
// at 2 ranks, size 4 (y = x + 1 from all-ones, then halffirst), the same as a silent ring.
writeFileSync(
  join(dir, 'loud.mjs'),
  `export function transform(input, output, ctx) {
  console.log('loud rank ' + ctx.rank + ' iteration ' + ctx.iteration);
  for (let j = 0; j < output.length; j++) output[j] = input[j % input.length] + 1;
}\n`,
);
const loudTs = { name: 'loud', kind: 'ts', ranks: 2, size: 4, module: 'loud.mjs' };
const c = { name: 'c', kind: 'c', ranks: 2, size: 4, source: 'builtin:halffirst' };
writeFileSync(join(dir, 'loud.json'), JSON.stringify({ stages: [loudTs, c] }));

const modes = [
  ['mpi spawn', []],
  ['mpi mpmd', ['--launch', 'mpmd']],
];
for (const [mode, flags] of [...modes, ['threads', ['--transport', 'threads']]]) {
  prints(`a ts stage that prints leaves --json valid (${mode}); its lines reach stderr labelled`, () => {
    if (mode !== 'threads' && !haveMpi()) throw new Error(MPI_MISSING);
    const r = cli(['--pipeline', join(dir, 'loud.json'), '-i', '2', '--json', ...flags]);
    assert.is(r.status, 0, r.stderr);
    assert.is(JSON.parse(r.stdout).checksum, 44);
    for (const rank of [0, 1]) for (const it of [0, 1]) assert.ok(r.stderr.includes(`[loud ${rank}] loud rank ${rank} iteration ${it}\n`), r.stderr);
  });
}

// An exec stage given as a script relative to the pipeline file, run from another
// directory: it must find the script, and what it prints must stay off stdout.
const execDir = mkdtempSync(join(tmpdir(), 'commloop-exec-'));
copyFileSync(join(fixtures, 'exec_stage.py'), join(execDir, 'stage.py'));
const quarter = { name: 'quarter', kind: 'exec', ranks: 2, size: 4, command: ['/usr/bin/python3', 'stage.py', '--print'] };
writeFileSync(join(execDir, 'ring.json'), JSON.stringify({ stages: [{ ...c, size: 4 }, quarter] }));
for (const [mode, flags] of modes) {
  prints(`an exec stage's relative script resolves against the pipeline file and its prints stay off stdout (${mode})`, () => {
    if (!haveMpi()) throw new Error(MPI_MISSING);
    const r = cli(['--pipeline', join(execDir, 'ring.json'), '-i', '2', '--json', ...flags], { cwd: tmpdir() });
    assert.is(r.status, 0, r.stderr);
    // halffirst of ones: 0.5 + (r*4 + j); quarter: y = x[j] / 4 + (r + 1); twice round.
    assert.is(JSON.parse(r.stdout).checksum, quarterRing(2));
    assert.ok(r.stderr.includes('exec_stage.py: rank 1 step 1\n'), r.stderr);
  });
}

/** The c -> quarter ring above, in JS, for `iterations` iterations from all-ones. */
function quarterRing(iterations) {
  let a = new Float64Array(8).fill(1);
  for (let i = 0; i < iterations; i++) {
    const b = new Float64Array(8);
    for (let r = 0; r < 2; r++) for (let j = 0; j < 4; j++) b[r * 4 + j] = a[r * 4] / 2 + (r * 4 + j);
    const q = new Float64Array(8);
    for (let r = 0; r < 2; r++) for (let j = 0; j < 4; j++) q[r * 4 + j] = b[r * 4 + (j % 4)] / 4 + (r + 1);
    a = q;
  }
  let s = 0;
  for (const v of a) s += v;
  return s;
}

prints.run();
