// .npy and raw float64 files: our writer and reader against each other and against NumPy
// (/usr/bin/python3 with numpy), bit for bit, and the exact error messages.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readArray, writeNpy } from '../dist/index.js';

const dir = mkdtempSync(join(tmpdir(), 'commloop-npy-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
const at = (name) => join(dir, name);

/** x[i] = 1e9/(i+0.5) - 0.3: every bit of the mantissa in use. */
function fullMantissa(n) {
  return Float64Array.from({ length: n }, (_, i) => 1e9 / (i + 0.5) - 0.3);
}

/** The bytes of a Float64Array (little-endian on every platform Node runs the tests on). */
const bytesOf = (a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

function assertSameBits(got, want) {
  assert.instance(got, Float64Array);
  assert.is(got.length, want.length);
  assert.ok(bytesOf(got).equals(bytesOf(want)), 'arrays differ in their bits');
}

/** A .npy file by hand: magic, version, header length, `dict` padded to 64 bytes, `data`. */
function npyBytes(dict, data = Buffer.alloc(0), major = 1) {
  const lenBytes = major === 1 ? 2 : 4;
  const hlen = dict.length + 1;
  const pad = 63 - ((8 + lenBytes + hlen + 63) % 64);
  const head = Buffer.alloc(8 + lenBytes + hlen + pad, 0x20);
  Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, major, 0]).copy(head);
  if (major === 1) head.writeUInt16LE(hlen + pad, 8);
  else head.writeUInt32LE(hlen + pad, 8);
  head.write(dict, 8 + lenBytes, 'latin1');
  head[head.length - 1] = 0x0a;
  return Buffer.concat([head, data]);
}

/** Runs Python code with NumPy in /usr/bin/python3; returns stdout. */
function numpy(code) {
  const r = spawnSync('/usr/bin/python3', ['-c', `import numpy as np, numpy.lib.format as F\n${code}`], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (r.error) throw new Error(`cannot run /usr/bin/python3 (${r.error.message}): apt-get install -y python3-numpy`);
  if (r.status !== 0 && /No module named .?numpy/.test(r.stderr)) {
    throw new Error('/usr/bin/python3 has no numpy: apt-get install -y python3-numpy');
  }
  if (r.status !== 0) throw new Error(`python3 failed (status ${r.status}): ${r.stderr}`);
  return r.stdout;
}

const N = 1000;
/** Files written by NumPy, made once, on first use. */
let numpyFiles = false;
function fromNumpy(name) {
  if (!numpyFiles) {
    numpy(`
x = 1e9 / (np.arange(${N}) + 0.5) - 0.3
np.save(${JSON.stringify(at('np-v1.npy'))}, x)
for v in (2, 3):
    with open(${JSON.stringify(dir)} + f'/np-v{v}.npy', 'wb') as f:
        F.write_array(f, x, version=(v, 0))
np.save(${JSON.stringify(at('np-2d.npy'))}, x[:12].reshape(3, 4))
np.save(${JSON.stringify(at('np-0d.npy'))}, np.float64(x[7]))
np.save(${JSON.stringify(at('np-empty.npy'))}, np.zeros(0))
np.save(${JSON.stringify(at('np-i8.npy'))}, np.arange(3))
np.save(${JSON.stringify(at('np-fortran.npy'))}, np.asfortranarray(x[:6].reshape(2, 3)))
x.tofile(${JSON.stringify(at('np-raw.f64'))})
`);
    numpyFiles = true;
  }
  return at(name);
}

// ---------------------------------------------------------------------------------------
const write = suite('writeNpy');

write('round trip of full-mantissa data is bit for bit', () => {
  const a = fullMantissa(N);
  writeNpy(at('rt.npy'), a);
  assertSameBits(readArray(at('rt.npy')), a);
});

write('writes format 1.0, <f8, 1-D, data at a multiple of 64 bytes', () => {
  writeNpy(at('head.npy'), Float64Array.of(1.5, -2));
  const b = readFileSync(at('head.npy'));
  assert.equal([...b.subarray(0, 8)], [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  const start = 10 + b.readUInt16LE(8);
  assert.is(start % 64, 0);
  assert.is(b.length, start + 16);
  const header = b.toString('latin1', 10, start);
  assert.ok(header.startsWith("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }"), header);
  assert.ok(header.endsWith(' \n'), JSON.stringify(header));
  assert.is(b.readDoubleLE(start), 1.5);
  assert.is(b.readDoubleLE(start + 8), -2);
});

write('writes the same bytes as numpy.save', () => {
  writeNpy(at('ours.npy'), fullMantissa(N));
  assert.ok(readFileSync(at('ours.npy')).equals(readFileSync(fromNumpy('np-v1.npy'))));
});

write('NumPy reads what it writes, bit for bit', () => {
  const a = fullMantissa(N);
  writeNpy(at('for-numpy.npy'), a);
  const out = numpy(`
a = np.load(${JSON.stringify(at('for-numpy.npy'))})
x = 1e9 / (np.arange(${N}) + 0.5) - 0.3
print(a.dtype, a.shape, a.tobytes() == x.tobytes())`);
  assert.is(out, `float64 (${N},) True\n`);
});

write('writes an empty array', () => {
  writeNpy(at('empty.npy'), new Float64Array(0));
  assert.equal(readArray(at('empty.npy')), new Float64Array(0));
  assert.ok(readFileSync(at('empty.npy')).equals(readFileSync(fromNumpy('np-empty.npy'))));
});

write('writes only the elements of a subarray view', () => {
  const a = Float64Array.of(1, 2, 3, 4, 5, 6);
  writeNpy(at('view.npy'), a.subarray(2, 5));
  assert.equal([...readArray(at('view.npy'))], [3, 4, 5]);
});

write('creates the parent directory', () => {
  const file = at('new/deeper/a.npy');
  writeNpy(file, Float64Array.of(0.1));
  assert.ok(existsSync(file));
  assert.equal([...readArray(file)], [0.1]);
});

write.run();

// ---------------------------------------------------------------------------------------
const read = suite('readArray of .npy files');

read('reads NumPy format 1.0, 2.0 and 3.0 files bit for bit', () => {
  for (const v of [1, 2, 3]) assertSameBits(readArray(fromNumpy(`np-v${v}.npy`)), fullMantissa(N));
});

read('flattens a 2-D array in C order', () => {
  assertSameBits(readArray(fromNumpy('np-2d.npy')), fullMantissa(12));
});

read('reads a 0-d array as one element', () => {
  assertSameBits(readArray(fromNumpy('np-0d.npy')), fullMantissa(8).subarray(7));
});

read('reads an empty array', () => {
  assert.equal(readArray(fromNumpy('np-empty.npy')), new Float64Array(0));
});

read('accepts double quotes, no trailing comma and a format 2.0 header', () => {
  const file = at('quotes.npy');
  writeFileSync(file, npyBytes('{"shape": (2,), "fortran_order": False, "descr": "<f8"}', bytesOf(Float64Array.of(7, 8)), 2));
  assert.equal([...readArray(file)], [7, 8]);
});

read.run();

// ---------------------------------------------------------------------------------------
const raw = suite('readArray of raw float64 files');

raw('reads a raw .f64 file bit for bit', () => {
  const file = at('a.f64');
  writeFileSync(file, bytesOf(fullMantissa(N)));
  assertSameBits(readArray(file), fullMantissa(N));
});

raw('reads a file written by numpy tofile', () => {
  assertSameBits(readArray(fromNumpy('np-raw.f64')), fullMantissa(N));
});

raw('treats any extension other than .npy as raw', () => {
  const file = at('a.bin');
  writeFileSync(file, bytesOf(Float64Array.of(-0, Infinity)));
  const got = readArray(file);
  assert.ok(Object.is(got[0], -0));
  assert.is(got[1], Infinity);
});

raw('reads an empty raw file as an empty array', () => {
  writeFileSync(at('empty.f64'), Buffer.alloc(0));
  assert.equal(readArray(at('empty.f64')), new Float64Array(0));
});

raw.run();

// ---------------------------------------------------------------------------------------
const errors = suite('readArray errors');

errors('rejects a .npy file without the magic', () => {
  const file = at('text.npy');
  writeFileSync(file, 'just some text, not numpy\n');
  assert.throws(() => readArray(file), (e) => e.message === `${file}: not a .npy file (bad magic)`);
});

errors('rejects a dtype other than <f8', () => {
  const file = fromNumpy('np-i8.npy');
  assert.throws(() => readArray(file), (e) => e.message === `${file}: dtype '<i8' is not supported (only '<f8')`);
});

errors('rejects big-endian doubles', () => {
  const file = at('be.npy');
  writeFileSync(file, npyBytes("{'descr': '>f8', 'fortran_order': False, 'shape': (1,), }", Buffer.alloc(8)));
  assert.throws(() => readArray(file), (e) => e.message === `${file}: dtype '>f8' is not supported (only '<f8')`);
});

errors('rejects fortran_order arrays', () => {
  const file = fromNumpy('np-fortran.npy');
  assert.throws(() => readArray(file), (e) => e.message === `${file}: fortran_order arrays are not supported`);
});

errors('rejects a raw file whose length is not a multiple of 8', () => {
  const file = at('odd.f64');
  writeFileSync(file, Buffer.alloc(13));
  assert.throws(() => readArray(file), (e) => e.message === `${file}: raw float64 file length 13 is not a multiple of 8`);
});

errors('rejects an unknown format version', () => {
  const file = at('v4.npy');
  writeFileSync(file, npyBytes("{'descr': '<f8', 'fortran_order': False, 'shape': (0,), }", undefined, 4));
  assert.throws(
    () => readArray(file),
    (e) => e.message === `${file}: .npy format version 4.0 is not supported (only 1.0, 2.0 and 3.0)`,
  );
});

errors('rejects data shorter or longer than the shape', () => {
  const file = at('short.npy');
  writeFileSync(file, npyBytes("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", Buffer.alloc(40)));
  assert.throws(() => readArray(file), (e) => e.message === `${file}: shape (2, 3) needs 48 bytes of data but the file has 40`);
  writeFileSync(file, npyBytes("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", Buffer.alloc(24)));
  assert.throws(() => readArray(file), (e) => e.message === `${file}: shape (2,) needs 16 bytes of data but the file has 24`);
});

errors('rejects a truncated header', () => {
  const file = at('cut.npy');
  writeFileSync(file, npyBytes("{'descr': '<f8', 'fortran_order': False, 'shape': (0,), }").subarray(0, 40));
  assert.throws(() => readArray(file), (e) => e.message === `${file}: truncated .npy header`);
});

errors('rejects a header without a shape', () => {
  const file = at('noshape.npy');
  writeFileSync(file, npyBytes("{'descr': '<f8', 'fortran_order': False}"));
  assert.throws(
    () => readArray(file),
    (e) => e.message === `${file}: malformed .npy header (no 'shape'): {'descr': '<f8', 'fortran_order': False}`,
  );
});

errors('names a missing file', () => {
  const file = at('missing.npy');
  assert.throws(() => readArray(file), (e) => e.message === `${file}: no such file`);
});

errors.run();
