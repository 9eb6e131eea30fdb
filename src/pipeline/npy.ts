// Reading and writing arrays of float64: NumPy .npy files (format 1.0, 2.0 and 3.0, dtype
// '<f8', C order) and raw little-endian float64 files (any other extension).
// https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { UsageError } from '../errors.js';
import { endianness } from 'node:os';
import { dirname } from 'node:path';

const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // "\x93NUMPY"
/** NumPy aligns the start of the data to this many bytes. */
const ALIGN = 64;
/** NumPy (>= 1.23) pads the header so the first axis can grow to this many digits in place. */
const GROWTH_AXIS_MAX_DIGITS = 21;
const littleEndian = endianness() === 'LE';

/**
 * Reads a float64 array: a `.npy` file (dtype '<f8', any shape, flattened in C order) or,
 * for any other extension, a raw little-endian float64 file. Throws an `Error` naming
 * `path` if the file cannot be read or is not such an array.
 */
export function readArray(path: string): Float64Array {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT') throw new Error(`${path}: no such file`);
    if (err.code === 'EISDIR') throw new Error(`${path}: is a directory, not a file`);
    throw new Error(`${path}: cannot read (${err.code ?? err.message})`);
  }
  if (!/\.npy$/i.test(path)) {
    if (buf.length % 8 !== 0) throw new Error(`${path}: raw float64 file length ${buf.length} is not a multiple of 8`);
    return toFloat64(buf, 0, buf.length / 8);
  }
  const { descr, shape, data } = parseNpy(buf, path);
  if (descr !== '<f8') throw new Error(`${path}: dtype '${descr}' is not supported (only '<f8')`);
  if (data.length !== shape.reduce((n, d) => n * d, 1) * 8) {
    throw new Error(`${path}: shape (${shape.join(', ')}${shape.length === 1 ? ',' : ''}) needs ${shape.reduce((n, d) => n * d, 1) * 8} bytes of data but the file has ${data.length}`);
  }
  return toFloat64(buf, buf.length - data.length, data.length / 8);
}

/**
 * A `.npy` file's dtype, shape and data bytes (any dtype; C order only). Throws an `Error`
 * naming `path` when it is not such a file. The data's length is not checked against the
 * shape: that needs the dtype's size, which the caller knows.
 */
export function parseNpy(buf: Buffer, path: string): { descr: string; shape: number[]; data: Buffer } {
  if (buf.length < 8 || !buf.subarray(0, 6).equals(MAGIC)) throw new Error(`${path}: not a .npy file (bad magic)`);
  const major = buf[6]!;
  const minor = buf[7]!;
  if ((major !== 1 && major !== 2 && major !== 3) || minor !== 0) {
    throw new Error(`${path}: .npy format version ${major}.${minor} is not supported (only 1.0, 2.0 and 3.0)`);
  }
  const lenBytes = major === 1 ? 2 : 4;
  if (buf.length < 8 + lenBytes) throw new Error(`${path}: truncated .npy header`);
  const headerLen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const dataStart = 8 + lenBytes + headerLen;
  if (buf.length < dataStart) throw new Error(`${path}: truncated .npy header`);
  const text = buf.toString(major === 3 ? 'utf8' : 'latin1', 8 + lenBytes, dataStart);
  let header: Map<string, Value>;
  try {
    header = parseHeader(text);
  } catch (e) {
    throw new Error(`${path}: malformed .npy header (${(e as Error).message}): ${text.trim()}`);
  }
  for (const key of ['descr', 'fortran_order', 'shape']) {
    if (!header.has(key)) throw new Error(`${path}: malformed .npy header (no '${key}'): ${text.trim()}`);
  }
  const descr = header.get('descr')!;
  if (typeof descr.v !== 'string') throw new Error(`${path}: malformed .npy header (descr is ${descr.src}): ${text.trim()}`);
  const fortran = header.get('fortran_order')!;
  if (fortran.v === true) throw new Error(`${path}: fortran_order arrays are not supported`);
  if (fortran.v !== false) throw new Error(`${path}: malformed .npy header (fortran_order is ${fortran.src}): ${text.trim()}`);
  const shape = header.get('shape')!;
  const dims = shape.v;
  if (!Array.isArray(dims) || dims.some((d) => typeof d.v !== 'number' || d.v < 0 || !Number.isSafeInteger(d.v))) {
    throw new Error(`${path}: malformed .npy header (shape is ${shape.src}): ${text.trim()}`);
  }
  return { descr: descr.v, shape: dims.map((d) => d.v as number), data: buf.subarray(dataStart) };
}

/**
 * Writes `a` as a 1-D '<f8' `.npy` file, format 1.0, laid out exactly as `numpy.save` does
 * (header padded so the data starts at a multiple of 64 bytes). Creates the parent directory.
 */
export function writeNpy(path: string, a: Float64Array): void {
  writeOutput(path, npyBytes(a));
}

/** Writes an output file's bytes (a .npy or .npz), making its directories. */
export function writeOutput(path: string, bytes: Uint8Array): void {
  makeDirs(dirname(path));
  writeFileSync(path, bytes);
}

/** Every typed array's NumPy dtype (little-endian; the .npy a checkpoint keeps for a ts stage's state). */
export const NPY_DTYPES = {
  '<f8': Float64Array,
  '<f4': Float32Array,
  '<i4': Int32Array,
  '<u4': Uint32Array,
  '<i2': Int16Array,
  '<u2': Uint16Array,
  '|i1': Int8Array,
  '|u1': Uint8Array,
  '<i8': BigInt64Array,
  '<u8': BigUint64Array,
} as const;
export type NpyArray =
  | Float64Array
  | Float32Array
  | Int32Array
  | Uint32Array
  | Int16Array
  | Uint16Array
  | Int8Array
  | Uint8Array
  | Uint8ClampedArray
  | BigInt64Array
  | BigUint64Array;

/**
 * A typed array as the bytes of a `.npy` file, format 1.0, laid out exactly as `numpy.save`
 * does (header padded so the data starts at a multiple of 64 bytes): 1-D of its own dtype,
 * or with `as` another descr and shape over the same bytes (a complex field's pairs of floats).
 */
export function npyBytes(a: NpyArray, as?: { descr: string; shape: number[] }): Buffer {
  const descr = as?.descr ?? (a instanceof Uint8ClampedArray ? '|u1' : Object.entries(NPY_DTYPES).find(([, T]) => a instanceof T)![0]);
  const shape = as?.shape ?? [a.length];
  // As NumPy writes a tuple: (3,) and (2, 3).
  const tuple = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  const dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${tuple}, }`;
  const grown = dict + ' '.repeat(Math.max(0, GROWTH_AXIS_MAX_DIGITS - String(shape[0]).length));
  const hlen = grown.length + 1; // + '\n'
  const pad = ALIGN - ((MAGIC.length + 2 + 2 + hlen) % ALIGN);
  const header = Buffer.alloc(MAGIC.length + 4 + hlen + pad, 0x20);
  MAGIC.copy(header, 0);
  header[6] = 1;
  header[7] = 0;
  header.writeUInt16LE(hlen + pad, 8);
  header.write(grown, 10, 'latin1');
  header[header.length - 1] = 0x0a;
  if (!littleEndian) throw new Error('writing .npy files needs a little-endian host');
  return Buffer.concat([header, Buffer.from(a.buffer, a.byteOffset, a.byteLength)]);
}

/** A fresh (8-byte aligned) copy of `count` little-endian doubles at `offset` of `buf`. */
function toFloat64(buf: Buffer, offset: number, count: number): Float64Array {
  const out = new Float64Array(count);
  if (littleEndian) {
    new Uint8Array(out.buffer).set(buf.subarray(offset, offset + count * 8));
  } else {
    for (let i = 0; i < count; i++) out[i] = buf.readDoubleLE(offset + i * 8);
  }
  return out;
}

/** A parsed Python literal, with its source text (for messages). */
interface Value {
  v: string | number | boolean | null | Value[];
  src: string;
}

/** Parses the header: a Python dict literal of strings, ints, booleans, None, tuples and lists. */
function parseHeader(text: string): Map<string, Value> {
  let i = 0;
  const ws = () => {
    while (i < text.length && /\s/.test(text[i]!)) i++;
  };
  const expect = (c: string) => {
    ws();
    if (text[i] !== c) throw new Error(`expected '${c}' at offset ${i}`);
    i++;
  };
  const value = (): Value => {
    ws();
    const start = i;
    const c = text[i];
    let v: Value['v'];
    if (c === "'" || c === '"') {
      const end = text.indexOf(c, i + 1);
      if (end < 0) throw new Error(`unterminated string at offset ${i}`);
      v = text.slice(i + 1, end);
      i = end + 1;
    } else if (c === '(' || c === '[') {
      const close = c === '(' ? ')' : ']';
      i++;
      const items: Value[] = [];
      for (;;) {
        ws();
        if (text[i] === close) break;
        items.push(value());
        ws();
        if (text[i] === ',') i++;
        else if (text[i] !== close) throw new Error(`expected ',' or '${close}' at offset ${i}`);
      }
      i++;
      v = items;
    } else {
      const m = /^(True|False|None|-?\d+L?)/.exec(text.slice(i));
      if (!m) throw new Error(`unexpected ${i < text.length ? `'${text[i]}'` : 'end'} at offset ${i}`);
      i += m[0].length;
      v = m[0] === 'True' ? true : m[0] === 'False' ? false : m[0] === 'None' ? null : Number.parseInt(m[0], 10);
    }
    return { v, src: text.slice(start, i) };
  };
  const out = new Map<string, Value>();
  expect('{');
  for (;;) {
    ws();
    if (text[i] === '}') break;
    const key = value();
    if (typeof key.v !== 'string') throw new Error(`key ${key.src} is not a string`);
    expect(':');
    out.set(key.v, value());
    ws();
    if (text[i] === ',') i++;
    else if (text[i] !== '}') throw new Error(`expected ',' or '}' at offset ${i}`);
  }
  i++;
  ws();
  if (i !== text.length) throw new Error(`unexpected text after '}' at offset ${i}`);
  return out;
}

/**
 * mkdir -p, one level at a time: Node's recursive mkdir never returns for a path under /proc
 * (ENOENT on the child, EEXIST on /proc, and again; Node 20), and a CLI stuck in a
 * synchronous loop does not even see its SIGTERM.
 */
function makeDirs(dir: string): void {
  if (existsSync(dir)) return;
  makeDirs(dirname(dir));
  mkdirSync(dir);
}

/**
 * Fails before a run, not after it, when `path` cannot be written: its directory is made
 * and a probe file created and removed there (root passes access() checks on /proc, so
 * only a real create tells).
 */
export function checkWritable(path: string, what: 'output' | 'trace' | 'checkpoint' = 'output'): void {
  const probe = `${path}.commloop-probe-${process.pid}`;
  try {
    makeDirs(dirname(path));
    closeSync(openSync(probe, 'wx'));
    rmSync(probe, { force: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    if (what === 'checkpoint') throw new UsageError(`--checkpoint folder ${dirname(path)} cannot be written (${code})`);
    throw new UsageError(what === 'output' ? `pipeline: "output" file ${path} cannot be written (${code})` : `--trace file ${path} cannot be written (${code})`);
  }
}

/** CRC-32 (IEEE), as zip files carry one per entry and NumPy's zipfile checks it on read. */
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();
function crc32(data: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/**
 * A `.npz`: a zip archive of one `.npy` per entry (`NAME.npy`), stored uncompressed, what
 * `numpy.savez` writes and `numpy.load` reads. Zip64 is not written: an archive past
 * 4 GiB is refused with a message.
 */
export function npzBytes(entries: readonly { name: string; npy: Buffer }[]): Buffer {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  let at = 0;
  for (const { name, npy } of entries) {
    const file = Buffer.from(`${name}.npy`, 'utf8');
    const crc = crc32(npy);
    if (at + npy.length > 0xffffffff) throw new Error(`a .npz past 4 GiB needs zip64, which commloop does not write (field "${name}")`);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4); // version needed: 2.0
    local.writeUInt16LE(0, 6); // flags
    local.writeUInt16LE(0, 8); // stored
    local.writeUInt16LE(0, 10); // time
    local.writeUInt16LE(0x21, 12); // date: 1980-01-01
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(npy.length, 18);
    local.writeUInt32LE(npy.length, 22);
    local.writeUInt16LE(file.length, 26);
    local.writeUInt16LE(0, 28);
    const dir = Buffer.alloc(46);
    dir.writeUInt32LE(0x02014b50, 0);
    dir.writeUInt16LE(20, 4); // made by
    dir.writeUInt16LE(20, 6); // needed
    dir.writeUInt16LE(0, 8);
    dir.writeUInt16LE(0, 10);
    dir.writeUInt16LE(0, 12);
    dir.writeUInt16LE(0x21, 14);
    dir.writeUInt32LE(crc, 16);
    dir.writeUInt32LE(npy.length, 20);
    dir.writeUInt32LE(npy.length, 24);
    dir.writeUInt16LE(file.length, 28);
    dir.writeUInt32LE(at, 42); // the local header's offset
    central.push(dir, file);
    parts.push(local, file, npy);
    at += local.length + file.length + npy.length;
  }
  const dirBytes = central.reduce((n, b) => n + b.length, 0);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(dirBytes, 12);
  end.writeUInt32LE(at, 16);
  return Buffer.concat([...parts, ...central, end]);
}

/** Reads back what npzBytes wrote (stored entries only): each entry's name (without `.npy`) and bytes. */
export function parseNpz(buf: Buffer, path: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let at = 0;
  while (at + 30 <= buf.length && buf.readUInt32LE(at) === 0x04034b50) {
    if (buf.readUInt16LE(at + 8) !== 0) throw new Error(`${path}: entry at byte ${at} is compressed; only stored entries are read`);
    const size = buf.readUInt32LE(at + 18);
    const nameLen = buf.readUInt16LE(at + 26);
    const extra = buf.readUInt16LE(at + 28);
    const name = buf.toString('utf8', at + 30, at + 30 + nameLen).replace(/\.npy$/, '');
    const start = at + 30 + nameLen + extra;
    out.set(name, buf.subarray(start, start + size));
    at = start + size;
  }
  if (out.size === 0) throw new Error(`${path}: not a .npz file`);
  return out;
}
