/**
 * A message: what one stage hands the next (Array1: what the last stage hands the first),
 * held in the shared arena. This module owns its layout: what its elements are, and where
 * each rank's part lives. The loop, the transports, the kernels' callers and the stage
 * processes ask it; none computes an offset of its own, so that a message of several named,
 * typed fields changes this file and its callers' calls, not their arithmetic.
 *
 * A message is one field of float64 values: `perRank` of them for each rank of the stage
 * that reads or writes it, rank r's part right after rank r-1's, which is what MPI_Scatter
 * and MPI_Gather move as they are (no copy on either side of the wire). In a ring of fields
 * (src/pipeline/fields.ts) each rank's part is one packed block of its fields, a whole
 * number of 8-byte words, and every offset below counts those words: the transports move a
 * ring of fields exactly as they move one of float64 values. Its fields are views into the
 * blocks (fieldView); where one stage's blocks do not line up with the next's (other rank
 * counts, a field "to" all ranks), the loop copies between them (regroup).
 *
 * Offsets are numbers, not objects: a step of the threads transport takes about a
 * microsecond, and the hot paths call these per rank.
 */
import { npyBytes, npzBytes, parseNpy, parseNpz } from './pipeline/npy.js';
import { checksum } from './stage/transforms.js';
import { DTYPES, type Block, type BlockField, type Copy, type Dtype } from './pipeline/fields.js';

/**
 * A message outside the arena, whole: Array1 handed to the caller (onIteration, the result),
 * the initial one, a checkpoint's, one crossing the supervisor's pipe. Every place that
 * carries one says so with this type.
 */
export type Message = Float64Array;

/** A field's values as JavaScript holds them: complex fields as interleaved (real, imag) floats. */
export type FieldArray =
  | Float64Array
  | Float32Array
  | BigInt64Array
  | Int32Array
  | Int16Array
  | Int8Array
  | BigUint64Array
  | Uint32Array
  | Uint16Array
  | Uint8Array;

/** A message of fields as the library's caller sees it: each field whole (concatenated over the ranks that wrote it), by name, in order. */
export type FieldValues = Record<string, FieldArray>;

/** Array1 as the library hands it out and takes it: one float64 array, or (a ring of fields) its fields. */
export type Array1 = Float64Array | FieldValues;

type FieldCtor = { new (buffer: ArrayBufferLike, byteOffset: number, length: number): FieldArray; new (length: number): FieldArray; readonly BYTES_PER_ELEMENT: number; readonly name: string };
const CTORS: Record<Dtype, FieldCtor> = {
  float64: Float64Array,
  float32: Float32Array,
  int64: BigInt64Array,
  int32: Int32Array,
  int16: Int16Array,
  int8: Int8Array,
  uint64: BigUint64Array,
  uint32: Uint32Array,
  uint16: Uint16Array,
  uint8: Uint8Array,
  complex128: Float64Array,
  complex64: Float32Array,
};

/** The typed array class of a dtype's values, and how many of its elements one value takes (2 for complex). */
export const fieldCtor = (d: Dtype) => CTORS[d];
export const lanesOf = (d: Dtype) => (d.startsWith('complex') ? 2 : 1);

/** A field of a block at byte `blockAt` of `buffer`, as a typed view (shares the memory). */
export function fieldView(buffer: ArrayBufferLike, blockAt: number, f: BlockField): FieldArray {
  return new CTORS[f.dtype](buffer, blockAt + f.offset, f.count * lanesOf(f.dtype));
}

/** A field whole, as `ranks` ranks' blocks hold it: its shape (the first axis over every rank). */
export const wholeShape = (f: Pick<BlockField, 'shape'>, ranks: number) => [f.shape[0] * ranks, ...f.shape.slice(1)];

/** Each field of a packed message of `ranks` blocks, whole and copied out of it. */
export function valuesOf(words: Message, block: Block, ranks: number): FieldValues {
  const values: FieldValues = {};
  for (const f of block.fields) {
    const n = f.count * lanesOf(f.dtype);
    const whole = new CTORS[f.dtype](n * ranks);
    for (let r = 0; r < ranks; r++) {
      (whole as Uint8Array).set(fieldView(words.buffer, words.byteOffset + r * block.words * 8, f) as Uint8Array, r * n);
    }
    values[f.name] = whole;
  }
  return values;
}

/** The packed message of `ranks` blocks holding `values` (each field whole, of its dtype and count: checked by the caller). */
export function wordsOf(values: FieldValues, block: Block, ranks: number): Message {
  const words = new Float64Array(block.words * ranks);
  for (const f of block.fields) {
    const n = f.count * lanesOf(f.dtype);
    const whole = values[f.name];
    for (let r = 0; r < ranks; r++) {
      (fieldView(words.buffer, r * block.words * 8, f) as Uint8Array).set(whole.subarray(r * n, (r + 1) * n) as Uint8Array);
    }
  }
  return words;
}

/** Bytes of one value of a dtype (a complex pair counts as one value). */
export const valueBytes = (d: Dtype) => DTYPES[d].bytes;

/** Makes the next stage's input blocks from a stage's output blocks: `copies` (src/pipeline/fields.ts) between two regions of the arena. */
export function regroup(arena: Uint8Array, fromAt: number, toAt: number, copies: readonly Copy[]): void {
  for (const c of copies) arena.copyWithin(toAt + c.to, fromAt + c.from, fromAt + c.from + c.bytes);
}

/** Bytes of one element. */
export const ELEMENT_BYTES = 8;

/** Regions start on a cache line, so ranks of adjacent regions never share one. */
const LINE = 64;

/** Bytes of arena a region needs to hold a message of `elements` elements (cache-line aligned). */
export function regionBytes(elements: number): number {
  return Math.ceil((elements * ELEMENT_BYTES) / LINE) * LINE;
}

/** Bytes of `elements` elements: a rank's part, or a whole message. */
export function bytesOf(elements: number): number {
  return elements * ELEMENT_BYTES;
}

/**
 * The element index, in a Float64Array over the whole arena, of rank `rank`'s part of the
 * message at byte `at` whose ranks hold `perRank` elements each (rank 0: the message's start).
 */
export function partIndex(at: number, perRank: number, rank: number): number {
  return at / ELEMENT_BYTES + rank * perRank;
}

/** Rank `rank`'s part of a message, on a view of the whole arena (shares its memory). */
export function partView(arena: Float64Array, at: number, perRank: number, rank: number): Float64Array {
  const i = partIndex(at, perRank, rank);
  return arena.subarray(i, i + perRank);
}

/** A whole message of `elements` elements at byte `at`, on a view of the whole arena (shares its memory). */
export function messageView(arena: Float64Array, at: number, elements: number): Float64Array {
  return partView(arena, at, elements, 0);
}

/**
 * The element index of the last element of rank `rank`'s part: where the MPI transport puts
 * its count sentinel (a rank that sent fewer elements leaves it there).
 */
export function lastOfPart(at: number, perRank: number, rank: number): number {
  return partIndex(at, perRank, rank + 1) - 1;
}

/** A message as the bytes of a file (a checkpoint's Array1): a 1-D float64 `.npy`. */
export function messageBytes(m: Message): Buffer {
  return npyBytes(m);
}

/** Reads a message back from what messageBytes wrote; throws naming `file` unless it holds `length` float64 values. */
export function messageFromBytes(bytes: Buffer, file: string, length: number): Message {
  const { descr, data } = parseNpy(bytes, file);
  if (descr !== '<f8' || data.length !== bytesOf(length)) throw new Error(`${file} is not ${length} float64 values`);
  const m = new Float64Array(length);
  new Uint8Array(m.buffer).set(data);
  return m;
}

/** Array1's fields (a ring of fields): the last stage's output block and its rank count; undefined for one float64 array. */
export interface Array1Form {
  block: Block;
  ranks: number;
}

/** The form of Array1 in a plan. */
export function array1Form(plan: { stages: readonly { ranks: number }[]; fields?: { out: Block[] } }): Array1Form | undefined {
  if (!plan.fields) return undefined;
  const S = plan.stages.length;
  return { block: plan.fields.out[S - 1], ranks: plan.stages[S - 1].ranks };
}

/** Array1 as the library hands it out (a copy): the array itself, or its fields. */
export function publicArray1(form: Array1Form | undefined, m: Message): Array1 {
  return form ? valuesOf(m, form.block, form.ranks) : m;
}

/**
 * The run's checksum: Array1 summed left to right; in a ring of fields each field in order,
 * every value as a double (a complex value's real part, then its imaginary part).
 */
export function checksumOf(form: Array1Form | undefined, m: Message): number {
  if (!form) return checksum(m);
  let s = 0;
  for (const a of Object.values(valuesOf(m, form.block, form.ranks))) for (let i = 0; i < a.length; i++) s += Number(a[i]);
  return s;
}

/** Each field of Array1 as the bytes of a .npy of its dtype and whole shape. */
export function fieldNpys(form: Array1Form, m: Message): { name: string; npy: Buffer }[] {
  const values = valuesOf(m, form.block, form.ranks);
  return form.block.fields.map((f) => ({ name: f.name, npy: npyBytes(values[f.name], { descr: DTYPES[f.dtype].npy, shape: wholeShape(f, form.ranks) }) }));
}

/** Array1 as an output file's bytes: a 1-D float64 .npy, or in a ring of fields a .npz of one .npy per field. */
export function outputBytes(form: Array1Form | undefined, m: Message): Buffer {
  return form ? npzBytes(fieldNpys(form, m)) : npyBytes(m);
}

/** Reads Array1 back from a .npz of its fields (what outputBytes wrote), checked against the form; throws naming `file`. */
export function array1FromNpz(form: Array1Form, bytes: Buffer, file: string): Message {
  const entries = parseNpz(bytes, file);
  const values: FieldValues = {};
  for (const f of form.block.fields) {
    const npy = entries.get(f.name);
    if (!npy) throw new Error(`${file} has no field "${f.name}"`);
    const { descr, data } = parseNpy(npy, `${file}:${f.name}`);
    const n = f.count * form.ranks;
    if (descr !== DTYPES[f.dtype].npy || data.length !== n * DTYPES[f.dtype].bytes) throw new Error(`${file}: field "${f.name}" is not ${n} ${f.dtype} values`);
    const a = new CTORS[f.dtype](n * lanesOf(f.dtype));
    new Uint8Array(a.buffer).set(data);
    values[f.name] = a;
  }
  return wordsOf(values, form.block, form.ranks);
}
