/**
 * What a stage's code sees of a ring of fields, on one rank's packed blocks: for a ts
 * transform, frozen objects of typed views by field name and each field's dtype and shape
 * (ctx.input, ctx.output); for a C kernel built to WebAssembly, the commloop_field
 * descriptors of wasm/commloop_kernel.h written into its memory. Made once per rank (a
 * ring of fields keeps its offsets): a step costs no allocation.
 */
import { dtypeCode, type Block } from '../pipeline/fields.js';
import { fieldView, type FieldArray } from '../message.js';
import type { StageContext } from './transforms.js';

/** A field as a fields stage's ctx describes it: its dtype (NumPy's name) and per-rank shape. */
export interface FieldInfo {
  dtype: string;
  shape: readonly number[];
}

/** A fields stage's ctx: the rank's position, and each input and output field's dtype and shape. */
export interface FieldsContext extends StageContext {
  input: Readonly<Record<string, FieldInfo>>;
  output: Readonly<Record<string, FieldInfo>>;
}

/**
 * A ts stage in a ring of fields (docs/STAGES.md): `input` and `output` are frozen objects of
 * typed views by field name (a complex field as interleaved float pairs); write into the
 * output's arrays, never replace them.
 */
export type FieldsTransform = (
  input: Readonly<Record<string, FieldArray>>,
  output: Readonly<Record<string, FieldArray>>,
  ctx: FieldsContext,
) => void;

/** ctx.input / ctx.output: each field's dtype and per-rank shape, by name. */
export function fieldTable(block: Block): Readonly<Record<string, FieldInfo>> {
  return Object.freeze(Object.fromEntries(block.fields.map((f) => [f.name, Object.freeze({ dtype: f.dtype, shape: Object.freeze([...f.shape]) })])));
}

/**
 * A block's fields as typed views, by name, frozen: a transform that assigns
 * `output.flux = ...` instead of writing into it throws (modules are strict code), and the
 * failure names the field.
 */
export function blockViews(buffer: ArrayBufferLike, blockAt: number, block: Block): Readonly<Record<string, FieldArray>> {
  return Object.freeze(Object.fromEntries(block.fields.map((f) => [f.name, fieldView(buffer, blockAt, f)])));
}

/** Bytes of one commloop_field in wasm32: name, data, count (u32 each), dtype, ndim, shape[4] (i32). */
export const DESC_BYTES = 36;

/**
 * A WebAssembly kernel's descriptors for one stage: `input` and `output` descriptor arrays
 * at `at` in `memory` (names after them), everything but the data pointers written once;
 * `point(inByte, outByte)` sets those for a rank's blocks. Returns the bytes used.
 */
export function wasmDescriptors(memory: ArrayBufferLike, at: number, input: Block, output: Block) {
  const u32 = new Uint32Array(memory);
  const i32 = new Int32Array(memory);
  const u8 = new Uint8Array(memory);
  const inDesc = at;
  const outDesc = inDesc + DESC_BYTES * input.fields.length;
  let names = outDesc + DESC_BYTES * output.fields.length;
  const write = (desc: number, b: Block) =>
    b.fields.forEach((f, k) => {
      const w = (desc + k * DESC_BYTES) / 4;
      u32[w] = names;
      for (let i = 0; i < f.name.length; i++) u8[names + i] = f.name.charCodeAt(i);
      u8[names + f.name.length] = 0;
      names += f.name.length + 1;
      u32[w + 2] = f.count;
      i32[w + 3] = dtypeCode(f.dtype);
      i32[w + 4] = f.shape.length;
      for (let a = 0; a < 4; a++) i32[w + 5 + a] = f.shape[a] ?? 0;
    });
  write(inDesc, input);
  write(outDesc, output);
  const inData = input.fields.map((f, k) => ({ word: (inDesc + k * DESC_BYTES) / 4 + 1, offset: f.offset }));
  const outData = output.fields.map((f, k) => ({ word: (outDesc + k * DESC_BYTES) / 4 + 1, offset: f.offset }));
  return {
    inDesc,
    outDesc,
    bytes: names - at,
    point(inByte: number, outByte: number): void {
      for (const d of inData) u32[d.word] = inByte + d.offset;
      for (const d of outData) u32[d.word] = outByte + d.offset;
    },
  };
}
