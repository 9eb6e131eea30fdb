/**
 * One SharedArrayBuffer holds every stage buffer of the ring: worker threads view it as
 * Float64Array, MPI sends from it and receives into it, so no array is copied per
 * iteration. Where C stages run as WebAssembly on threads, the kernel addresses it
 * directly, so it is a shared WebAssembly.Memory's buffer, and wasm32 caps it at 4 GiB;
 * everywhere else (MPI's hub, where a WebAssembly stage runs in a process of its own, and
 * threads without WebAssembly) it is a plain SharedArrayBuffer, as big as the hub's views
 * of it allow.
 */
import { UsageError } from './errors.js';
import { bytesOf, regionBytes } from './message.js';
import type { RingPlan } from './pipeline/model.js';

/** The WASM kernels' static data must end below this byte; the stage buffers start here. */
export const ARENA_BASE = 1 << 20;
/** Each executor's own WASM shadow stack, above the buffers (instances of one module would otherwise share one). */
export const STACK_BYTES = 64 * 1024;

const PAGE = 65536;
/** wasm32: 4 GiB. */
const MAX_WASM_BYTES = 65536 * PAGE;
/**
 * A plain arena: the MPI transport's Int32Array view of the whole arena (its count
 * sentinels) is the tightest, and a typed array holds fewer than 2^32 elements in Node 20.
 */
const MAX_PLAIN_BYTES = 2 ** 34 - PAGE;

export interface Arena {
  /** Every stage buffer, shared with the worker threads. */
  buffer: SharedArrayBuffer;
  /** The WebAssembly.Memory whose buffer it is, where WASM kernels address it (threads with --c-backend wasm). */
  memory?: WebAssembly.Memory;
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

/**
 * Bytes of WebAssembly memory a C stage's rank needs when it runs as WebAssembly in a stage
 * process of its own (MPI): the kernel's data, then its input and output.
 */
export function wasmRankBytes(nIn: number, nOut: number): number {
  return ARENA_BASE + bytesOf(nIn + nOut);
}

/** Refuses, before anything starts, a WebAssembly stage rank whose input and output do not fit wasm32's memory. */
export function checkWasmRank(stage: string, nIn: number, nOut: number): void {
  const need = wasmRankBytes(nIn, nOut);
  if (need > MAX_WASM_BYTES) {
    throw new UsageError(
      `stage "${stage}": a rank's input and output need ${bytesOf(nIn + nOut)} bytes, more than a WebAssembly stage holds (${MAX_WASM_BYTES - ARENA_BASE}: wasm32's 4 GiB less its kernel data); use --c-backend native`,
    );
  }
}

/** Whether WASM kernels address a run's arena: C stages run as WebAssembly by the threads transport. */
export function wasmAddressed(plan: RingPlan, transport: 'mpi' | 'threads', cBackend: 'native' | 'wasm'): boolean {
  return transport === 'threads' && cBackend === 'wasm' && plan.stages.some((st) => st.kind === 'c');
}

export function makeArena(plan: RingPlan, executors = 0, wasm = false): Arena {
  const { buffers, outputs, stackTops, pages } = layout(plan, executors, wasm);
  const memory = wasm ? new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true }) : undefined;
  const buffer = memory ? (memory.buffer as unknown as SharedArrayBuffer) : new SharedArrayBuffer(pages * PAGE);
  const copyBack = plan.stages.length === 1 ? { from: outputs[0], to: buffers[0] } : undefined;
  return { buffer, memory, buffers, outputs, copyBack, stackTops, f64: new Float64Array(buffer) };
}

/** Where everything goes; throws a UsageError when the sizes do not fit (checked before any run starts). */
export function layout(plan: RingPlan, executors = 0, wasm = false): { buffers: number[]; outputs: number[]; stackTops: number[]; pages: number } {
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
  if (wasm && pages * PAGE > MAX_WASM_BYTES) {
    throw new UsageError(
      `--sizes need ${end - ARENA_BASE} bytes of stage buffers; with C stages as WebAssembly on threads the shared arena is a wasm32 memory and holds at most ${MAX_WASM_BYTES - ARENA_BASE} (--c-backend native or --transport mpi: up to ${MAX_PLAIN_BYTES - ARENA_BASE})`,
    );
  }
  if (pages * PAGE > MAX_PLAIN_BYTES) {
    throw new UsageError(`--sizes need ${end - ARENA_BASE} bytes of stage buffers; the shared arena holds at most ${MAX_PLAIN_BYTES - ARENA_BASE}`);
  }
  return { buffers, outputs, stackTops, pages };
}
