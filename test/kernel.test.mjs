// The C kernel without MPI: the WASM build in Node and the native build through the
// kernel addon, held bit for bit to each other and to the TypeScript formulas.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readFileSync } from 'node:fs';
import {
  ARENA_BASE,
  halffirst,
  halfmean,
  instantiateKernel,
  kernelModule,
  kernelWasmPath,
  nativeKernels,
  sum,
} from '../dist/internal.js';
import { fullMantissa, sameBits } from './reference.mjs';

if (!existsSync(kernelWasmPath)) {
  throw new Error(`${kernelWasmPath} missing: install emscripten (apt-get install -y emscripten) and run bash build.sh`);
}

/** Runs a WASM kernel on copies of `input` placed in a fresh shared arena. */
function wasmRun(fn, input, nOut, rank, nranks = rank + 1, iteration = 0) {
  const bytes = ARENA_BASE + (input.length + nOut) * 8;
  const pages = Math.ceil(bytes / 65536);
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  const k = instantiateKernel(memory);
  const f64 = new Float64Array(memory.buffer);
  const inAt = ARENA_BASE / 8;
  const outAt = inAt + input.length;
  f64.set(input, inAt);
  if (fn === 'sum') return k.commloop_sum(inAt * 8, input.length);
  k[`commloop_${fn}`](inAt * 8, input.length, outAt * 8, nOut, rank, nranks, iteration);
  return f64.slice(outAt, outAt + nOut);
}

function nativeRun(fn, input, nOut, rank, nranks = rank + 1, iteration = 0) {
  const out = new Float64Array(nOut);
  nativeKernels().run(fn, input, out, rank, nranks, iteration);
  return out;
}

function tsRun(fn, input, nOut, rank, nranks = rank + 1, iteration = 0) {
  const out = new Float64Array(nOut);
  ({ halfmean, halffirst })[fn](input, out, { rank, nranks, iteration });
  return out;
}

const wasm = suite('wasm build');

wasm('imports exactly one thing: the shared memory', () => {
  const imports = WebAssembly.Module.imports(kernelModule());
  assert.equal(imports, [{ module: 'env', name: 'memory', kind: 'memory' }]);
  const bytes = readFileSync(kernelWasmPath);
  assert.equal([...bytes.subarray(0, 4)], [0x00, 0x61, 0x73, 0x6d]);
});

wasm('exports the three kernels', () => {
  const names = WebAssembly.Module.exports(kernelModule()).map((e) => e.name);
  for (const n of ['commloop_sum', 'commloop_halfmean', 'commloop_halffirst', '__heap_base']) {
    assert.ok(names.includes(n), `missing export ${n}`);
  }
});

wasm('halffirst gives x[0]/2 + rank*k + j', () => {
  assert.equal([...wasmRun('halffirst', Float64Array.of(3.5, 100), 3, 1)], [4.75, 5.75, 6.75]);
});

wasm('halfmean gives sum/m/2 + rank*k + j', () => {
  assert.equal([...wasmRun('halfmean', Float64Array.of(1, 2, 3, 4), 2, 2)], [5.25, 6.25]);
});

wasm.run();

const native = suite('native build (addon)');

native('halffirst gives x[0]/2 + rank*k + j', () => {
  assert.equal([...nativeRun('halffirst', Float64Array.of(3.5, 100), 3, 1)], [4.75, 5.75, 6.75]);
});

native('halfmean gives sum/m/2 + rank*k + j', () => {
  assert.equal([...nativeRun('halfmean', Float64Array.of(1, 2, 3, 4), 2, 2)], [5.25, 6.25]);
});

native('rejects an unknown kernel name', () => {
  assert.throws(
    () => nativeKernels().run('nope', new Float64Array(1), new Float64Array(1), 0, 1, 0),
    (e) => e instanceof RangeError && e.message === 'fn must be one of halfmean, halffirst (got "nope")',
  );
});

native('rejects an input that is not a Float64Array', () => {
  assert.throws(
    () => nativeKernels().run('halfmean', [1, 2], new Float64Array(1), 0, 1, 0),
    (e) => e instanceof TypeError && e.message === 'input must be a Float64Array',
  );
  assert.throws(
    () => nativeKernels().run('halfmean', new Float32Array(2), new Float64Array(1), 0, 1, 0),
    (e) => e instanceof TypeError && e.message === 'input must be a Float64Array',
  );
});

native('rejects an empty input, which the kernels would read past', () => {
  assert.throws(
    () => nativeKernels().run('halffirst', new Float64Array(0), new Float64Array(4), 0, 1, 0),
    (e) => e instanceof RangeError && e.message === 'input must hold at least 1 element',
  );
});

native('rejects a rank outside the stage and non-integer numbers', () => {
  const k = nativeKernels();
  const x = new Float64Array(2);
  assert.throws(() => k.run('halfmean', x, x, 2, 2, 0), (e) => e.message === 'rank must be below nranks');
  assert.throws(
    () => k.run('halfmean', x, x, 0.5, 2, 0),
    (e) => e instanceof RangeError && e.message === 'rank must be an integer from 0 to 2147483647',
  );
  assert.throws(() => k.run('halfmean', x, x, 0, 'two', 0), (e) => e instanceof TypeError && e.message === 'nranks must be a number');
  assert.throws(() => k.run('halfmean', x, x), (e) => e instanceof TypeError && e.message === 'rank must be a number');
  assert.throws(() => k.sum(), (e) => e instanceof TypeError && e.message === 'x must be a Float64Array');
});

native('a guarded run names its stage and run; interrupt(run) reaches only that run, and none is running now', () => {
  const k = nativeKernels();
  const x = new Float64Array(2);
  const out = new Float64Array(2);
  assert.throws(() => k.run('halfmean', x, out, 0, 1, 0, 7), (e) => e instanceof TypeError && e.message === 'stage must be a string');
  assert.throws(() => k.run('halfmean', x, out, 0, 1, 0, 'c'), (e) => e instanceof TypeError && e.message === 'run must be a number');
  assert.throws(() => k.run('halfmean', x, out, 0, 1, 0, 'c', 0), (e) => e instanceof RangeError && e.message === 'run must be an integer from 1 to 2147483647');
  k.run('halfmean', Float64Array.of(1, 3), out, 0, 1, 0, 'c', 1);
  assert.equal([...out], [1, 2]);
  assert.is(k.interrupt(1), 0);
  assert.throws(() => k.interrupt(), (e) => e instanceof TypeError && e.message === 'run must be a number');
});

native.run();

const bits = suite('bit-identical builds');

for (const n of [1000, 1_000_000]) {
  const x = fullMantissa(n);
  bits(`sum of ${n} full-mantissa doubles: WASM == native == TS`, () => {
    const t = sum(x);
    assert.ok(!Number.isInteger(t), 'the data must not sum exactly');
    assert.ok(Object.is(wasmRun('sum', x, 0, 0), t));
    assert.ok(Object.is(nativeKernels().sum(x), t));
  });
  for (const fn of ['halfmean', 'halffirst']) {
    bits(`${fn} on ${n} full-mantissa doubles: WASM == native == TS`, () => {
      const ref = tsRun(fn, x, 257, 3, 5, 7);
      assert.ok(sameBits(wasmRun(fn, x, 257, 3, 5, 7), ref), 'WASM differs from TS');
      assert.ok(sameBits(nativeRun(fn, x, 257, 3, 5, 7), ref), 'native differs from TS');
    });
  }
}

bits('the TS sum is left to right (not pairwise): a value that only that order gives', () => {
  // 1e16 + 1 + 1 rounds each 1 away left to right; a pairwise sum keeps 2.
  const x = Float64Array.of(1e16, 1, 1);
  assert.is(sum(x), 1e16);
  assert.is(wasmRun('sum', x, 0, 0), 1e16);
  assert.is(nativeKernels().sum(x), 1e16);
});

bits.run();
