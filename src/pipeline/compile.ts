/**
 * Builds a pipeline's C stages from their sources, cached by content hash: one .wasm
 * holding every C kernel of the pipeline, a shared library per stage for the threads
 * transport's native backend, and an MPI worker per stage for the MPI transport's.
 * The same flags as build.sh: -O3 -ffp-contract=off, never -ffast-math; -lm on every
 * link. A stage's own `cflags` go to the compile of its source, its `libs` to the link.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { kernelWasmPath, rootDir } from '../assets.js';
import { UsageError } from '../errors.js';

export interface CSource {
  stage: string;
  /** Absolute path of the user's C file. */
  source: string;
  /** The kernel function's name in it. */
  fn: string;
  /** The stage's "cflags" and "libs" (checked by checkBuildFlags). */
  cflags: string[];
  libs: string[];
  /** In a ring of fields: the kernel is a commloop_fields_fn (wasm/commloop_kernel.h), not a commloop_kernel_fn. */
  fields?: boolean;
}

/** The C kernels every build carries (wasm/commloop_kernel.c), by stage-facing name. */
export const C_BUILTINS = ['halfmean', 'halffirst'];
const BUILTIN_KERNELS = ['commloop_sum', ...C_BUILTINS.map((k) => `commloop_${k}`)];

const WASM_FLAGS = ['-O3', '-msimd128', '-matomics', '-mbulk-memory', '-ffp-contract=off'];
const NATIVE_FLAGS = ['-O3', '-ffp-contract=off'];
/** Linked into every build, so a kernel may call sqrt & co. whatever the backend (emcc takes it too). */
const DEFAULT_LIBS = ['-lm'];

/** Flags that would let the compiler change the bits, so that the builds of one stage disagree. */
const UNSAFE_FLAG = /^(-ffast-math|-Ofast|-funsafe-math-optimizations|-fassociative-math|-freciprocal-math|-ffp-contract=(?!off$).*)$/;

/** A c stage's "cflags" or "libs": an array of non-empty strings, none that changes floating-point results. */
export function checkBuildFlags(stage: string, field: 'cflags' | 'libs', value: unknown): string[] {
  if (!Array.isArray(value) || !value.every((a) => typeof a === 'string' && a !== '')) {
    throw new UsageError(`stage "${stage}": "${field}" must be an array of non-empty strings (got ${JSON.stringify(value)})`);
  }
  const unsafe = value.find((a) => UNSAFE_FLAG.test(a));
  if (unsafe) {
    throw new UsageError(`stage "${stage}": "${field}" must not contain ${unsafe} (every build of a stage must give the same bits; -ffp-contract=off is always on)`);
  }
  return value;
}

/** What a stage's build flags add to its cache key: the flags, and the directory relative paths in them mean. */
const flagsKey = (src: CSource) => (src.cflags.length || src.libs.length ? [JSON.stringify([src.cflags, src.libs, dirname(src.source)])] : []);

export function cacheDir(): string {
  return process.env.COMMLOOP_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'commloop');
}

function hash(parts: string[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p).update('\0');
  return h.digest('hex').slice(0, 24);
}

/** The export name a user kernel gets inside the pipeline's module. */
export function wasmExportOf(src: CSource, index: number): string {
  return `commloop_user_${index}_${src.fn}`;
}

/** The Debian package of each compiler this file runs. */
const PACKAGE_OF: Record<string, string> = { emcc: 'emscripten', gcc: 'gcc', 'mpicc.openmpi': 'openmpi-bin libopenmpi-dev', 'mpicc.mpich': 'mpich libmpich-dev' };

/**
 * Runs a compiler in `cwd` (the C source's directory: relative -I/-L paths in a stage's
 * flags mean that directory); on failure names the stage, the field and the first error.
 */
function compile(stage: string, what: string, cmd: string, args: string[], cwd?: string): void {
  try {
    execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', cwd });
  } catch (err) {
    const e = err as { stderr?: string; code?: string };
    if (e.code === 'ENOENT') {
      throw new UsageError(`stage "${stage}": ${what} needs ${cmd}, which is not installed (apt-get install -y ${PACKAGE_OF[cmd] ?? cmd})`);
    }
    const lines = (e.stderr ?? '').split('\n');
    // The linker says what is missing ("cannot find -lfoo") before collect2's summary error.
    const first = lines.find((l) => /error|cannot find|undefined reference/i.test(l)) ?? lines.find((l) => l.trim()) ?? 'compiler failed';
    throw new UsageError(`stage "${stage}": ${what} does not compile: ${first.trim()}`);
  }
}

/**
 * A header forced into the user's file: declares the renamed kernel with the project's
 * signature, so a kernel with the wrong signature fails to compile ("conflicting types").
 */
function signatureHeader(dir: string, name: string, fields = false): string {
  const file = join(dir, `${name}.h`);
  writeFileSync(file, `#include "${join(rootDir, 'wasm', 'commloop_kernel.h')}"\n${fields ? 'commloop_fields_fn' : 'commloop_kernel_fn'} ${name};\n`);
  return file;
}

/**
 * Builds into a fresh temp dir next to the cache entry, then renames: concurrent runs
 * never see half a file. The temp dir goes whether the build worked or not.
 */
function cached(key: string, file: string, build: (dir: string, out: string) => void): string {
  const dir = join(cacheDir(), key);
  const out = join(dir, file);
  if (existsSync(out)) return out;
  const tmp = `${dir}.tmp-${process.pid}`;
  mkdirSync(tmp, { recursive: true });
  try {
    build(tmp, join(tmp, file));
    mkdirSync(dir, { recursive: true });
    renameSync(join(tmp, file), out);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return out;
}

/** One .wasm with the built-in kernels and every user kernel of the pipeline. */
export function buildPipelineWasm(sources: CSource[]): string {
  if (sources.length === 0) return kernelWasmPath;
  const contents = sources.map((s) => readFileSync(s.source, 'utf8'));
  const kernelSrc = join(rootDir, 'wasm', 'commloop_kernel.c');
  const trapsSrc = join(rootDir, 'wasm', 'commloop_traps.c');
  const key = hash(['wasm', ...WASM_FLAGS, ...DEFAULT_LIBS, readFileSync(kernelSrc, 'utf8'), readFileSync(trapsSrc, 'utf8'), ...sources.flatMap((s, i) => [contents[i], s.fn, ...flagsKey(s), s.fields ? 'fields' : ''])]);
  return cached(key, 'pipeline.wasm', (dir, out) => {
    const objects = sources.map((src, i) => {
      const name = wasmExportOf(src, i);
      const obj = join(dir, `${name}.o`);
      compile(
        src.stage,
        `"source" ${src.source}`,
        'emcc',
        [...WASM_FLAGS, ...src.cflags, '-c', '-include', signatureHeader(dir, name, src.fields), `-D${src.fn}=${name}`, src.source, '-o', obj],
        dirname(src.source),
      );
      return obj;
    });
    const exports = [...BUILTIN_KERNELS, ...sources.map((s, i) => wasmExportOf(s, i))].map((n) => `_${n}`).join(',');
    compile(sources.map((s) => s.stage).join('", "'), '"source" (linking the pipeline\'s kernels)', 'emcc', [
      ...WASM_FLAGS,
      '--no-entry',
      '-sSTANDALONE_WASM',
      '-sIMPORTED_MEMORY',
      '-sALLOW_MEMORY_GROWTH',
      '-sTOTAL_STACK=65536',
      '-sINITIAL_MEMORY=1MB',
      '-sMAXIMUM_MEMORY=4GB',
      '-Wl,--shared-memory',
      '-Wl,--export=__heap_base',
      `-sEXPORTED_FUNCTIONS=${exports}`,
      kernelSrc,
      trapsSrc,
      ...objects,
      ...new Set(sources.flatMap((s) => s.libs)),
      ...DEFAULT_LIBS,
      '-o',
      out,
    ], dirname(sources[0].source));
  });
}

/** A shared library with the user's kernel as `commloop_user_kernel`, for the threads transport's native backend. */
export function buildNativeLib(src: CSource): string {
  const key = hash(['so', ...NATIVE_FLAGS, ...DEFAULT_LIBS, readFileSync(src.source, 'utf8'), src.fn, ...flagsKey(src), src.fields ? 'fields' : '']);
  return cached(key, 'kernel.so', (dir, out) => {
    compile(
      src.stage,
      `"source" ${src.source}`,
      'gcc',
      [
        ...NATIVE_FLAGS,
        ...src.cflags,
        '-shared',
        '-fPIC',
        '-include',
        signatureHeader(dir, 'commloop_user_kernel', src.fields),
        `-D${src.fn}=commloop_user_kernel`,
        src.source,
        '-o',
        out,
        ...src.libs,
        ...DEFAULT_LIBS,
      ],
      dirname(src.source),
    );
  });
}

/** transport/c_worker.c linked with the user's kernel: run as `worker user` (a fields kernel: `worker user-fields`). */
export function buildNativeWorker(src: CSource, mpicc = 'mpicc.openmpi'): string {
  const workerSrc = join(rootDir, 'transport', 'c_worker.c');
  const kernelSrc = join(rootDir, 'wasm', 'commloop_kernel.c');
  // The worker is the SDK header around the kernel: a changed header is a changed worker.
  const sdkHeader = join(rootDir, 'include', 'commloop_stage.h');
  const key = hash([
    'worker',
    mpicc,
    ...NATIVE_FLAGS,
    ...DEFAULT_LIBS,
    readFileSync(src.source, 'utf8'),
    src.fn,
    ...flagsKey(src),
    src.fields ? 'fields' : '',
    readFileSync(workerSrc, 'utf8'),
    readFileSync(kernelSrc, 'utf8'),
    readFileSync(sdkHeader, 'utf8'),
  ]);
  return cached(key, 'worker', (dir, out) => {
    const obj = join(dir, 'user.o');
    compile(src.stage, `"source" ${src.source}`, mpicc, [
      ...NATIVE_FLAGS,
      ...src.cflags,
      '-c',
      '-include',
      signatureHeader(dir, 'commloop_user_kernel', src.fields),
      `-D${src.fn}=commloop_user_kernel`,
      src.source,
      '-o',
      obj,
    ], dirname(src.source));
    compile(src.stage, `"source" ${src.source} (linking the MPI worker)`, mpicc, [
      ...NATIVE_FLAGS,
      src.fields ? '-DCOMMLOOP_USER_FIELDS_KERNEL=commloop_user_kernel' : '-DCOMMLOOP_USER_KERNEL=commloop_user_kernel',
      `-I${join(rootDir, 'include')}`,
      workerSrc,
      kernelSrc,
      obj,
      '-o',
      out,
      ...src.libs,
      ...DEFAULT_LIBS,
    ], dirname(src.source));
  });
}

/**
 * A TypeScript stage module (.ts/.mts) as plain ESM that Node 20 can import: bundled
 * by esbuild, so its own relative imports come along. Rebuilt on every run (a few
 * milliseconds); plain .js/.mjs modules are used as they are.
 */
export async function buildTsModule(stage: string, file: string): Promise<string> {
  if (!/\.(ts|mts|cts)$/.test(file)) return file;
  const out = join(cacheDir(), `ts-${hash([file])}`, 'module.mjs');
  let esbuild: typeof import('esbuild');
  try {
    esbuild = await import('esbuild');
  } catch {
    throw new UsageError(`stage "${stage}": "module" ${file} is TypeScript and needs esbuild (npm install esbuild)`);
  }
  try {
    await esbuild.build({ entryPoints: [file], bundle: true, format: 'esm', platform: 'node', target: 'node20', outfile: out, logLevel: 'silent' });
  } catch (err) {
    const first = (err as { errors?: { text: string }[] }).errors?.[0]?.text ?? (err as Error).message.split('\n')[0];
    throw new UsageError(`stage "${stage}": "module" ${file} does not compile: ${first}`);
  }
  return out;
}
