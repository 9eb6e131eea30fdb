/**
 * The C kernel as WASM: one instance of the pipeline's module on a given memory. Its
 * static data must end below the arena (src/arena.ts), and each executor gets its own
 * shadow stack, because instances of one module on one memory would otherwise share one.
 */
import { ARENA_BASE } from '../arena.js';
import { kernelModule } from '../assets.js';

export type { CBackend } from '../pipeline/model.js';

export type KernelCall = (inPtr: number, nIn: number, outPtr: number, nOut: number, r: number, n: number, it: number) => void;

/**
 * What a kernel's C may import beyond its memory, and what each does here. A kernel is a
 * pure function: abort(), exit() and the C library's I/O reach the WASI imports, which a
 * kernel has no business calling. Each is given a function that throws, so the call fails
 * its stage by name (the native build crashes or exits there) instead of the module
 * failing to instantiate with no stage named. Only memory growth's notice is harmless.
 */
function kernelImports(module: WebAssembly.Module, memory: WebAssembly.Memory): WebAssembly.Imports {
  const imports: Record<string, Record<string, WebAssembly.ImportValue>> = { env: { memory } };
  for (const imp of WebAssembly.Module.imports(module)) {
    if (imp.kind !== 'function') continue;
    const table = (imports[imp.module] ??= {});
    table[imp.name] =
      imp.module === 'commloop' && imp.name === 'abort'
        ? () => {
            throw new KernelTrap('called abort()'); // wasm/commloop_traps.c
          }
        : imp.name === 'emscripten_notify_memory_growth'
        ? () => {}
        : imp.name === 'proc_exit'
          ? (code: number) => {
              throw new KernelTrap(`called exit(${code})`);
            }
          : () => {
              throw new KernelTrap(`called ${imp.name} (${imp.module}), which a WASM kernel cannot: a kernel does no I/O`);
            };
  }
  return imports;
}

/** A kernel did what a pure kernel must not (abort, exit, I/O, a write through a null pointer). */
export class KernelTrap extends Error {
  override name = 'KernelTrap';
}

export function instantiateKernel(memory: WebAssembly.Memory, path?: string, stackTop?: number): Record<string, KernelCall> {
  const module = kernelModule(path);
  const instance = new WebAssembly.Instance(module, kernelImports(module, memory));
  const heapBase = (instance.exports.__heap_base as WebAssembly.Global).value as number;
  if (heapBase > ARENA_BASE) throw new Error(`WASM kernel data ends at ${heapBase}, past the arena start ${ARENA_BASE}`);
  const exports = instance.exports as unknown as Record<string, KernelCall> & { stackRestore?: (top: number) => void };
  if (stackTop !== undefined) exports.stackRestore?.(stackTop);
  return exports;
}

/**
 * WASM has no unmapped page 0: a kernel writing through a null pointer (or a small offset
 * from one) writes the first bytes of its memory, where the native build would crash.
 * Emscripten puts nothing below its global base (1024), so those bytes stay zero unless
 * such a write happened. The check reads them as 128 words (about 30 ns) after a kernel
 * call; it returns what the failure says, or undefined when the bytes are still zero.
 */
export const NULL_GUARD_BYTES = 1024;
export function nullGuard(memory: WebAssembly.Memory): () => string | undefined {
  // Views of a shared memory stay valid when it grows.
  const low = new BigInt64Array(memory.buffer, 0, NULL_GUARD_BYTES / 8);
  return () => {
    for (let i = 0; i < low.length; i++) {
      if (low[i] !== 0n) return `wrote through a null pointer (address ${8 * i} of its WASM memory, where the native build would crash)`;
    }
    return undefined;
  };
}
