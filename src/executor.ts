/**
 * Runs one executor's share of a stage on the shared arena. The hub thread and each
 * worker thread own one Executor; rank r of every stage belongs to executor
 * r % executors, so fewer threads than ranks still cover every rank.
 */
import { kernelModule, nativeKernels } from './assets.js';
import { StageError } from './errors.js';
import type { StageSpec, StageStep } from './pipeline.js';
import { halfmean, type Transform } from './transforms.js';

export type CBackend = 'native' | 'wasm';

/** The WASM kernel's static data must end below this byte; the arena starts here. */
export const ARENA_BASE = 1 << 20;

export const TS_TRANSFORMS: Record<string, Transform> = { halfmean };
export const C_KERNELS = ['halfmean', 'halffirst'];

type KernelCall = (inPtr: number, nIn: number, outPtr: number, nOut: number, r: number, n: number, it: number) => void;

export interface ExecutorInit {
  index: number;
  executors: number;
  memory: WebAssembly.Memory;
  stages: StageSpec[];
  /** Byte offset of buffer s, the input of stage s; stage s writes buffer s+1 (mod S). */
  buffers: number[];
  cBackend: CBackend;
}

export function instantiateKernel(memory: WebAssembly.Memory): Record<string, KernelCall> {
  const instance = new WebAssembly.Instance(kernelModule(), { env: { memory } });
  const heapBase = (instance.exports.__heap_base as WebAssembly.Global).value as number;
  if (heapBase > ARENA_BASE) throw new Error(`WASM kernel data ends at ${heapBase}, past the arena start ${ARENA_BASE}`);
  return instance.exports as unknown as Record<string, KernelCall>;
}

export class Executor {
  private readonly f64: Float64Array;
  private readonly run: ((step: StageStep, rank: number, inAt: number, outAt: number) => void)[];

  constructor(private readonly init: ExecutorInit) {
    this.f64 = new Float64Array(init.memory.buffer);
    const wasm = init.stages.some((s) => s.kind === 'c') && init.cBackend === 'wasm' ? instantiateKernel(init.memory) : undefined;
    this.run = init.stages.map((st) => {
      const nranks = st.ranks;
      if (st.kind === 'ts') {
        const fn = TS_TRANSFORMS[st.fn];
        return (step, rank, inAt, outAt) =>
          fn(this.f64.subarray(inAt, inAt + step.nIn), this.f64.subarray(outAt, outAt + step.nOut), {
            rank,
            nranks,
            iteration: step.iteration,
          });
      }
      if (wasm) {
        const call = wasm[`commloop_${st.fn}`];
        return (step, rank, inAt, outAt) => call(inAt * 8, step.nIn, outAt * 8, step.nOut, rank, nranks, step.iteration);
      }
      const addon = nativeKernels();
      return (step, rank, inAt, outAt) =>
        addon.run(
          st.fn,
          this.f64.subarray(inAt, inAt + step.nIn),
          this.f64.subarray(outAt, outAt + step.nOut),
          rank,
          nranks,
          step.iteration,
        );
    });
  }

  runShare(step: StageStep): void {
    const { stages, buffers, index, executors } = this.init;
    const inBase = buffers[step.stage] / 8;
    const outBase = buffers[(step.stage + 1) % stages.length] / 8;
    const run = this.run[step.stage];
    for (let r = index; r < stages[step.stage].ranks; r += executors) {
      try {
        run(step, r, inBase + r * step.nIn, outBase + r * step.nOut);
      } catch (err) {
        throw new StageError(stages[step.stage].name, r, (err as Error).message);
      }
    }
  }
}
