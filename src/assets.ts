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
/** The native C stage for MPI, built by build.sh with mpicc. */
export const nativeWorkerPath = join(distDir, 'commloop_c_worker');
/** The Python side of a `kind: "python"` stage (mpi4py + NumPy), shipped as source. */
export const pythonStagePath = join(rootDir, 'python', 'commloop_stage.py');
/** The python stage runner that speaks the protocol through the C SDK as a shared library (no mpi4py): MPICH's. */
export const pythonSdkStagePath = join(rootDir, 'python', 'commloop_stage_c.py');

const wasmModules = new Map<string, WebAssembly.Module>();

/** The compiled kernel module at `path` (the built-in one by default), compiled once per thread. */
export function kernelModule(path = kernelWasmPath): WebAssembly.Module {
  let m = wasmModules.get(path);
  if (!m) {
    if (!existsSync(path)) {
      throw new Error(`${path} is missing: run "bash build.sh" (needs emscripten: apt-get install -y emscripten)`);
    }
    m = new WebAssembly.Module(readFileSync(path));
    wasmModules.set(path, m);
  }
  return m;
}

const require = createRequire(import.meta.url);

/** Where build/Release/<name>.node is ($COMMLOOP_ADDON_DIR first when set); throws saying how to build it. */
export function addonPath(name: string): string {
  const dirs = [process.env.COMMLOOP_ADDON_DIR, join(rootDir, 'build', 'Release')].filter(Boolean) as string[];
  for (const dir of dirs) {
    const file = join(dir, `${name}.node`);
    if (existsSync(file)) return file;
  }
  throw new Error(`native addon ${name}.node not found in ${dirs.join(', ')}: ${howToBuild()}`);
}

/** Whether the native addon `name` is built (build/Release or COMMLOOP_ADDON_DIR). */
export function addonBuilt(name: string): boolean {
  try {
    addonPath(name);
    return true;
  } catch {
    return false;
  }
}

export function loadAddon<T>(name: string): T {
  return require(addonPath(name)) as T;
}

/** What the native builds need beyond `packages`: node-gyp's compiler, make and python. */
const BUILD_TOOLS = 'g++ make python3';

/**
 * How to get a missing native part: in a checkout build.sh builds it (and installs what
 * it needs); an installed package builds it on install, when the compilers are there.
 */
export function howToBuild(packages?: string): string {
  if (existsSync(join(rootDir, 'build.sh'))) return `run "bash build.sh"${packages ? ` (needs ${packages})` : ''}`;
  return `it is built on install when a compiler is present: apt-get install -y ${packages ? `${packages} ` : ''}${BUILD_TOOLS}, then npm rebuild commloop`;
}

export interface KernelAddon {
  /**
   * Runs a built-in kernel (by name) or an opened one (by handle) over one chunk; views may
   * be over shared memory. With `stage`, a fatal signal inside the kernel (SIGSEGV, SIGABRT
   * from abort(), ...) makes it throw `crashed (SIGNAME)` instead of ending the process, and
   * interrupt() can end a kernel that never returns.
   */
  run(fn: string | number, input: Float64Array, output: Float64Array, rank: number, nranks: number, iteration: number, stage?: string, run?: number): void;
  /** dlopens a shared library and finds the kernel symbol; returns a handle for run(). */
  open(lib: string, symbol: string): number;
  sum(x: Float64Array): number;
  /** Every thread of this process inside a run(..., stage, run) or runFields(..., stage, run) of this `run` jumps out of its kernel (that call throws); returns how many. */
  interrupt(run: number): number;
  /**
   * Checks a fields kernel's table once (issue 27) and returns a handle for runFields().
   * `kernel` is a handle from open() whose symbol is a `commloop_fields_fn`, or the built-in
   * `"fields_demo"`. Each side lists a rank's block in packed order (src/pipeline/fields.ts
   * `packedLayout`): `offset` must be exactly where packedLayout puts the field. Throws a
   * TypeError or RangeError naming the bad item (`table.in[1] ("b").offset must be 16, ...`).
   * Tables live as long as the process: prepare once per stage and thread, not per step.
   */
  prepareFields(kernel: string | number, table: { in: NativeField[]; out: NativeField[] }): number;
  /**
   * Runs a prepared fields kernel on one rank's blocks: its input block at byte `inByte` of
   * `arena`, its output block at `outByte` (multiples of 8; the blocks must not overlap and
   * every field must lie inside `arena`, else a RangeError). `stage` and `run` as for run().
   */
  runFields(handle: number, arena: Float64Array, inByte: number, outByte: number, rank: number, nranks: number, iteration: number, stage?: string, run?: number): void;
}

/** One field of a rank's packed block, as prepareFields() takes it. */
export interface NativeField {
  /** An identifier, as the pipeline names the field. */
  name: string;
  /** The dtype code: 1 float64, 2 float32, 3 int64, 4 int32, 5 int16, 6 int8, 7 uint64, 8 uint32, 9 uint16, 10 uint8, 11 complex128, 12 complex64. */
  dtype: number;
  /** Elements per rank (a complex element is one pair): the product of `shape`. */
  count: number;
  /** The per-rank shape, 1 to 4 positive axes. */
  shape: number[];
  /** The field's byte offset inside the rank's packed block. */
  offset: number;
}

let kernelAddon: KernelAddon | undefined;
export function nativeKernels(): KernelAddon {
  return (kernelAddon ??= loadAddon<KernelAddon>('commloop_kernel'));
}
