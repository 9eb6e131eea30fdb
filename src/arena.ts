/**
 * One shared WebAssembly.Memory holds every stage buffer of the ring. Its buffer is
 * a SharedArrayBuffer: worker threads view it as Float64Array and the WASM kernel
 * addresses it directly, so no array is copied per iteration.
 */
import { UsageError } from './errors.js';
import { regionBytes } from './message.js';
import type { RingPlan } from './pipeline/model.js';

/** The WASM kernels' static data must end below this byte; the stage buffers start here. */
export const ARENA_BASE = 1 << 20;
/** Each executor's own WASM shadow stack, above the buffers (instances of one module would otherwise share one). */
export const STACK_BYTES = 64 * 1024;

const PAGE = 65536;
const MAX_PAGES = 65536; // wasm32: 4 GiB

export interface Arena {
  memory: WebAssembly.Memory;
  /** Byte offset of buffer s (the input of stage s). */
  buffers: number[];
  /**
   * Byte offset of stage s's output: buffer s+1, and for the last stage buffer 0 (Array1),
   * except in a ring of one stage, whose output cannot be its own input (a rank would
   * overwrite what other ranks still read, and the MPI count sentinels would land on the
   * input): it writes a buffer of its own, which the loop copies to Array1 (copyBack).
   */
  outputs: number[];
  /** A one-stage ring: the copy after each iteration, output buffer to Array1 (byte offsets); else undefined. */
  copyBack?: { from: number; to: number };
  /** Top of each executor's WASM stack region (stacks grow down). */
  stackTops: number[];
  f64: Float64Array;
}

export function makeArena(plan: RingPlan, executors = 0): Arena {
  const { buffers, outputs, stackTops, pages } = layout(plan, executors);
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  const copyBack = plan.stages.length === 1 ? { from: outputs[0], to: buffers[0] } : undefined;
  return { memory, buffers, outputs, copyBack, stackTops, f64: new Float64Array(memory.buffer) };
}

/** Where everything goes; throws a UsageError when the sizes do not fit (checked before any run starts). */
export function layout(plan: RingPlan, executors = 0): { buffers: number[]; outputs: number[]; stackTops: number[]; pages: number } {
  const buffers: number[] = [];
  let end = ARENA_BASE;
  const take = (elems: number) => {
    const at = end;
    end += regionBytes(elems);
    return at;
  };
  for (const elems of plan.maxInput) buffers.push(take(elems));
  const S = buffers.length;
  // One stage: its output buffer is as big as Array1 ever gets (its input, maxInput[0]).
  const outputs = S === 1 ? [take(plan.maxInput[0])] : buffers.map((_, s) => buffers[(s + 1) % S]);
  const stackTops: number[] = [];
  for (let i = 0; i < executors; i++) {
    end += STACK_BYTES;
    stackTops.push(end);
  }
  const pages = Math.ceil(end / PAGE);
  if (pages > MAX_PAGES) {
    throw new UsageError(
      `--sizes need ${end - ARENA_BASE} bytes of stage buffers; the shared arena holds at most ${MAX_PAGES * PAGE - ARENA_BASE}`,
    );
  }
  return { buffers, outputs, stackTops, pages };
}
