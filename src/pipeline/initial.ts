/**
 * Array1 at iteration 0 in a ring of fields: each field of the last stage's output filled
 * with a number, or read from a .npy file of its dtype. The result is the packed message
 * (src/message.ts) the loop starts from.
 */
import { readFileSync } from 'node:fs';
import { UsageError } from '../errors.js';
import { fieldCtor, lanesOf, wholeShape, wordsOf, type FieldValues, type Message } from '../message.js';
import { DTYPES, type Block, type BlockField, type Dtype } from './fields.js';
import { parseNpy } from './npy.js';

/** The integer dtypes' ranges, for a number given to an integer field. */
const INT_RANGE: Partial<Record<Dtype, [bigint, bigint]>> = {
  int8: [-(2n ** 7n), 2n ** 7n - 1n],
  int16: [-(2n ** 15n), 2n ** 15n - 1n],
  int32: [-(2n ** 31n), 2n ** 31n - 1n],
  int64: [-(2n ** 63n), 2n ** 63n - 1n],
  uint8: [0n, 2n ** 8n - 1n],
  uint16: [0n, 2n ** 16n - 1n],
  uint32: [0n, 2n ** 32n - 1n],
  uint64: [0n, 2n ** 64n - 1n],
};

/** `initial` as a pipeline gives it (absolute file paths), for Array1 of `ranks` blocks `block` written by stage `stage`. */
export function initialFields(initial: number | string | Record<string, number | string> | undefined, block: Block, ranks: number, stage: string): Message {
  if (typeof initial === 'string') {
    throw new UsageError(`pipeline: "initial" is one file, but Array1 (stage "${stage}"'s output) is fields ${names(block)}: give {"FIELD": number or .npy file} per field`);
  }
  const per = typeof initial === 'object' ? initial : {};
  for (const k of Object.keys(per)) {
    if (!block.fields.some((f) => f.name === k)) throw new UsageError(`pipeline: "initial" names field "${k}", which Array1 (stage "${stage}"'s output) does not have (fields: ${names(block)})`);
  }
  const values: FieldValues = {};
  for (const f of block.fields) {
    // Own keys only: a field named like an Object property (constructor, toString) is not given by the prototype.
    const v = typeof initial === 'number' ? initial : Object.hasOwn(per, f.name) ? per[f.name] : 1;
    values[f.name] = typeof v === 'number' ? filled(f, ranks, v) : fromFile(f, ranks, v, stage);
  }
  return wordsOf(values, block, ranks);
}

const names = (block: Block) => block.fields.map((f) => f.name).join(', ');

function filled(f: BlockField, ranks: number, v: number) {
  const a = new (fieldCtor(f.dtype))(f.count * ranks * lanesOf(f.dtype));
  const range = INT_RANGE[f.dtype];
  if (range) {
    if (!Number.isInteger(v) || BigInt(v) < range[0] || BigInt(v) > range[1]) {
      throw new UsageError(`pipeline: "initial" ${v} does not fit field "${f.name}" (${f.dtype}: integers ${range[0]} to ${range[1]})`);
    }
    if (a instanceof BigInt64Array || a instanceof BigUint64Array) a.fill(BigInt(v));
    else (a as Int32Array).fill(v);
  } else if (lanesOf(f.dtype) === 2) {
    for (let i = 0; i < a.length; i += 2) (a as Float64Array)[i] = v; // (v, 0)
  } else (a as Float64Array).fill(v);
  return a;
}

function fromFile(f: BlockField, ranks: number, file: string, stage: string) {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch {
    throw new UsageError(`pipeline: "initial" of field "${f.name}": file not found: ${file}`);
  }
  let npy: ReturnType<typeof parseNpy>;
  try {
    npy = parseNpy(bytes, file);
  } catch (err) {
    throw new UsageError(`pipeline: "initial" of field "${f.name}": ${(err as Error).message}`);
  }
  const want = DTYPES[f.dtype].npy;
  const count = f.count * ranks;
  const held = npy.shape.reduce((n, d) => n * d, 1);
  // NumPy writes bool as '|b1': it travels as uint8.
  const descrOk = npy.descr === want || (f.dtype === 'uint8' && npy.descr === '|b1');
  if (!descrOk || held !== count || npy.data.length !== count * DTYPES[f.dtype].bytes) {
    throw new UsageError(
      `pipeline: "initial" of field "${f.name}": ${file} holds ${npy.descr} x ${held}; field "${f.name}" of Array1 (stage "${stage}", ${ranks} ranks) is ${f.dtype} (${want}) of shape [${wholeShape(f, ranks).join(', ')}]`,
    );
  }
  const a = new (fieldCtor(f.dtype))(count * lanesOf(f.dtype));
  new Uint8Array(a.buffer).set(npy.data);
  return a;
}
