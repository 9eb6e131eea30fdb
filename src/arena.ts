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
const LINE = 64;
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
  /**
   * Where Array1 (the last stage's output, the next iteration's input) is read and written:
   * buffer 0, or in a ring of fields the last stage's output, from which the loop regroups
   * buffer 0 where they differ (plan.fields.regroup).
   */
  array1At: number;
  /** Top of each executor's WASM stack region (stacks grow down). */
  stackTops: number[];
  /** A ring of fields with WASM kernels: where each executor writes its kernels' field descriptors (below its stack). */
  scratch: number[];
  f64: Float64Array;
  u8: Uint8Array;
}

/** Bytes of field descriptors (wasm/commloop_kernel.h's commloop_field in wasm32: 36 bytes) and their names, per executor. */
export function scratchBytes(plan: RingPlan): number {
  if (!plan.fields) return 0;
  // Each stage's descriptors start 4-byte aligned (their words are u32).
  let bytes = 4 * plan.stages.length;
  for (const b of [...plan.fields.in, ...plan.fields.out]) for (const f of b.fields) bytes += 36 + f.name.length + 1;
  return Math.ceil(bytes / LINE) * LINE;
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
  const { buffers, outputs, stackTops, scratch, pages } = layout(plan, executors, wasm);
  const memory = wasm ? new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true }) : undefined;
  const buffer = memory ? (memory.buffer as unknown as SharedArrayBuffer) : new SharedArrayBuffer(pages * PAGE);
  const copyBack = plan.stages.length === 1 && !plan.fields ? { from: outputs[0], to: buffers[0] } : undefined;
  const array1At = plan.fields ? outputs[plan.stages.length - 1] : buffers[0];
  return { buffer, memory, buffers, outputs, copyBack, array1At, stackTops, scratch, f64: new Float64Array(buffer), u8: new Uint8Array(buffer) };
}

/** Where everything goes; throws a UsageError when the sizes do not fit (checked before any run starts). */
export function layout(plan: RingPlan, executors = 0, wasm = false): { buffers: number[]; outputs: number[]; stackTops: number[]; scratch: number[]; pages: number } {
  const buffers: number[] = [];
  let end = ARENA_BASE;
  const take = (elems: number) => {
    const at = end;
    end += regionBytes(elems);
    return at;
  };
  for (const elems of plan.maxInput) buffers.push(take(elems));
  const S = buffers.length;
  const fields = plan.fields;
  // One stage: its output buffer is as big as Array1 ever gets (its input, maxInput[0]). In a
  // ring of fields, a stage whose output blocks do not line up with the next stage's input
  // blocks writes a region of its own, which the loop regroups into the next buffer.
  const outputs = fields
    ? buffers.map((_, s) => (fields.regroup[s] ? take(plan.stages[s].ranks * fields.out[s].words) : buffers[(s + 1) % S]))
    : S === 1
      ? [take(plan.maxInput[0])]
      : buffers.map((_, s) => buffers[(s + 1) % S]);
  const stackTops: number[] = [];
  const scratch: number[] = [];
  const descBytes = wasm ? scratchBytes(plan) : 0;
  for (let i = 0; i < executors; i++) {
    scratch.push(end);
    end += descBytes + STACK_BYTES;
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
  return { buffers, outputs, stackTops, scratch, pages };
}
