/**
 * A stage rank's saved state as it travels and rests (docs/PROTOCOL.md section 5): bytes
 * with a format, the same on every transport. This file turns a ts stage's `save` result
 * into that and back, so the threads transport and the Node stage process cannot differ.
 */
import { NPY_DTYPES, npyBytes, parseNpy, type NpyArray } from '../pipeline/npy.js';

/** 0: nothing saved (no hook), 1: raw bytes, 2: a whole `.npy` file's bytes. */
export type StateFormat = 0 | 1 | 2;
export const STATE_NONE = 0;
export const STATE_BYTES = 1;
export const STATE_NPY = 2;

export interface RankState {
  format: StateFormat;
  bytes: Uint8Array;
}

export const NO_STATE: RankState = { format: STATE_NONE, bytes: new Uint8Array(0) };

/** Per stage, per rank; null for a stage that keeps no state (a `c` kernel, an exec stage without `"state": true`). */
export type RunStates = (RankState[] | null)[];

/**
 * What a ts stage's `save(ctx)` returned, as a RankState: a Uint8Array (or Node Buffer) is
 * bytes, any other typed array a one-dimensional `.npy` of its type. Throws for anything else.
 */
export function stateOfValue(value: unknown): RankState {
  if (value === undefined || value === null) return NO_STATE;
  if (value instanceof Uint8Array) return { format: STATE_BYTES, bytes: Uint8Array.from(value) };
  if (ArrayBuffer.isView(value) && !(value instanceof DataView)) return { format: STATE_NPY, bytes: new Uint8Array(npyBytes(value as NpyArray)) };
  const what = value instanceof DataView ? 'a DataView' : typeof value === 'object' ? (value.constructor?.name ?? 'an object') : typeof value;
  throw new Error(`save() returned ${what}: it must return a Uint8Array or another typed array (or nothing)`);
}

/** The value a ts stage's `load(state, ctx)` gets: what its save returned, as a fresh (aligned) array. */
export function valueOfState(state: RankState): NpyArray {
  if (state.format === STATE_BYTES) return Uint8Array.from(state.bytes);
  const { descr, data } = parseNpy(Buffer.from(state.bytes.buffer, state.bytes.byteOffset, state.bytes.byteLength), 'the saved state');
  const T = (NPY_DTYPES as Record<string, new (n: number) => NpyArray>)[descr];
  if (!T) throw new Error(`the saved state is a .npy of dtype '${descr}', which a ts stage cannot load`);
  const size = (T as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT;
  const out = new T(data.length / size);
  new Uint8Array(out.buffer).set(data);
  return out;
}
