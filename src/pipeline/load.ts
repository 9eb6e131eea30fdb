/**
 * From a user's pipeline (a JSON file or the same object from TS) to a RingPlan: one
 * place validates every field, with messages that name the stage and the field, and
 * everything is checked and built before any rank is started.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { delimiter, dirname, isAbsolute, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { UsageError } from '../errors.js';
import { TS_TRANSFORMS } from '../stage/transforms.js';
import { pickTransform } from '../stage/ts-transform.js';
import type { CBackend } from '../stage/kernel.js';
import { C_BUILTINS, checkBuildFlags, buildNativeLib, buildNativeWorker, buildPipelineWasm, buildTsModule, wasmExportOf, type CSource } from './compile.js';
import { distDir, pythonSdkStagePath } from '../assets.js';
import { openMpi } from '../mpi/impl/openmpi.js';
import type { MpiImpl } from '../mpi/impl/index.js';
import { readArray } from './npy.js';
import { checkPythonStage } from './python.js';
import { makePlan, sizesToSchedule, type FieldDecl, type PipelineSpec, type RingPlan, type RingStage, type StageSpec } from './model.js';
import { SIZE_FIELD, duplicateKey, parseFields, ringFields, type FieldSpec, type RingFields } from './fields.js';
import { initialFields } from './initial.js';

const TS_BUILTINS = Object.keys(TS_TRANSFORMS);
const KINDS = ['ts', 'c', 'exec', 'python'];
const FIELDS: Record<string, string[]> = {
  ts: ['name', 'kind', 'ranks', 'size', 'fields', 'module', 'export'],
  c: ['name', 'kind', 'ranks', 'size', 'fields', 'source', 'function', 'cflags', 'libs'],
  exec: ['name', 'kind', 'ranks', 'size', 'fields', 'command', 'cwd', 'env', 'protocol', 'times', 'state'],
  python: ['name', 'kind', 'ranks', 'size', 'fields', 'module', 'function', 'python', 'cwd', 'env'],
};
/** Kinds that run as a separate MPI program, so only over the MPI transport. */
const MPI_ONLY = ['exec', 'python'];

const isPositiveInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 2 ** 31 - 1;
const show = (v: unknown) => JSON.stringify(v) ?? String(v);

export function loadPipelineFile(file: string): PipelineSpec {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    throw new UsageError(`--pipeline file not found: ${file}`);
  }
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`--pipeline ${file} is not valid JSON: ${(err as Error).message}`);
  }
  // JSON.parse keeps the last of two equal keys: a field named twice would vanish silently.
  const dup = duplicateKey(text);
  if (dup) throw new UsageError(`--pipeline ${file}: ${dup} is given twice`);
  return validatePipeline(obj, dirname(resolve(file)));
}

function resolveFile(stage: string, field: string, p: string, baseDir: string): string {
  const abs = isAbsolute(p) ? p : resolve(baseDir, p);
  if (!existsSync(abs) || !statSync(abs).isFile()) throw new UsageError(`stage "${stage}": "${field}" file not found: ${abs}`);
  return abs;
}

/** A program name as a shell would find it: a path (relative to baseDir) or a PATH lookup. */
function resolveProgram(stage: string, p: string, baseDir: string, field = 'command', noun = 'program'): string {
  const candidates = p.includes('/') ? [isAbsolute(p) ? p : resolve(baseDir, p)] : (process.env.PATH ?? '').split(delimiter).map((d) => join(d, p));
  const found = candidates.find((c) => existsSync(c) && statSync(c).isFile());
  if (!found) throw new UsageError(`stage "${stage}": "${field}" ${noun} not found: ${p}`);
  return found;
}

/** An exec or python stage's "cwd" (default: the pipeline's directory), as an absolute directory. */
function stageCwd(stage: string, v: unknown, baseDir: string): string {
  if (v === undefined) return baseDir;
  if (typeof v !== 'string' || !v) throw new UsageError(`stage "${stage}": "cwd" must be a directory path (got ${show(v)})`);
  const cwd = resolve(baseDir, v);
  if (!existsSync(cwd) || !statSync(cwd).isDirectory()) throw new UsageError(`stage "${stage}": "cwd" directory not found: ${cwd}`);
  return cwd;
}

/** An exec or python stage's "env": variable names to string values. */
function stageEnv(stage: string, v: unknown): Record<string, string> | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new UsageError(`stage "${stage}": "env" must be an object of variable names to strings (got ${show(v)})`);
  }
  for (const [k, val] of Object.entries(v)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new UsageError(`stage "${stage}": "env" name ${show(k)} is not a variable name (letters, digits, _; not starting with a digit)`);
    if (typeof val !== 'string') throw new UsageError(`stage "${stage}": "env" value of ${k} must be a string (got ${show(val)})`);
  }
  return { ...(v as Record<string, string>) };
}

/** Checks every field and resolves paths against baseDir; returns a spec with absolute paths. */
export function validatePipeline(obj: unknown, baseDir: string): PipelineSpec {
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) throw new UsageError('pipeline: must be a JSON object with a "stages" array');
  const p = obj as Record<string, unknown>;
  for (const k of Object.keys(p)) {
    if (!['stages', 'initial', 'output'].includes(k)) throw new UsageError(`pipeline: unknown field "${k}" (fields: stages, initial, output)`);
  }
  if (!Array.isArray(p.stages) || p.stages.length === 0) throw new UsageError('pipeline: "stages" must be a non-empty array');
  const names = new Set<string>();
  const stages = p.stages.map((raw, i): StageSpec => {
    if (typeof raw !== 'object' || raw === null) throw new UsageError(`stage ${i}: must be an object`);
    const st = raw as Record<string, unknown>;
    if (typeof st.name !== 'string' || !/^[A-Za-z0-9_.-]+$/.test(st.name)) {
      throw new UsageError(`stage ${i}: "name" must be a non-empty string of letters, digits, _ . - (got ${show(st.name)})`);
    }
    const name = st.name;
    if (names.has(name)) throw new UsageError(`stage "${name}": "name" is used by an earlier stage`);
    names.add(name);
    if (typeof st.kind !== 'string' || !KINDS.includes(st.kind)) {
      throw new UsageError(`stage "${name}": "kind" must be one of ${KINDS.join(', ')} (got ${show(st.kind)})`);
    }
    const kind = st.kind as StageSpec['kind'];
    for (const k of Object.keys(st)) {
      if (!FIELDS[kind].includes(k)) throw new UsageError(`stage "${name}": unknown field "${k}" for kind ${kind} (fields: ${FIELDS[kind].join(', ')})`);
    }
    if (!isPositiveInt(st.ranks)) throw new UsageError(`stage "${name}": "ranks" must be a positive integer (got ${show(st.ranks)})`);
    if (st.size !== undefined && st.fields !== undefined) throw new UsageError(`stage "${name}": give "size" (one float64 field) or "fields", not both`);
    const out: StageSpec = { name, kind, ranks: st.ranks };
    if (st.fields !== undefined) {
      out.fields = Object.fromEntries(
        parseFields(name, st.fields).map((f): [string, FieldDecl] => [f.name, { dtype: f.dtype, shape: f.shape, ...(f.to === 'all' ? { to: 'all' as const } : {}) }]),
      );
    } else if (!isPositiveInt(st.size)) throw new UsageError(`stage "${name}": "size" must be a positive integer (got ${show(st.size)})`);
    else out.size = st.size;
    if (kind === 'ts') {
      if (typeof st.module !== 'string') throw new UsageError(`stage "${name}": "module" must be a module path or builtin:${TS_BUILTINS[0]}`);
      out.module = builtinOrFile(name, 'module', st.module, TS_BUILTINS, baseDir);
      if (st.export !== undefined) {
        if (typeof st.export !== 'string' || !st.export) throw new UsageError(`stage "${name}": "export" must be a non-empty string`);
        out.export = st.export;
      }
    } else if (kind === 'c') {
      if (typeof st.source !== 'string') throw new UsageError(`stage "${name}": "source" must be a C file path or builtin:halffirst`);
      out.source = builtinOrFile(name, 'source', st.source, C_BUILTINS, baseDir);
      if (st.function !== undefined) {
        if (typeof st.function !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(st.function)) {
          throw new UsageError(`stage "${name}": "function" must be a C identifier (got ${show(st.function)})`);
        }
        out.function = st.function;
      }
      for (const field of ['cflags', 'libs'] as const) {
        if (st[field] === undefined) continue;
        if (out.source.startsWith('builtin:')) throw new UsageError(`stage "${name}": "${field}" applies to a C source file, not to ${out.source}`);
        out[field] = checkBuildFlags(name, field, st[field]);
      }
    } else if (kind === 'python') {
      if (typeof st.module !== 'string') throw new UsageError(`stage "${name}": "module" must be a .py file path (got ${show(st.module)})`);
      out.module = resolveFile(name, 'module', st.module, baseDir);
      if (st.function !== undefined) {
        if (typeof st.function !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(st.function)) {
          throw new UsageError(`stage "${name}": "function" must be a Python identifier (got ${show(st.function)})`);
        }
        out.function = st.function;
      }
      out.cwd = stageCwd(name, st.cwd, baseDir);
      out.env = stageEnv(name, st.env);
      if (st.python !== undefined) {
        if (typeof st.python !== 'string' || !st.python) throw new UsageError(`stage "${name}": "python" must be an interpreter path or name (got ${show(st.python)})`);
        out.python = resolveProgram(name, st.python, out.cwd, 'python', 'interpreter');
      }
    } else {
      if (!Array.isArray(st.command) || st.command.length === 0 || !st.command.every((a) => typeof a === 'string')) {
        throw new UsageError(`stage "${name}": "command" must be a non-empty array of strings`);
      }
      // The stage runs in its cwd (default: the pipeline's directory), so a relative
      // script among the arguments means the same thing as a relative program.
      const cwd = stageCwd(name, st.cwd, baseDir);
      const [prog, ...args] = st.command as string[];
      out.command = [resolveProgram(name, prog, cwd), ...args];
      out.cwd = cwd;
      out.env = stageEnv(name, st.env);
      if (st.protocol !== undefined) {
        if (st.protocol !== 1 && st.protocol !== 2 && st.protocol !== 3) throw new UsageError(`stage "${name}": "protocol" must be 1, 2 or 3 (got ${show(st.protocol)})`);
        out.protocol = st.protocol;
      }
      if (st.times !== undefined) {
        if (typeof st.times !== 'boolean') throw new UsageError(`stage "${name}": "times" must be true or false (got ${show(st.times)})`);
        if (st.times && (out.protocol ?? 1) < 2) throw new UsageError(`stage "${name}": "times": true needs "protocol": 2 or 3 (got ${show(out.protocol ?? 1)})`);
        out.times = st.times;
      }
      if (st.state !== undefined) {
        if (typeof st.state !== 'boolean') throw new UsageError(`stage "${name}": "state" must be true or false (got ${show(st.state)})`);
        if (st.state && (out.protocol ?? 1) < 2) throw new UsageError(`stage "${name}": "state": true needs "protocol": 2 or 3 (got ${show(out.protocol ?? 1)})`);
        out.state = st.state;
      }
    }
    return out;
  });
  const spec: PipelineSpec = { stages };
  const fieldsRing = stages.some((st) => st.fields);
  if (p.initial !== undefined) {
    if (typeof p.initial === 'number' && Number.isFinite(p.initial)) spec.initial = p.initial;
    else if (fieldsRing && typeof p.initial === 'object' && p.initial !== null && !Array.isArray(p.initial)) {
      const per: Record<string, number | string> = {};
      for (const [k, v] of Object.entries(p.initial)) {
        if (typeof v === 'number' && Number.isFinite(v)) per[k] = v;
        else if (typeof v === 'string' && v) per[k] = isAbsolute(v) ? v : resolve(baseDir, v);
        else throw new UsageError(`pipeline: "initial" of field "${k}" must be a number or a .npy file path (got ${show(v)})`);
      }
      spec.initial = per;
    }
    else if (typeof p.initial === 'string') {
      const abs = isAbsolute(p.initial) ? p.initial : resolve(baseDir, p.initial);
      if (!existsSync(abs)) throw new UsageError(`pipeline: "initial" file not found: ${abs}`);
      spec.initial = abs;
    } else {
      const perField = fieldsRing ? ', or an object of field names to numbers or .npy files' : '';
      throw new UsageError(`pipeline: "initial" must be a number or a .npy / raw float64 file path${perField} (got ${show(p.initial)})`);
    }
  }
  if (p.output !== undefined) {
    const o = p.output as Record<string, unknown>;
    if (typeof o !== 'object' || o === null || typeof o.file !== 'string' || (o.every !== undefined && !isPositiveInt(o.every))) {
      throw new UsageError('pipeline: "output" must be {"file": PATH} with an optional "every": positive integer');
    }
    if (fieldsRing && !o.file.endsWith('.npz')) {
      throw new UsageError(`pipeline: "output" file of a ring of fields is a .npz (NumPy's archive of one .npy per field; got ${show(o.file)})`);
    }
    spec.output = { file: isAbsolute(o.file) ? o.file : resolve(baseDir, o.file), every: o.every as number | undefined };
  }
  return spec;
}

function builtinOrFile(stage: string, field: string, v: string, builtins: string[], baseDir: string): string {
  if (v.startsWith('builtin:')) {
    if (!builtins.includes(v.slice(8))) throw new UsageError(`stage "${stage}": "${field}" ${v} is not a built-in (built-ins: ${builtins.map((b) => `builtin:${b}`).join(', ')})`);
    return v;
  }
  return resolveFile(stage, field, v, baseDir);
}

export interface PrepareOptions {
  transport: 'mpi' | 'threads';
  cBackend: CBackend;
  /** Overrides every stage's ranks. */
  procs?: number;
  /** Overrides the sizes: per-rank sizes of Array1..ArrayS, one group per iteration in turn. */
  sizes?: number[][];
  /** mpi transport: the run's MPI (its C worker and its mpicc build the native C stages). */
  mpi?: Pick<MpiImpl, 'name' | 'title' | 'cWorker' | 'mpicc' | 'packages'>;
}

/** Applies overrides, checks the transport can run every stage, imports TS modules and builds C. */
export async function preparePlan(spec: PipelineSpec, opts: PrepareOptions): Promise<RingPlan> {
  const S = spec.stages.length;
  const ranks = spec.stages.map((s) => opts.procs ?? s.ranks);
  const fields = ringFieldsOf(spec, ranks);
  let schedule = [spec.stages.map((s) => s.size ?? 0)];
  if (opts.sizes && fields) throw new UsageError(`--sizes sets each stage's one float64 size; stages of this pipeline have "fields" (sizes and shapes are the pipeline's)`);
  if (opts.sizes) {
    const bad = opts.sizes.find((g) => g.length !== S);
    if (bad) throw new UsageError(`--sizes must give ${S} sizes per group for this ${S}-stage pipeline (got ${bad.length})`);
    schedule = sizesToSchedule(opts.sizes);
  }
  for (const st of spec.stages) {
    if (MPI_ONLY.includes(st.kind) && opts.transport !== 'mpi') {
      throw new UsageError(`stage "${st.name}": kind ${st.kind} runs only with --transport mpi (it is a separate MPI program)`);
    }
  }
  const userC: CSource[] = [];
  const stages: RingStage[] = [];
  for (const [s, st] of spec.stages.entries()) {
    const rs: RingStage = { name: st.name, kind: st.kind, ranks: ranks[s], protocol: fields ? 3 : 2, times: true, state: st.kind === 'ts' || st.kind === 'python', origin: st.module ?? st.source ?? st.command?.[0] };
    const builtin = st.module?.startsWith('builtin:') || st.source?.startsWith('builtin:');
    if (fields && builtin) throw new UsageError(`stage "${st.name}": ${st.module ?? st.source} takes one float64 array a rank; in a ring of fields give a ${st.kind === 'ts' ? 'module' : 'source'} of your own`);
    if (st.kind === 'ts') {
      rs.export = st.export ?? 'transform';
      rs.module = st.module!.startsWith('builtin:') ? st.module! : await buildTsModule(st.name, st.module!);
      if (!rs.module.startsWith('builtin:')) await checkTsModule(st.name, st.module!, rs.module, rs.export);
    } else if (st.kind === 'c') {
      const builtin = st.source!.startsWith('builtin:') ? st.source!.slice(8) : undefined;
      if (builtin) {
        rs.wasmExport = `commloop_${builtin}`;
        rs.nativeSymbol = builtin;
        rs.worker = [join(distDir, (opts.mpi ?? openMpi).cWorker), builtin];
      } else {
        const src: CSource = { stage: st.name, source: st.source!, fn: st.function ?? 'kernel', cflags: st.cflags ?? [], libs: st.libs ?? [], fields: fields !== undefined };
        rs.wasmExport = wasmExportOf(src, userC.length);
        userC.push(src);
        if (opts.cBackend === 'native' && opts.transport === 'threads') {
          rs.nativeLib = buildNativeLib(src);
          rs.nativeSymbol = 'commloop_user_kernel';
        }
        if (opts.cBackend === 'native' && opts.transport === 'mpi') rs.worker = [buildNativeWorker(src, (opts.mpi ?? openMpi).mpicc), fields ? 'user-fields' : 'user'];
      }
    } else if (st.kind === 'python') {
      // Under MPICH (no mpi4py for it here) the runner that speaks the protocol through the C SDK.
      if (opts.mpi?.name === 'mpich') rs.runner = pythonSdkStagePath;
      rs.module = st.module;
      rs.function = st.function ?? 'transform';
      rs.cwd = st.cwd;
      rs.env = st.env;
      rs.python = checkPythonStage({ stage: st.name, module: st.module!, function: rs.function, python: st.python, cwd: st.cwd!, env: st.env, runner: rs.runner, mpi: opts.mpi?.name });
    } else {
      rs.command = st.command;
      rs.cwd = st.cwd;
      rs.env = st.env;
      rs.protocol = st.protocol ?? 1; // written by others from docs/PROTOCOL.md, v1 unless it says
      if (fields && rs.protocol < 3) checkOneArray(st.name, rs.protocol, fields.in[s], fields.out[s]);
      if (!fields && rs.protocol === 3) throw new UsageError(`stage "${st.name}": "protocol": 3 carries fields, and no stage of this pipeline has "fields" (give 1 or 2)`);
      rs.times = st.times ?? false;
      rs.state = st.state ?? false;
    }
    stages.push(rs);
  }
  // Native runs never load user kernels from WASM, so they skip the emcc build.
  const wasmModule = buildPipelineWasm(opts.cBackend === 'wasm' ? userC : []);
  const initial = fields
    ? initialFields(spec.initial, fields.out[S - 1], ranks[S - 1], spec.stages[S - 1].name)
    : typeof spec.initial === 'string'
      ? readInitial(spec.initial)
      : typeof spec.initial === 'object'
        ? notFields()
        : (spec.initial ?? 1);
  const output = spec.output ? { file: spec.output.file, every: spec.output.every ?? 0 } : undefined;
  return makePlan(stages, schedule, initial, wasmModule, output, fields);
}

function notFields(): never {
  throw new UsageError('pipeline: "initial" per field needs a ring of fields (no stage here has "fields")');
}

/** A ring where some stage has "fields": every stage's output as fields (a `size` stage's is one float64 field), chained. */
function ringFieldsOf(spec: PipelineSpec, ranks: number[]): RingFields | undefined {
  if (!spec.stages.some((st) => st.fields)) return undefined;
  return ringFields(
    spec.stages.map((st, s) => ({
      name: st.name,
      ranks: ranks[s],
      fields: st.fields ? parseFields(st.name, st.fields) : [{ name: SIZE_FIELD, dtype: 'float64', shape: [st.size!], to: 'split' } satisfies FieldSpec],
    })),
  );
}

/** An exec stage of protocol 1 or 2 carries one float64 array a rank: only where its input and its output are each one float64 field. */
function checkOneArray(stage: string, protocol: number, input: RingFields['in'][number], output: RingFields['out'][number]): void {
  for (const [side, b] of [['input', input], ['output', output]] as const) {
    if (b.fields.length !== 1 || b.fields[0].dtype !== 'float64') {
      const list = b.fields.map((f) => `${f.name} (${f.dtype})`).join(', ');
      throw new UsageError(`stage "${stage}": speaks protocol ${protocol}, which carries one float64 array a rank, but its ${side} is fields ${list}: give it "protocol": 3 (include/commloop_stage.h speaks it)`);
    }
  }
}

function readInitial(file: string): Float64Array {
  try {
    return readArray(file);
  } catch (err) {
    throw new UsageError(`pipeline: "initial" ${(err as Error).message}`);
  }
}

async function checkTsModule(stage: string, file: string, built: string, exportName: string): Promise<void> {
  let mod: Record<string, unknown>;
  try {
    mod = await import(pathToFileURL(built).href);
  } catch (err) {
    throw new UsageError(`stage "${stage}": "module" ${file} fails to load: ${(err as Error).message.split('\n')[0]}`);
  }
  if (!pickTransform(mod, exportName)) {
    throw new UsageError(
      `stage "${stage}": "module" ${file} has no function export ${exportName === 'transform' ? '"transform" (nor a default export)' : `"${exportName}"`}`,
    );
  }
}
