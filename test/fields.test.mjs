// Rings of fields (docs/PIPELINES.md, "Fields"): named, typed, shaped fields chained from
// stage to stage (split over the next stage's ranks, or whole to each), on threads and over
// MPI in both launch modes, against a plain reference compared byte for byte; the packed
// blocks and the copies between stages whose blocks differ; checkpoints of one .npy per
// field; the .npz output read by NumPy; every bad input's one line.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { runPipeline } from '../dist/index.js';
import { blockOf, duplicateKey, ringFields } from '../dist/internal.js';
import { MPI_MISSING, cli, haveMpi, pipelineFiles, root } from './helpers.mjs';
import { FIELD_KERNELS, referenceFields, sameBytes } from './reference.mjs';

if (!haveMpi()) throw new Error(MPI_MISSING);

const fixtures = join(root, 'test', 'fixtures', 'fields');
const { dir, file: pipelineFile } = pipelineFiles('fields');
const NUMPY = '/usr/bin/python3';

// sample: 3 ranks; model: 2 ranks. k goes whole to every rank of model, g to every rank of sample.
const SAMPLE_FIELDS = { p: { dtype: 'float32', shape: [2, 3] }, k: { dtype: 'int64', to: 'all' }, z: { dtype: 'complex64', shape: [2] } };
const MODEL_FIELDS = { x: { dtype: 'float64', shape: [3] }, n: { dtype: 'int32', shape: [3] }, g: { dtype: 'uint8', shape: [3], to: 'all' } };
const SAMPLE = { name: 'sample', kind: 'ts', ranks: 3, module: join(fixtures, 'sample.mjs'), fields: SAMPLE_FIELDS };
const MODEL = { name: 'model', kind: 'ts', ranks: 2, module: join(fixtures, 'model.mjs'), fields: MODEL_FIELDS };
const INITIAL = { x: 0.1, g: 7 };

const asList = (fields) => Object.entries(fields).map(([name, f]) => ({ name, dtype: f.dtype, shape: f.shape ?? [1], to: f.to ?? 'split' }));
/** The reference's final fields after `iterations`, from INITIAL. */
function reference(iterations, sample = SAMPLE, model = MODEL) {
  const initial = { x: new Float64Array(6).fill(INITIAL.x), n: new Int32Array(6).fill(1), g: new Uint8Array(6).fill(INITIAL.g) };
  return referenceFields(
    [
      { ranks: sample.ranks, fields: asList(sample.fields), f: FIELD_KERNELS.sample },
      { ranks: model.ranks, fields: asList(model.fields), f: FIELD_KERNELS.model },
    ],
    initial,
    iterations,
  );
}
function assertFields(got, want) {
  assert.equal(Object.keys(got), Object.keys(want));
  for (const k of Object.keys(want)) assert.ok(sameBytes(got[k], want[k]), `field ${k}: ${got[k]} vs ${want[k]}`);
}

const layout = suite('fields: blocks and chaining');

layout('a block packs its fields in order, each padded to 8 bytes', () => {
  const b = blockOf([
    { name: 'a', dtype: 'uint8', shape: [3] },
    { name: 'b', dtype: 'float64', shape: [2] },
    { name: 'c', dtype: 'int16', shape: [5] },
    { name: 'd', dtype: 'complex64', shape: [1] },
  ]);
  assert.equal(b.fields.map((f) => [f.offset, f.count]), [[0, 3], [8, 2], [24, 5], [40, 1]]);
  assert.is(b.words, 6);
});

layout('stages whose blocks line up share them; others are regrouped by byte copies', () => {
  const f = (name, dtype, shape, to = 'split') => ({ name, dtype, shape, to });
  // Equal ranks, no "to": "all": nothing copied either way.
  const same = ringFields([
    { name: 'a', ranks: 2, fields: [f('u', 'int32', [3]), f('v', 'float64', [1])] },
    { name: 'b', ranks: 2, fields: [f('w', 'float32', [2])] },
  ]);
  assert.equal(same.regroup, [undefined, undefined]);
  // 3 ranks of [2] int32 (8-byte blocks) to 2 ranks of [3] (12 bytes padded to 16): rank 0 reads
  // producer 0's two and producer 1's first, rank 1 producer 1's second and producer 2's two,
  // each as one copy (the producers' blocks are back to back).
  const split = ringFields([
    { name: 'a', ranks: 3, fields: [f('u', 'int32', [2])] },
    { name: 'b', ranks: 2, fields: [f('w', 'float64', [3])] },
  ]);
  assert.equal(split.in[1].fields[0].shape, [3]);
  assert.equal(split.regroup[0], [{ from: 0, to: 0, bytes: 12 }, { from: 12, to: 16, bytes: 12 }]);
  // "to": "all": every rank of the next stage gets the whole field (3 ranks x 1): 24 bytes, its block's start.
  const all = ringFields([
    { name: 'a', ranks: 3, fields: [f('k', 'int64', [1], 'all')] },
    { name: 'b', ranks: 2, fields: [f('w', 'float64', [3])] },
  ]);
  assert.equal(all.in[1].fields[0].shape, [3]);
  assert.equal(all.regroup[0], [{ from: 0, to: 0, bytes: 24 }, { from: 0, to: 24, bytes: 24 }]);
  // A one-stage ring copies even where the blocks line up: its output is not its input.
  assert.equal(ringFields([{ name: 'a', ranks: 2, fields: [f('u', 'int8', [3])] }]).regroup, [[{ from: 0, to: 0, bytes: 3 }, { from: 8, to: 8, bytes: 3 }]]);
});

layout('a key given twice in a pipeline\'s JSON is found with its path', () => {
  assert.is(duplicateKey('{"stages": [{"fields": {"a": {"dtype": "int8"}, "b": {}, "a": {}}}]}'), 'stages[0].fields.a');
  assert.is(duplicateKey('{"a": 1, "b": {"a": 2}}'), undefined);
});

layout.run();

const ring = suite('fields: a ring of mixed dtypes, every transport');

for (const [label, opts] of [
  ['threads', { transport: 'threads' }],
  ['mpi spawn', { transport: 'mpi', launch: 'spawn' }],
  ['mpi mpmd', { transport: 'mpi', launch: 'mpmd' }],
]) {
  ring(`${label}: the reference's fields, byte for byte (3 ranks to 2, "to": "all" both ways)`, async () => {
    const seen = [];
    const r = await runPipeline({ stages: [SAMPLE, MODEL], initial: INITIAL }, { iterations: 6, ...opts, onIteration: (i, a) => void seen.push([i, Object.keys(a), a.x.length]) });
    const want = reference(6);
    assertFields(r.final, want);
    assert.equal(Object.keys(r.fields), ['x', 'n', 'g']);
    assert.equal(r.fields.n, { dtype: 'int32', shape: [6], checksum: want.n.reduce((a, b) => a + b, 0) });
    assert.equal(seen[5], [5, ['x', 'n', 'g'], 6]);
  });
}

// The same ring with model as a C kernel of fields (test/fixtures/fields/model.c): native and WebAssembly, threads and MPI.
const MODEL_C = { name: 'model', kind: 'c', ranks: 2, source: join(fixtures, 'model.c'), function: 'model', fields: MODEL_FIELDS };
for (const [label, opts] of [
  ['threads, C as WebAssembly', { transport: 'threads', cBackend: 'wasm' }],
  ['threads, native C', { transport: 'threads', cBackend: 'native' }],
  ['mpi spawn, native C', { transport: 'mpi', launch: 'spawn', cBackend: 'native' }],
  ['mpi mpmd, C as WebAssembly', { transport: 'mpi', launch: 'mpmd', cBackend: 'wasm' }],
]) {
  ring(`${label}: a C kernel of fields gives the reference's fields, byte for byte`, async () => {
    const r = await runPipeline({ stages: [SAMPLE, MODEL_C], initial: INITIAL }, { iterations: 6, ...opts });
    assertFields(r.final, reference(6));
  });
}

// sample as a python stage (NumPy views by name) with model in TypeScript and in C.
const SAMPLE_PY = { name: 'sample', kind: 'python', ranks: 3, module: join(fixtures, 'sample.py'), python: NUMPY, fields: SAMPLE_FIELDS };
for (const [label, model, opts] of [
  ['mpi spawn, python and ts', MODEL, { transport: 'mpi', launch: 'spawn' }],
  ['mpi mpmd, python and native C', MODEL_C, { transport: 'mpi', launch: 'mpmd', cBackend: 'native' }],
]) {
  ring(`${label}: a python stage of fields gives the reference's fields, byte for byte`, async () => {
    const r = await runPipeline({ stages: [SAMPLE_PY, model], initial: INITIAL }, { iterations: 6, ...opts });
    assertFields(r.final, reference(6));
  });
}

ring('mpi: an exec stage of protocol 3 (the C SDK around model.c) gives the reference\'s fields, byte for byte', async () => {
  const exe = join(dir, 'model_exec');
  const cc = spawnSync('mpicc.openmpi', ['-O2', '-ffp-contract=off', `-I${join(root, 'include')}`, '-o', exe, join(fixtures, 'model_exec.c')], { encoding: 'utf8' });
  assert.is(cc.status, 0, cc.stderr);
  const exec = { name: 'model', kind: 'exec', ranks: 2, command: [exe], protocol: 3, fields: MODEL_FIELDS };
  const r = await runPipeline({ stages: [SAMPLE, exec], initial: INITIAL }, { iterations: 6, transport: 'mpi' });
  assertFields(r.final, reference(6));
});

ring('the output .npz is what NumPy reads: dtypes, shapes and values', async () => {
  const out = join(dir, 'ring.npz');
  const r = cli(['--pipeline', pipelineFile('ring', { stages: [SAMPLE, MODEL], initial: INITIAL, output: { file: out } }), '-i', '4', '--transport', 'threads']);
  assert.is(r.status, 0, r.stderr);
  const py = spawnSync(NUMPY, ['-c', 'import numpy, sys, json; d = numpy.load(sys.argv[1]); print(json.dumps({k: [str(d[k].dtype), list(d[k].shape), d[k].tobytes().hex()] for k in d.files}))', out], { encoding: 'utf8' });
  assert.is(py.status, 0, py.stderr);
  const want = reference(4);
  const hex = (a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('hex');
  assert.equal(JSON.parse(py.stdout), { x: ['float64', [6], hex(want.x)], n: ['int32', [6], hex(want.n)], g: ['uint8', [6], hex(want.g)] });
});

ring('a checkpoint keeps one .npy per field; taken on threads, it resumes over MPI to the uninterrupted fields', async () => {
  const ck = join(dir, 'ck');
  const spec = { stages: [SAMPLE, MODEL], initial: INITIAL };
  await runPipeline(spec, { iterations: 5, transport: 'threads', checkpoint: { dir: ck } });
  const folder = join(ck, readdirSync(ck).find((d) => d.startsWith('checkpoint-')));
  const manifest = JSON.parse(readFileSync(join(folder, 'manifest.json'), 'utf8'));
  // A rank's block: x 24 bytes, n 12 padded to 16, g 3 padded to 8: 6 words, 2 ranks.
  assert.equal(manifest.array1, { length: 12, fields: { x: 'array1.x.npy', n: 'array1.n.npy', g: 'array1.g.npy' } });
  const py = spawnSync(NUMPY, ['-c', 'import numpy, sys; a = numpy.load(sys.argv[1]); print(a.dtype, a.shape, a.sum())', join(folder, 'array1.n.npy')], { encoding: 'utf8' });
  const want5 = reference(5);
  assert.is(py.stdout.trim(), `int32 (6,) ${want5.n.reduce((a, b) => a + b, 0)}`);
  const r = await runPipeline(spec, { iterations: 9, transport: 'mpi', launch: 'mpmd', checkpoint: { dir: ck }, resume: true });
  assert.is(r.resumedFrom, 5);
  assertFields(r.final, reference(9));
});

ring('a transform that replaces an output field fails the run naming stage, rank and field (threads and MPI)', () => {
  const bad = { ...MODEL, ranks: 1, module: join(fixtures, 'replace.mjs') };
  const file = pipelineFile('replace', { stages: [{ ...SAMPLE, ranks: 1 }, bad] });
  for (const t of ['threads', 'mpi']) {
    const r = cli(['--pipeline', file, '-i', '2', '--transport', t]);
    assert.is(r.status, 1, `${t}: ${r.stderr}`);
    const line = `commloop: stage "model" rank 0 on ${hostname()}: Cannot assign to read only property 'x' of object '#<Object>'`;
    // Over MPI the line ends with where Open MPI's messages went.
    assert.is(r.stderr.trim().split('\n').pop().replace(/ \(Open MPI's messages: .*\)$/, ''), line);
  }
});

ring('an exec stage of protocol 1 between one-float64 fields runs; one that sends short is named with the field at its block\'s end', () => {
  const COPY = { name: 'copy', kind: 'ts', ranks: 1, module: join(fixtures, 'copy.mjs'), fields: { a: { dtype: 'float64', shape: [8] } } };
  const quarter = (flag) => ({ name: 'quarter', kind: 'exec', ranks: 1, size: 8, command: [NUMPY, join(root, 'test', 'fixtures', 'exec_stage.py'), ...flag] });
  let r = cli(['--pipeline', pipelineFile('v1-ok', { stages: [COPY, quarter([])] }), '-i', '3', '--json']);
  assert.is(r.status, 0, r.stderr);
  // exec_stage.py: y[j] = x[j mod n] / 4 + (rank + 1); three iterations from ones.
  let data = new Float64Array(8).fill(1);
  for (let i = 0; i < 3; i++) data = data.map((v) => (v + 1) / 4 + 1);
  assert.is(JSON.parse(r.stdout).checksum, data.reduce((a, b) => a + b, 0));
  r = cli(['--pipeline', pipelineFile('v1-short', { stages: [COPY, quarter(['--short-at', '1'])] }), '-i', '3']);
  assert.is(r.status, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`^commloop: stage "quarter" rank 0 on ${hostname()}: sent less than its output block of 64 bytes iteration 1 asked for \\(fields data float64 \\[8\\]\\): field "data", at its end, did not arrive in full( \\(Open MPI's messages: \\S+\\))?\\n$`));
});

ring.run();

const bad = suite('fields: bad input exits 2 with one line');

const badCases = [
  [{ stages: [{ ...SAMPLE, fields: { p: { dtype: 'float16' } } }, MODEL] }, 'stage "sample": field "p": "dtype" must be one of float64, float32, int64, int32, int16, int8, uint64, uint32, uint16, uint8, complex128, complex64 (got "float16"; bool travels as uint8)'],
  [{ stages: [{ ...SAMPLE, fields: { p: { dtype: 'int8', shape: [2, 0] } } }, MODEL] }, 'stage "sample": field "p": "shape" must be a list of 1 to 4 positive integers (got [2,0])'],
  [{ stages: [{ ...SAMPLE, fields: { '2p': { dtype: 'int8' } } }, MODEL] }, 'stage "sample": field name "2p" must be an identifier (letters, digits, _; not starting with a digit)'],
  [{ stages: [{ ...SAMPLE, size: 4 }, MODEL] }, 'stage "sample": give "size" (one float64 field) or "fields", not both'],
  [{ stages: [{ ...SAMPLE, fields: JSON.parse('{"__proto__": {"dtype": "int8"}}') }, MODEL] }, 'stage "sample": field name "__proto__" is reserved (a JavaScript object cannot hold it as a field)'],
  [{ stages: [{ ...SAMPLE, fields: { p: { dtype: 'int8', shape: [1] } } }, { ...MODEL, fields: { x: { dtype: 'float64', shape: [1] } } }] }, 'fields do not chain: field "x" of stage "model" has 2 rows (2 ranks x 1), not divisible by the 3 ranks of stage "sample"'],
  [{ stages: [SAMPLE, MODEL], initial: { q: 1 } }, 'pipeline: "initial" names field "q", which Array1 (stage "model"\'s output) does not have (fields: x, n, g)'],
  [{ stages: [SAMPLE, MODEL], initial: { n: 1.5 } }, 'pipeline: "initial" 1.5 does not fit field "n" (int32: integers -2147483648 to 2147483647)'],
  [{ stages: [SAMPLE, MODEL], output: { file: 'out.npy' } }, 'pipeline: "output" file of a ring of fields is a .npz (NumPy\'s archive of one .npy per field; got "out.npy")'],
  [{ stages: [{ ...SAMPLE, module: 'builtin:halfmean' }, MODEL] }, 'stage "sample": builtin:halfmean takes one float64 array a rank; in a ring of fields give a module of your own'],
  [{ stages: [SAMPLE, { name: 'model', kind: 'exec', ranks: 2, command: ['/bin/true'], fields: MODEL_FIELDS }] }, 'stage "model": speaks protocol 1, which carries one float64 array a rank, but its input is fields p (float32), k (int64), z (complex64): give it "protocol": 3 (include/commloop_stage.h speaks it)'],
];

bad('each bad field, chain, initial and output is named in one line', () => {
  badCases.forEach(([spec, line], i) => {
    const r = cli(['--pipeline', pipelineFile(`bad${i}`, spec), '-i', '1', '--transport', 'mpi']);
    assert.is(r.status, 2, `case ${i}: ${r.stderr}`);
    assert.is(r.stderr, `commloop: ${line}\n`, `case ${i}`);
  });
});

bad('an initial .npy of the wrong dtype, and a field named twice in the JSON', () => {
  const npy = join(dir, 'n.npy');
  spawnSync(NUMPY, ['-c', 'import numpy, sys; numpy.save(sys.argv[1], numpy.arange(6, dtype=numpy.int64))', npy]);
  let r = cli(['--pipeline', pipelineFile('badnpy', { stages: [SAMPLE, MODEL], initial: { n: npy } }), '-i', '1', '--transport', 'threads']);
  assert.is(r.status, 2);
  assert.is(r.stderr, `commloop: pipeline: "initial" of field "n": ${npy} holds <i8 x 6; field "n" of Array1 (stage "model", 2 ranks) is int32 (<i4) of shape [6]\n`);
  const twice = join(dir, 'twice.json');
  writeFileSync(twice, JSON.stringify({ stages: [SAMPLE, MODEL] }).replace('"x":{"dtype":"float64","shape":[3]}', '"x":{"dtype":"float64","shape":[3]},"x":{"dtype":"int8"}'));
  r = cli(['--pipeline', twice, '-i', '1', '--transport', 'threads']);
  assert.is(r.status, 2);
  assert.is(r.stderr, `commloop: --pipeline ${twice}: stages[1].fields.x is given twice\n`);
  r = cli(['--pipeline', pipelineFile('sizes', { stages: [SAMPLE, MODEL] }), '-i', '1', '--sizes', '1,2']);
  assert.is(r.status, 2);
  assert.is(r.stderr, 'commloop: --sizes sets each stage\'s one float64 size; stages of this pipeline have "fields" (sizes and shapes are the pipeline\'s)\n');
});

bad.run();
