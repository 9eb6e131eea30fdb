/**
 * Runs one executor's share of a stage on the shared arena. The hub thread and each
 * worker thread own one Executor; rank r of every stage belongs to executor
 * r % executors, so fewer threads than ranks still cover every rank.
 */
import { pathToFileURL } from 'node:url';
import { kernelModule, nativeKernels } from './assets.js';
import { StageError } from './errors.js';
import type { RingStage, StageStep } from './pipeline.js';
import { halfmean, type Transform } from './transforms.js';

export type CBackend = 'native' | 'wasm';

/** The WASM kernels' static data must end below this byte; the arena starts here. */
export const ARENA_BASE = 1 << 20;
/** Each executor's own WASM shadow stack (instances of one module would otherwise share one). */
export const STACK_BYTES = 64 * 1024;

export const TS_TRANSFORMS: Record<string, Transform> = { halfmean };

type KernelCall = (inPtr: number, nIn: number, outPtr: number, nOut: number, r: number, n: number, it: number) => void;

export interface ExecutorInit {
  index: number;
  executors: number;
  memory: WebAssembly.Memory;
  stages: RingStage[];
  /** The .wasm holding every C stage's kernel. */
  wasmModule: string;
  /** Byte offset of buffer s, the input of stage s; stage s writes buffer s+1 (mod S). */
  buffers: number[];
  /** Top of this executor's WASM stack region in the arena. */
  stackTop: number;
  cBackend: CBackend;
}

export function instantiateKernel(memory: WebAssembly.Memory, path?: string, stackTop?: number): Record<string, KernelCall> {
  const instance = new WebAssembly.Instance(kernelModule(path), { env: { memory } });
  const heapBase = (instance.exports.__heap_base as WebAssembly.Global).value as number;
  if (heapBase > ARENA_BASE) throw new Error(`WASM kernel data ends at ${heapBase}, past the arena start ${ARENA_BASE}`);
  const exports = instance.exports as unknown as Record<string, KernelCall> & { stackRestore?: (top: number) => void };
  if (stackTop !== undefined) exports.stackRestore?.(stackTop);
  return exports;
}

/** Loads a ts stage's transform: a built-in, or a module's named (or default) export. */
export async function loadTransform(module: string, exportName: string): Promise<Transform> {
  if (module.startsWith('builtin:')) return TS_TRANSFORMS[module.slice(8)];
  const fn = pickTransform((await import(pathToFileURL(module).href)) as Record<string, unknown>, exportName);
  if (!fn) throw new Error(`${module} has no function export "${exportName}"`);
  return fn;
}

/** The named export; for the default name "transform", the default export also serves. */
export function pickTransform(mod: Record<string, unknown>, exportName: string): Transform | undefined {
  const fn = mod[exportName] ?? (exportName === 'transform' ? mod.default : undefined);
  return typeof fn === 'function' ? (fn as Transform) : undefined;
}

type Runner = (step: StageStep, rank: number, inAt: number, outAt: number) => void;

export class Executor {
  private constructor(
    private readonly init: ExecutorInit,
    private readonly run: Runner[],
  ) {}

  static async create(init: ExecutorInit): Promise<Executor> {
    const f64 = new Float64Array(init.memory.buffer);
    const needsWasm = init.stages.some((s) => s.kind === 'c') && init.cBackend === 'wasm';
    const wasm = needsWasm ? instantiateKernel(init.memory, init.wasmModule, init.stackTop) : undefined;
    const run: Runner[] = [];
    for (const st of init.stages) {
      const nranks = st.ranks;
      if (st.kind === 'ts') {
        const fn = await loadTransform(st.module!, st.export!);
        run.push((step, rank, inAt, outAt) =>
          fn(f64.subarray(inAt, inAt + step.nIn), f64.subarray(outAt, outAt + step.nOut), {
            rank,
            nranks,
            iteration: step.iteration,
          }),
        );
      } else if (st.kind === 'c' && wasm) {
        const call = wasm[st.wasmExport!];
        run.push((step, rank, inAt, outAt) => call(inAt * 8, step.nIn, outAt * 8, step.nOut, rank, nranks, step.iteration));
      } else if (st.kind === 'c') {
        const addon = nativeKernels();
        const kernel = st.nativeLib ? addon.open(st.nativeLib, st.nativeSymbol!) : st.nativeSymbol!;
        run.push((step, rank, inAt, outAt) =>
          addon.run(kernel, f64.subarray(inAt, inAt + step.nIn), f64.subarray(outAt, outAt + step.nOut), rank, nranks, step.iteration),
        );
      } else {
        run.push(() => {
          throw new Error('exec stages run only over MPI');
        });
      }
    }
    return new Executor(init, run);
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
