/**
 * Where the built parts live, and one ordered loader for each. Every bundle sits in
 * dist/, so paths are relative to this module's own URL.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const distDir = dirname(fileURLToPath(import.meta.url));
export const rootDir = dirname(distDir);

export const kernelWasmPath = join(distDir, 'commloop_kernel.wasm');

let wasmModule: WebAssembly.Module | undefined;

export function kernelModule(): WebAssembly.Module {
  if (!wasmModule) {
    if (!existsSync(kernelWasmPath)) {
      throw new Error(`${kernelWasmPath} is missing: run "bash build.sh" (needs emscripten: apt-get install -y emscripten)`);
    }
    wasmModule = new WebAssembly.Module(readFileSync(kernelWasmPath));
  }
  return wasmModule;
}

const require = createRequire(import.meta.url);

/** Loads build/Release/<name>.node, or from $COMMLOOP_ADDON_DIR first when set. */
export function loadAddon<T>(name: string): T {
  const dirs = [process.env.COMMLOOP_ADDON_DIR, join(rootDir, 'build', 'Release')].filter(Boolean) as string[];
  for (const dir of dirs) {
    const file = join(dir, `${name}.node`);
    if (existsSync(file)) return require(file) as T;
  }
  throw new Error(`native addon ${name}.node not found in ${dirs.join(', ')}: run "bash build.sh"`);
}

export interface KernelAddon {
  /** Runs the named native kernel over one chunk; views may be over shared memory. */
  run(fn: string, input: Float64Array, output: Float64Array, rank: number, nranks: number, iteration: number): void;
  sum(x: Float64Array): number;
}

let kernelAddon: KernelAddon | undefined;
export function nativeKernels(): KernelAddon {
  return (kernelAddon ??= loadAddon<KernelAddon>('commloop_kernel'));
}
