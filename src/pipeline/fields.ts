/**
 * A stage's `fields`: an ordered object of named fields, each with a NumPy dtype name and a
 * per-rank shape, in place of `size` (one float64 field). Validation with messages that name
 * the stage and the field, and how fields chain from one stage to the next: each field is
 * concatenated over the producing stage's ranks and split evenly over the next stage's ranks
 * along its first axis, or, with "to": "all", given whole to every rank of the next stage.
 *
 * Where the bytes live is src/message.ts's: a rank's part of a message is one packed block
 * (packedLayout below), which is what the transports move and the stages view.
 */
import { UsageError } from '../errors.js';

/** NumPy's names; bool travels as uint8. A complex element is a pair of floats. */
export const DTYPES = {
  float64: { bytes: 8, npy: '<f8' },
  float32: { bytes: 4, npy: '<f4' },
  int64: { bytes: 8, npy: '<i8' },
  int32: { bytes: 4, npy: '<i4' },
  int16: { bytes: 2, npy: '<i2' },
  int8: { bytes: 1, npy: '|i1' },
  uint64: { bytes: 8, npy: '<u8' },
  uint32: { bytes: 4, npy: '<u4' },
  uint16: { bytes: 2, npy: '<u2' },
  uint8: { bytes: 1, npy: '|u1' },
  complex128: { bytes: 16, npy: '<c16' },
  complex64: { bytes: 8, npy: '<c8' },
} as const;
export type Dtype = keyof typeof DTYPES;
const DTYPE_NAMES = Object.keys(DTYPES) as Dtype[];
/** The code of each dtype in C (wasm/commloop_kernel.h's COMMLOOP_*), the addon and protocol v3: 1-based, in DTYPES order. */
export const dtypeCode = (d: Dtype) => DTYPE_NAMES.indexOf(d) + 1;

/** A field as a stage declares it: per rank, `shape` (its count is the product). */
export interface FieldSpec {
  name: string;
  dtype: Dtype;
  shape: number[];
  /** "all": the next stage's every rank gets the whole field; else it is split over them. */
  to: 'split' | 'all';
}

const show = (v: unknown) => JSON.stringify(v) ?? String(v);
const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const MAX_COUNT = 2 ** 31 - 1;
/** Axes of a shape: C's descriptor holds four (wasm/commloop_kernel.h). */
export const MAX_AXES = 4;

/** Elements per rank of a field. */
export const countOf = (f: Pick<FieldSpec, 'shape'>) => f.shape.reduce((n, d) => n * d, 1);

/**
 * A stage's "fields", checked: an object of field names (identifiers, as C, Python and
 * NumPy's .npz need them) to { dtype, shape?, to? }, in the order written.
 */
export function parseFields(stage: string, raw: unknown): FieldSpec[] {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw) || Object.keys(raw).length === 0) {
    throw new UsageError(`stage "${stage}": "fields" must be an object of field names to { "dtype": ..., "shape": [...] } with at least one field (got ${show(raw)})`);
  }
  return Object.entries(raw as Record<string, unknown>).map(([name, f]) => {
    const where = `stage "${stage}": field "${name}"`;
    if (!NAME.test(name)) throw new UsageError(`stage "${stage}": field name ${show(name)} must be an identifier (letters, digits, _; not starting with a digit)`);
    // Assigned to a JavaScript object, this one name sets its prototype instead of a property.
    if (name === '__proto__') throw new UsageError(`stage "${stage}": field name "__proto__" is reserved (a JavaScript object cannot hold it as a field)`);
    if (typeof f !== 'object' || f === null || Array.isArray(f)) throw new UsageError(`${where} must be an object with "dtype" and optionally "shape" and "to" (got ${show(f)})`);
    const o = f as Record<string, unknown>;
    for (const k of Object.keys(o)) {
      if (!['dtype', 'shape', 'to'].includes(k)) throw new UsageError(`${where}: unknown key "${k}" (keys: dtype, shape, to)`);
    }
    if (typeof o.dtype !== 'string' || !DTYPE_NAMES.includes(o.dtype as Dtype)) {
      throw new UsageError(`${where}: "dtype" must be one of ${DTYPE_NAMES.join(', ')} (got ${show(o.dtype)}; bool travels as uint8)`);
    }
    const shape = o.shape ?? [1];
    if (!Array.isArray(shape) || shape.length === 0 || shape.length > MAX_AXES || !shape.every((d) => Number.isInteger(d) && d >= 1)) {
      throw new UsageError(`${where}: "shape" must be a list of 1 to ${MAX_AXES} positive integers (got ${show(o.shape)})`);
    }
    if (countOf({ shape }) > MAX_COUNT) throw new UsageError(`${where}: "shape" ${show(shape)} holds more than ${MAX_COUNT} elements a rank`);
    if (o.to !== undefined && o.to !== 'all') throw new UsageError(`${where}: "to" must be "all" (every rank of the next stage gets the whole field) or absent (got ${show(o.to)})`);
    return { name, dtype: o.dtype as Dtype, shape: shape as number[], to: o.to === 'all' ? 'all' : 'split' };
  });
}

/** How a field reaches one rank of the consuming stage: its per-rank shape there. */
export function consumerShape(f: FieldSpec, producerRanks: number, consumerRanks: number, producer: string, consumer: string): number[] {
  const rows = f.shape[0] * producerRanks;
  if (f.to === 'all') return [rows, ...f.shape.slice(1)];
  if (rows % consumerRanks !== 0) {
    throw new UsageError(
      `fields do not chain: field "${f.name}" of stage "${producer}" has ${rows} rows (${producerRanks} ranks x ${f.shape[0]}), not divisible by the ${consumerRanks} ranks of stage "${consumer}"`,
    );
  }
  return [rows / consumerRanks, ...f.shape.slice(1)];
}

/**
 * The first key that an object of JSON `text` repeats, as a path (`stages[1].fields.flux`),
 * or undefined. JSON.parse keeps the last of duplicate keys silently: a pipeline that names
 * a field twice would lose one. `text` must be valid JSON (parse it first).
 */
export function duplicateKey(text: string): string | undefined {
  let i = 0;
  const ws = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i])) i++;
  };
  const str = (): string => {
    const start = i;
    i++; // the opening quote
    while (text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const value = (path: string): string | undefined => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const seen = new Set<string>();
      ws();
      if (text[i] === '}') return i++, undefined;
      for (;;) {
        ws();
        const key = str();
        const at = path ? `${path}.${key}` : key;
        if (seen.has(key)) return at;
        seen.add(key);
        ws();
        i++; // ':'
        const dup = value(at);
        if (dup) return dup;
        ws();
        if (text[i++] === '}') return undefined; // else ','
      }
    }
    if (c === '[') {
      i++;
      ws();
      if (text[i] === ']') return i++, undefined;
      for (let k = 0; ; k++) {
        const dup = value(`${path}[${k}]`);
        if (dup) return dup;
        ws();
        if (text[i++] === ']') return undefined; // else ','
      }
    }
    if (c === '"') return str(), undefined;
    while (i < text.length && !',]} \t\n\r'.includes(text[i])) i++; // a number, true, false, null
    return undefined;
  };
  return value('');
}

/**
 * A rank's part of a message, in the arena, on the wire and in a stage process (protocol
 * v3): its fields in table order, back to back, each padded to a multiple of 8 bytes, so that
 * every field's typed view is aligned and the block is whole 8-byte words. Returns each
 * field's byte offset and the block's bytes.
 */
export function packedLayout(fields: readonly { dtype: Dtype; count: number }[]): { offsets: number[]; bytes: number } {
  const offsets: number[] = [];
  let at = 0;
  for (const f of fields) {
    offsets.push(at);
    at += Math.ceil((f.count * DTYPES[f.dtype].bytes) / 8) * 8;
  }
  return { offsets, bytes: at };
}

/** One field of a rank's packed block. */
export interface BlockField {
  name: string;
  dtype: Dtype;
  /** Per rank. */
  shape: number[];
  count: number;
  /** Byte offset in the block. */
  offset: number;
}

/** A rank's packed block: its fields and its size in 8-byte words (what the transports count). */
export interface Block {
  fields: BlockField[];
  words: number;
}

export function blockOf(fields: readonly { name: string; dtype: Dtype; shape: number[] }[]): Block {
  const withCounts = fields.map((f) => ({ name: f.name, dtype: f.dtype, shape: f.shape, count: countOf(f) }));
  const { offsets, bytes } = packedLayout(withCounts);
  return { fields: withCounts.map((f, k) => ({ ...f, offset: offsets[k] })), words: bytes / 8 };
}

/** A copy of bytes from a stage's output region to the next stage's input region (offsets from each region's start). */
export interface Copy {
  from: number;
  to: number;
  bytes: number;
}

/** How a ring's fields chain: every stage's blocks, and where they do not line up, the copies between them. */
export interface RingFields {
  /** Per stage: its output fields as declared (with "to"). */
  declared: FieldSpec[][];
  /** Per stage: one rank's output block, and one rank's input block. */
  out: Block[];
  in: Block[];
  /**
   * Per stage s: the copies that make stage s+1's input (stage 0's after the last stage) from
   * stage s's output, or undefined where every rank's input block is the same bytes as a
   * producing rank's output block (the stages then share one region: nothing is copied). A
   * one-stage ring always copies: its output cannot be its own input.
   */
  regroup: (Copy[] | undefined)[];
}

/**
 * Chains the fields of a ring's stages (each stage's output fields, in order); throws a
 * UsageError naming the stage and the field where counts do not chain.
 */
export function ringFields(stages: readonly { name: string; ranks: number; fields: FieldSpec[] }[]): RingFields {
  const S = stages.length;
  const out = stages.map((st) => blockOf(st.fields));
  const inputs = stages.map((st, s) => {
    const prev = stages[(s + S - 1) % S];
    return blockOf(prev.fields.map((f) => ({ name: f.name, dtype: f.dtype, shape: consumerShape(f, prev.ranks, st.ranks, prev.name, st.name) })));
  });
  const regroup = stages.map((st, s) => {
    const next = (s + 1) % S;
    const copies = copiesBetween(st.fields, out[s], st.ranks, inputs[next], stages[next].ranks);
    return S > 1 && copies.every((c) => c.from === c.to) ? undefined : copies;
  });
  return { declared: stages.map((st) => st.fields), out, in: inputs, regroup };
}

/** The byte copies that move P producing ranks' output blocks into Q consuming ranks' input blocks, adjacent ones merged. */
function copiesBetween(declared: FieldSpec[], from: Block, P: number, to: Block, Q: number): Copy[] {
  const copies: Copy[] = [];
  const add = (c: Copy) => {
    const last = copies[copies.length - 1];
    if (last && last.from + last.bytes === c.from && last.to + last.bytes === c.to) last.bytes += c.bytes;
    else copies.push(c);
  };
  for (let q = 0; q < Q; q++) {
    declared.forEach((f, k) => {
      const src = from.fields[k];
      const dst = to.fields[k];
      const eb = DTYPES[f.dtype].bytes;
      // Elements [start, start + dst.count) of the field concatenated over the P ranks.
      const start = f.to === 'all' ? 0 : q * dst.count;
      for (let e = start; e < start + dst.count; ) {
        const p = Math.floor(e / src.count);
        const i = e - p * src.count;
        const n = Math.min(src.count - i, start + dst.count - e);
        add({ from: p * from.words * 8 + src.offset + i * eb, to: q * to.words * 8 + dst.offset + (e - start) * eb, bytes: n * eb });
        e += n;
      }
    });
  }
  return copies;
}

/** The ring's size stages as fields where another stage declares some: one float64 field `data` of `size` a rank. */
export const SIZE_FIELD = 'data';
