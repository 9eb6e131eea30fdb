/**
 * A stage's `fields` (issue 27, work in progress, not yet wired into a run): an ordered
 * object of named fields, each with a NumPy dtype name and a per-rank shape, in place of
 * `size` (one float64 field). Validation with messages that name the stage and the field,
 * and how fields chain from one stage to the next: each field is concatenated over the
 * producing stage's ranks and split evenly over the next stage's ranks along its first
 * axis, or, with "to": "all", given whole to every rank of the next stage.
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
    if (typeof f !== 'object' || f === null || Array.isArray(f)) throw new UsageError(`${where} must be an object with "dtype" and optionally "shape" and "to" (got ${show(f)})`);
    const o = f as Record<string, unknown>;
    for (const k of Object.keys(o)) {
      if (!['dtype', 'shape', 'to'].includes(k)) throw new UsageError(`${where}: unknown key "${k}" (keys: dtype, shape, to)`);
    }
    if (typeof o.dtype !== 'string' || !DTYPE_NAMES.includes(o.dtype as Dtype)) {
      throw new UsageError(`${where}: "dtype" must be one of ${DTYPE_NAMES.join(', ')} (got ${show(o.dtype)}; bool travels as uint8)`);
    }
    const shape = o.shape ?? [1];
    if (!Array.isArray(shape) || shape.length === 0 || !shape.every((d) => Number.isInteger(d) && d >= 1)) {
      throw new UsageError(`${where}: "shape" must be a non-empty list of positive integers (got ${show(o.shape)})`);
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
 * A rank's message on the wire and in a stage process (protocol v3, planned): its fields in
 * table order, back to back, each padded to a multiple of 8 bytes, so that every field's
 * typed view is aligned. Returns each field's byte offset and the block's bytes.
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
