// Fields kernels (issue 27) without MPI: the built-in commloop_fields_demo run natively
// through the kernel addon's prepareFields/runFields over a shared arena of mixed dtypes,
// held bit for bit to the formula in wasm/commloop_kernel.h computed here in JS, and to the
// WASM build of the same kernel; and every wrong call throwing its exact message.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ARENA_BASE, instantiateKernel, kernelWasmPath, nativeKernels } from '../dist/internal.js';
import { fullMantissa } from './reference.mjs';

if (!existsSync(kernelWasmPath)) {
  throw new Error(`${kernelWasmPath} missing: install emscripten (apt-get install -y emscripten) and run bash build.sh`);
}

// The dtype codes of wasm/commloop_kernel.h, in order, with each one's typed view.
const DT = {
  float64: [1, Float64Array],
  float32: [2, Float32Array],
  int64: [3, BigInt64Array],
  int32: [4, Int32Array],
  int16: [5, Int16Array],
  int8: [6, Int8Array],
  uint64: [7, BigUint64Array],
  uint32: [8, Uint32Array],
  uint16: [9, Uint16Array],
  uint8: [10, Uint8Array],
  complex128: [11, Float64Array],
  complex64: [12, Float32Array],
};
const isComplex = (dtype) => dtype.startsWith('complex');
/** Scalars of a field: a complex element is two. */
const scalars = (f) => (isComplex(f.dtype) ? 2 : 1) * f.count;

/** The packed layout, written out again here: each field's bytes padded to 8, in order. */
function table(fields) {
  let at = 0;
  return fields.map(({ name, dtype, shape }) => {
    const count = shape.reduce((a, b) => a * b, 1);
    const f = { name, dtype: DT[dtype][0], count, shape, offset: at };
    at += Math.ceil((scalars({ dtype, count }) * DT[dtype][1].BYTES_PER_ELEMENT) / 8) * 8;
    return f;
  });
}
const blockBytes = (t) => {
  const last = t.at(-1);
  const [, View] = Object.values(DT).find(([code]) => code === last.dtype);
  const n = (last.dtype >= 11 ? 2 : 1) * last.count;
  return last.offset + Math.ceil((n * View.BYTES_PER_ELEMENT) / 8) * 8;
};
/** A typed view of field f (spec: {dtype, shape}, t: its table entry) in a block at byte `at`. */
const view = (buffer, at, spec, t) => new DT[spec.dtype][1](buffer, at + t.offset, scalars({ dtype: spec.dtype, count: t.count }));

// The out fields: every dtype, shapes of 1 to 4 axes, sizes that need padding.
const OUT = [
  { name: 'x', dtype: 'float64', shape: [3] },
  { name: 'counts', dtype: 'int32', shape: [5] },
  { name: 'f', dtype: 'float32', shape: [3, 1] },
  { name: 'bytes', dtype: 'uint8', shape: [2, 3] },
  { name: 'z', dtype: 'complex64', shape: [3] },
  { name: 'big', dtype: 'int64', shape: [2] },
  { name: 'h', dtype: 'int16', shape: [1, 1, 3] },
  { name: 'c', dtype: 'int8', shape: [5] },
  { name: 'ubig', dtype: 'uint64', shape: [2] },
  { name: 'u', dtype: 'uint32', shape: [3] },
  { name: 'uh', dtype: 'uint16', shape: [1, 1, 1, 3] },
  { name: 'zz', dtype: 'complex128', shape: [2] },
];

/** The formula of wasm/commloop_kernel.h, independently: what out field k's scalars must be. */
function expected(inputScalars, spec, k, count, rank) {
  let s = 0;
  for (const x of inputScalars) s += x;
  const half = s / 2;
  const out = [];
  const bits = (v) => {
    if (Number.isNaN(v)) return 0n;
    if (v >= 2 ** 63) return 2n ** 63n - 1n;
    if (v < -(2 ** 63)) return -(2n ** 63n);
    return BigInt(Math.trunc(v));
  };
  for (let j = 0; j < count; j++) {
    const v = half + (rank * count + j + k);
    const width = DT[spec.dtype][1].BYTES_PER_ELEMENT * 8;
    if (spec.dtype === 'float64') out.push(v);
    else if (spec.dtype === 'float32') out.push(Math.fround(v));
    else if (spec.dtype === 'complex128') out.push(v, v + 0.5);
    else if (spec.dtype === 'complex64') out.push(Math.fround(v), Math.fround(v + 0.5));
    else if (spec.dtype.startsWith('u')) out.push(width === 64 ? BigInt.asUintN(64, bits(v)) : Number(BigInt.asUintN(width, bits(v))));
    else out.push(width === 64 ? BigInt.asIntN(64, bits(v)) : Number(BigInt.asIntN(width, bits(v))));
  }
  return out;
}

/** The scalars as strings, floats by their bits (so -0, 0 and NaNs are told apart exactly). */
function bitsOf(values, View) {
  if (View !== Float64Array && View !== Float32Array) return [...values].map(String);
  const a = View.from(values);
  return [...new (View === Float64Array ? BigUint64Array : Uint32Array)(a.buffer)].map(String);
}

/**
 * Runs fields_demo natively on a fresh shared arena: the input block at byte 64 (field 0
 * set to `first`, the others to junk the kernel must not read), the output block after it.
 */
function nativeDemo(IN, first, rank, nranks) {
  const k = nativeKernels();
  const tin = table(IN);
  const tout = table(OUT);
  const inAt = 64;
  const outAt = inAt + blockBytes(tin);
  const sab = new SharedArrayBuffer(outAt + blockBytes(tout) + 16);
  new Uint8Array(sab).fill(0xa5);
  view(sab, inAt, IN[0], tin[0]).set(first);
  const h = k.prepareFields('fields_demo', { in: tin, out: tout });
  k.runFields(h, new Float64Array(sab), inAt, outAt, rank, nranks, 4, 'demo', 1);
  return OUT.map((spec, i) => view(sab, outAt, spec, tout[i]));
}

const native = suite('fields_demo, native (prepareFields/runFields)');

// One input case per dtype of in[0]: its scalars, as the JS side reads them back.
const firsts = {
  float64: fullMantissa(7),
  float32: Float32Array.from(fullMantissa(5)),
  int64: BigInt64Array.of(-(2n ** 62n) + 12345n, 2n ** 53n + 1n, -7n),
  int32: Int32Array.of(2147483647, -5, 1 << 30),
  int16: Int16Array.of(-32768, 12, 7),
  int8: Int8Array.of(-128, 127, -3),
  uint64: BigUint64Array.of(2n ** 64n - 1n, 2n ** 63n + 2049n, 3n),
  uint32: Uint32Array.of(4294967295, 1, 77),
  uint16: Uint16Array.of(65535, 2, 9),
  uint8: Uint8Array.of(255, 0, 1),
  complex128: Float64Array.from(fullMantissa(6)),
  complex64: Float32Array.from(fullMantissa(4)),
};

for (const [dtype, first] of Object.entries(firsts)) {
  native(`out fields of every dtype from an input field 0 of ${dtype}`, () => {
    const n = isComplex(dtype) ? first.length / 2 : first.length;
    const IN = [
      { name: 'a', dtype, shape: [n] },
      { name: 'unused', dtype: 'int32', shape: [3] },
    ];
    const got = nativeDemo(IN, first, 2, 3);
    const inputScalars = [...first].map(Number);
    OUT.forEach((spec, k) => {
      const count = spec.shape.reduce((a, b) => a * b, 1);
      const View = DT[spec.dtype][1];
      assert.equal(bitsOf(got[k], View), bitsOf(expected(inputScalars, spec, k, count, 2), View), `out field ${spec.name}`);
    });
  });
}

native('exact values: sum 6.5 at rank 1', () => {
  const got = nativeDemo([{ name: 'a', dtype: 'float64', shape: [3] }], Float64Array.of(1, 2, 3.5), 1, 2);
  // half = 3.25; out field k, element j: 3.25 + (count + j + k)
  assert.equal([...got[0]], [6.25, 7.25, 8.25]);
  assert.equal([...got[1]], [9, 10, 11, 12, 13]); // int32: trunc(3.25 + 5 + j + 1)
  assert.equal([...got[3]], [12, 13, 14, 15, 16, 17]); // uint8: 3.25 + 6 + j + 3
  assert.equal([...got[4]], [10.25, 10.75, 11.25, 11.75, 12.25, 12.75]); // complex64 pairs (v, v + 0.5)
  assert.equal([...got[5]], [10n, 11n]); // int64: 3.25 + 2 + j + 5
});

native('saturates and wraps: -1e300 gives INT64_MIN low bits, NaN gives 0', () => {
  let got = nativeDemo([{ name: 'a', dtype: 'float64', shape: [1] }], Float64Array.of(-1e300), 0, 1);
  assert.equal([...got[5]], [-(2n ** 63n), -(2n ** 63n)]);
  assert.equal([...got[8]], [2n ** 63n, 2n ** 63n]); // uint64: INT64_MIN's bits
  assert.equal([...got[1]], [0, 0, 0, 0, 0]); // int32: the low 32 bits of INT64_MIN
  assert.equal([...got[2]], [-Infinity, -Infinity, -Infinity]); // float32 overflows to -inf
  got = nativeDemo([{ name: 'a', dtype: 'float64', shape: [1] }], Float64Array.of(NaN), 0, 1);
  assert.equal([...got[1]], [0, 0, 0, 0, 0]);
  assert.ok(Number.isNaN(got[0][0]));
  got = nativeDemo([{ name: 'a', dtype: 'float64', shape: [1] }], Float64Array.of(-40), 0, 1);
  assert.equal([...got[9]], [4294967285, 4294967286, 4294967287]); // uint32: -20 + j + 9, mod 2^32
  assert.equal([...got[7]], [-13, -12, -11, -10, -9]); // int8: trunc(-20 + j + 7)
});

native.run();

const wasm = suite('fields_demo, WASM (the same bits)');

/** Writes the descriptors in the wasm32 layout (36 bytes) and runs the WASM build. */
function wasmDemo(IN, first, rank, nranks) {
  const tin = table(IN);
  const tout = table(OUT);
  const inAt = ARENA_BASE;
  const outAt = inAt + blockBytes(tin);
  const descAt = outAt + blockBytes(tout);
  const pages = Math.ceil((descAt + 64 * 1024) / 65536);
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  const k = instantiateKernel(memory);
  const bytes = new Uint8Array(memory.buffer);
  const dv = new DataView(memory.buffer);
  view(memory.buffer, inAt, IN[0], tin[0]).set(first);
  let names = descAt + 36 * (tin.length + tout.length);
  const place = (t, blockAt, at) =>
    t.forEach((f, i) => {
      const d = at + 36 * i;
      bytes.set(new TextEncoder().encode(`${f.name}\0`), names);
      dv.setUint32(d, names, true);
      names += f.name.length + 1;
      dv.setUint32(d + 4, blockAt + f.offset, true);
      dv.setUint32(d + 8, f.count, true);
      dv.setInt32(d + 12, f.dtype, true);
      dv.setInt32(d + 16, f.shape.length, true);
      f.shape.forEach((n, a) => dv.setInt32(d + 20 + 4 * a, n, true));
    });
  place(tin, inAt, descAt);
  place(tout, outAt, descAt + 36 * tin.length);
  k.commloop_fields_demo(descAt, tin.length, descAt + 36 * tin.length, tout.length, rank, nranks, 4);
  return OUT.map((spec, i) => view(memory.buffer, outAt, spec, tout[i]));
}

for (const dtype of ['float64', 'uint64', 'complex64']) {
  wasm(`the native bits, from an input field 0 of ${dtype}`, () => {
    const first = firsts[dtype];
    const IN = [{ name: 'a', dtype, shape: [isComplex(dtype) ? first.length / 2 : first.length] }];
    const a = nativeDemo(IN, first, 1, 2);
    const b = wasmDemo(IN, first, 1, 2);
    OUT.forEach((spec, k) => assert.equal(bitsOf(b[k], DT[spec.dtype][1]), bitsOf(a[k], DT[spec.dtype][1]), spec.name));
  });
}

wasm.run();

const wrong = suite('prepareFields/runFields: wrong calls throw');

const good = () => ({
  in: [{ name: 'a', dtype: 1, count: 3, shape: [3], offset: 0 }],
  out: [
    { name: 'b', dtype: 10, count: 3, shape: [3], offset: 0 },
    { name: 'c', dtype: 12, count: 2, shape: [2], offset: 8 },
  ],
});
const throwsExactly = (fn, Type, message) =>
  assert.throws(fn, (e) => {
    assert.is(e.message, message);
    return e instanceof Type;
  });

wrong('a dtype code that does not exist', () => {
  const t = good();
  t.out[1].dtype = 13;
  throwsExactly(() => nativeKernels().prepareFields('fields_demo', t), RangeError, 'table.out[1] ("c").dtype must be an integer from 1 to 12 (got 13)');
  t.out[1].dtype = 'complex64';
  throwsExactly(() => nativeKernels().prepareFields('fields_demo', t), TypeError, 'table.out[1] ("c").dtype must be a number');
});

wrong('an offset other than the packed one', () => {
  const t = good();
  t.out[1].offset = 16;
  throwsExactly(
    () => nativeKernels().prepareFields('fields_demo', t),
    RangeError,
    'table.out[1] ("c").offset must be 8, where the packed block puts it (8-byte aligned, right after the field before it; got 16)',
  );
  t.out[1].offset = 4;
  throwsExactly(
    () => nativeKernels().prepareFields('fields_demo', t),
    RangeError,
    'table.out[1] ("c").offset must be 8, where the packed block puts it (8-byte aligned, right after the field before it; got 4)',
  );
});

wrong('a shape that is not the count, a name that is not an identifier, a name twice', () => {
  const k = nativeKernels();
  let t = good();
  t.in[0].shape = [2, 2];
  throwsExactly(() => k.prepareFields('fields_demo', t), RangeError, 'table.in[0] ("a").count must be the product of its shape, 4 (got 3)');
  t = good();
  t.in[0].shape = [3, 1, 1, 1, 1];
  throwsExactly(() => k.prepareFields('fields_demo', t), TypeError, 'table.in[0] ("a").shape must be an array of 1 to 4 integers');
  t = good();
  t.in[0].shape = [3, 0];
  throwsExactly(() => k.prepareFields('fields_demo', t), RangeError, 'table.in[0] ("a").shape[1] must be an integer from 1 to 2147483647 (got 0)');
  t = good();
  t.out[0].name = '2b';
  throwsExactly(() => k.prepareFields('fields_demo', t), RangeError, 'table.out[0].name must be an identifier ([A-Za-z_][A-Za-z0-9_]*; got "2b")');
  t = good();
  t.out[1].name = 'b';
  throwsExactly(() => k.prepareFields('fields_demo', t), RangeError, 'table.out[1].name "b" is also table.out[0]\'s');
  throwsExactly(() => k.prepareFields('fields_demo', { in: [], out: good().out }), RangeError, 'table.in must hold 1 to 256 fields (got 0)');
  throwsExactly(() => k.prepareFields('halfmean', good()), RangeError, 'kernel must be fields_demo or a handle from open() (got "halfmean")');
  throwsExactly(() => k.prepareFields(1e9, good()), RangeError, 'kernel handle 1000000000 was not returned by open()');
});

wrong('a field past the arena end', () => {
  const k = nativeKernels();
  const h = k.prepareFields('fields_demo', good());
  const arena = new Float64Array(new SharedArrayBuffer(64));
  // out: b at 40..43, c at 48..64 fits exactly; one word further, c ends at 72
  k.runFields(h, arena, 0, 40, 0, 1, 0);
  throwsExactly(() => k.runFields(h, arena, 0, 48, 0, 1, 0), RangeError, 'field out[1] ("c") at bytes 56 to 72 lies past the arena\'s end (64 bytes)');
  throwsExactly(() => k.runFields(h, arena, 48, 0, 0, 1, 0), RangeError, 'field in[0] ("a") at bytes 48 to 72 lies past the arena\'s end (64 bytes)');
  throwsExactly(() => k.runFields(h, arena, 0, 12, 0, 1, 0), RangeError, 'outByte must be a multiple of 8 (got 12)');
  throwsExactly(() => k.runFields(h, arena, 0, 16, 0, 1, 0), RangeError, 'the input block (bytes 0 to 24) and the output block (bytes 16 to 40) overlap');
});

wrong('a handle that prepareFields did not return', () => {
  const k = nativeKernels();
  const arena = new Float64Array(new SharedArrayBuffer(64));
  throwsExactly(() => k.runFields(123456, arena, 0, 32, 0, 1, 0), RangeError, 'handle 123456 was not returned by prepareFields()');
  throwsExactly(() => k.runFields(0.5, arena, 0, 32, 0, 1, 0), RangeError, 'handle 0.5 was not returned by prepareFields()');
  throwsExactly(() => k.runFields('0', arena, 0, 32, 0, 1, 0), TypeError, 'handle must be a number from prepareFields()');
});

wrong('an opened fields kernel: found by name, and a crash in it throws instead of ending the process', () => {
  const dir = mkdtempSync(join(tmpdir(), 'commloop-fields-'));
  try {
    writeFileSync(
      join(dir, 'k.c'),
      `#include "${process.cwd()}/wasm/commloop_kernel.h"
void twice(const commloop_field *in, int n_in, const commloop_field *out, int n_out, int rank, int nranks, int it) {
    const int *a = commloop_field_data(in, n_in, "a", COMMLOOP_INT32);
    long long *b = commloop_field_data(out, n_out, "b", COMMLOOP_INT64);
    if (!a || !b || commloop_field_data(in, n_in, "a", COMMLOOP_FLOAT64)) *(volatile int *)0 = 1;
    for (size_t j = 0; j < out[0].count; j++) b[j] = 2LL * a[j] + rank + it;
}
`,
    );
    execFileSync('gcc', ['-O2', '-ffp-contract=off', '-shared', '-fPIC', '-o', join(dir, 'k.so'), join(dir, 'k.c')]);
    const k = nativeKernels();
    const fn = k.open(join(dir, 'k.so'), 'twice');
    const t = { in: [{ name: 'a', dtype: 4, count: 3, shape: [3], offset: 0 }], out: [{ name: 'b', dtype: 3, count: 3, shape: [3], offset: 0 }] };
    const h = k.prepareFields(fn, t);
    const sab = new SharedArrayBuffer(64);
    new Int32Array(sab, 0, 3).set([5, -6, 7]);
    k.runFields(h, new Float64Array(sab), 0, 16, 1, 2, 10, 'twice', 1);
    assert.equal([...new BigInt64Array(sab, 16, 3)], [21n, -1n, 25n]);
    // The same kernel with its input named "c": commloop_field_data finds no "a", and it writes to NULL.
    const bad = k.prepareFields(fn, { in: [{ ...t.in[0], name: 'c' }], out: t.out });
    throwsExactly(() => k.runFields(bad, new Float64Array(sab), 0, 16, 1, 2, 10, 'twice', 1), Error, 'crashed (SIGSEGV)');
    throwsExactly(() => k.runFields(h, new Float64Array(sab), 0, 16, 1, 2, 10, 3), TypeError, 'stage must be a string');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

wrong.run();
