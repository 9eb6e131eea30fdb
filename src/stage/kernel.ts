/**
 * The C kernel as WASM: one instance of the pipeline's module on a given memory. Its
 * static data must end below the arena (src/arena.ts), and each executor gets its own
 * shadow stack, because instances of one module on one memory would otherwise share one.
 */
import { ARENA_BASE } from '../arena.js';
import { kernelModule } from '../assets.js';

export type { CBackend } from '../pipeline/model.js';

export type KernelCall = (inPtr: number, nIn: number, outPtr: number, nOut: number, r: number, n: number, it: number) => void;

export function instantiateKernel(memory: WebAssembly.Memory, path?: string, stackTop?: number): Record<string, KernelCall> {
  const instance = new WebAssembly.Instance(kernelModule(path), { env: { memory } });
  const heapBase = (instance.exports.__heap_base as WebAssembly.Global).value as number;
  if (heapBase > ARENA_BASE) throw new Error(`WASM kernel data ends at ${heapBase}, past the arena start ${ARENA_BASE}`);
  const exports = instance.exports as unknown as Record<string, KernelCall> & { stackRestore?: (top: number) => void };
  if (stackTop !== undefined) exports.stackRestore?.(stackTop);
  return exports;
}
