/**
 * One shared WebAssembly.Memory holds every stage buffer of the ring. Its buffer is
 * a SharedArrayBuffer: worker threads view it as Float64Array and the WASM kernel
 * addresses it directly, so no array is copied per iteration.
 */
import { UsageError } from './errors.js';
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
  /** Top of each executor's WASM stack region (stacks grow down). */
  stackTops: number[];
  f64: Float64Array;
}

export function makeArena(plan: RingPlan, executors = 0): Arena {
  const { buffers, stackTops, pages } = layout(plan, executors);
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  return { memory, buffers, stackTops, f64: new Float64Array(memory.buffer) };
}

/** Where everything goes; throws a UsageError when the sizes do not fit (checked before any run starts). */
export function layout(plan: RingPlan, executors = 0): { buffers: number[]; stackTops: number[]; pages: number } {
  const buffers: number[] = [];
  let end = ARENA_BASE;
  for (const elems of plan.maxInput) {
    buffers.push(end);
    end += Math.ceil((elems * 8) / 64) * 64; // cache-line aligned, so ranks of adjacent buffers never share a line
  }
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
  return { buffers, stackTops, pages };
}
