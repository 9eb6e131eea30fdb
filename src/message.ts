/**
 * A message: what one stage hands the next (Array1: what the last stage hands the first),
 * held in the shared arena. This module owns its layout: what its elements are, and where
 * each rank's part lives. The loop, the transports, the kernels' callers and the stage
 * processes ask it; none computes an offset of its own, so that a message of several named,
 * typed fields changes this file and its callers' calls, not their arithmetic.
 *
 * Today a message is one field of float64 values: `perRank` of them for each rank of the
 * stage that reads or writes it, rank r's part right after rank r-1's, which is what
 * MPI_Scatter and MPI_Gather move as they are (no copy on either side of the wire).
 *
 * Offsets are numbers, not objects: a step of the threads transport takes about a
 * microsecond, and the hot paths call these per rank.
 */
import { npyBytes, parseNpy } from './pipeline/npy.js';

/**
 * A message outside the arena, whole: Array1 handed to the caller (onIteration, the result),
 * the initial one, a checkpoint's, one crossing the supervisor's pipe. Every place that
 * carries one says so with this type.
 */
export type Message = Float64Array;

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
