/**
 * What a ring is: its stages, in order, and the sizes each iteration uses.
 * Pure data and arithmetic; transports and the scheduler read a RingPlan.
 */
import { UsageError } from '../errors.js';
import type { Message } from '../message.js';
import type { Dtype, RingFields } from './fields.js';

export type StageKind = 'ts' | 'c' | 'exec' | 'python';

/**
 * Which build of a C stage runs: the compiled native code or the .wasm. Declared here, with
 * the other data types, so the public .d.ts files need no WebAssembly declarations.
 */
export type CBackend = 'native' | 'wasm';

/** A stage as a user describes it (a pipeline file's entry, or the same object from TS). */
export interface StageSpec {
  name: string;
  kind: StageKind;
  ranks: number;
  /** Output elements per rank: one float64 field. Give this or `fields`. */
  size?: number;
  /**
   * Output fields per rank, in order (docs/PIPELINES.md, "Fields"): name to dtype (NumPy's
   * names), per-rank shape (default [1]), and "to": "all" for a field every rank of the next
   * stage gets whole. Give this or `size`.
   */
  fields?: Record<string, FieldDecl>;
  /** ts: a module path, or "builtin:halfmean"; python: a .py file. */
  module?: string;
  /** ts: the transform's export name (default "transform", then the default export). */
  export?: string;
  /** c: a C source path, or "builtin:halfmean" / "builtin:halffirst". */
  source?: string;
  /** c: the kernel function's name in the source (default "kernel"); python: the function's (default "transform"). */
  function?: string;
  /** c: extra compiler flags for every build of the source, e.g. ["-DN=4", "-I../include"]. */
  cflags?: string[];
  /** c: extra linker arguments, after the objects (default none; -lm is always linked), e.g. ["-lgsl"]. */
  libs?: string[];
  /** exec: an MPI program speaking docs/PROTOCOL.md, and its arguments. */
  command?: string[];
  /** exec: the protocol version the program speaks (default 1; the C stage SDK speaks all three). */
  protocol?: 1 | 2 | 3;
  /**
   * exec: the program keeps and ships its step times (docs/PROTOCOL.md, "Step times"), as
   * every stage built with include/commloop_stage.h does; needs protocol 2 (default false).
   */
  times?: boolean;
  /**
   * exec: the program saves and loads its state at checkpoints (docs/PROTOCOL.md section 5),
   * as a program built with include/commloop_stage.h and state callbacks does; needs
   * protocol 2 (default false: the stage is stateless).
   */
  state?: boolean;
  /** exec, python: the stage's working directory (default: the pipeline file's directory). */
  cwd?: string;
  /** exec, python: variables added to every rank's environment. */
  env?: Record<string, string>;
  /** python: the interpreter (default: the first of python3 on PATH and /usr/bin/python3 with mpi4py and NumPy). */
  python?: string;
}

/** One output field of a stage, as a pipeline declares it. */
export interface FieldDecl {
  dtype: Dtype;
  shape?: number[];
  to?: 'all';
}

export interface PipelineSpec {
  stages: StageSpec[];
  /**
   * Every element of Array1 at the start (default 1), or a .npy / raw float64 file; in a
   * ring of fields, also per field of Array1 (the last stage's output) a number or a .npy
   * file of that field's dtype (fields not named start at 1).
   */
  initial?: number | string | Record<string, number | string>;
  /** Write the final array as .npy; with `every`, also every Nth iteration's (FILE.<iteration>.npy). */
  output?: { file: string; every?: number };
}

/** A stage as the transports run it: resolved paths and built artifacts, structured-cloneable. */
export interface RingStage {
  name: string;
  kind: StageKind;
  ranks: number;
  /** ts: "builtin:NAME" or an absolute module path, and the export to call. */
  module?: string;
  export?: string;
  /** c: the WASM kernel's export in the plan's module. */
  wasmExport?: string;
  /** c, native: a shared library (absent for built-ins) and the symbol or built-in name. */
  nativeLib?: string;
  nativeSymbol?: string;
  /** c, native over MPI: the worker executable and its one argument. */
  worker?: [string, string];
  /** exec: program and arguments; exec and python: the absolute working directory they run in. */
  command?: string[];
  /** The protocol version the hub speaks with this stage: 2 for the project's own stage processes (3 in a ring of fields). */
  protocol: 1 | 2 | 3;
  /** The stage keeps and ships its step times when asked (docs/PROTOCOL.md, "Step times"). */
  times: boolean;
  /** The stage saves and loads state at checkpoints (docs/PROTOCOL.md section 5): ts, python, and exec with "state". */
  state: boolean;
  /** The code as the pipeline names it (a module, source or program path): a checkpoint's identity. */
  origin?: string;
  cwd?: string;
  /** exec, python: variables added to every rank's environment. */
  env?: Record<string, string>;
  /** python: the runner script when not python/commloop_stage.py (MPICH: python/commloop_stage_c.py, through the C SDK). */
  runner?: string;
  /** python: the checked interpreter, and the function to call in `module` (an absolute .py path). */
  python?: string;
  function?: string;
}

export interface RingPlan {
  stages: RingStage[];
  /**
   * schedule[e][s]: output elements per rank of stage s in iterations i with i % schedule.length
   * === e. In a ring of fields, elements are 8-byte words of a rank's packed block, and there is
   * one group.
   */
  schedule: number[][];
  /** Array1 at iteration 0: a constant for every element, or the values (in a ring of fields always the values, packed). */
  initial: number | Message;
  /** Elements in Array1 at iteration 0: the last stage's output under schedule[0]. */
  initialLength: number;
  /** Largest input, in elements, that stage s ever receives; sizes its buffer. */
  maxInput: number[];
  /** The .wasm holding every C stage's kernel (one module, so their data never overlap in a shared memory). */
  wasmModule: string;
  output?: { file: string; every: number };
  /** A ring of fields: every stage's blocks and how they chain (src/pipeline/fields.ts); absent where every stage has a `size`. */
  fields?: RingFields;
}

/** One stage's shape within one iteration. */
export interface StageStep {
  stage: number;
  iteration: number;
  /** Input and output elements per rank. */
  nIn: number;
  nOut: number;
}

/** The original CommLoop ring (examples/demo.json): ts1 -> c -> ts2. */
export function demoPipeline(procs: number, n1 = 10, n2 = 1000, n3 = 1000000): PipelineSpec {
  return {
    stages: [
      { name: 'ts1', kind: 'ts', ranks: procs, size: n2, module: 'builtin:halfmean' },
      { name: 'c', kind: 'c', ranks: procs, size: n3, source: 'builtin:halffirst' },
      { name: 'ts2', kind: 'ts', ranks: procs, size: n1, module: 'builtin:halfmean' },
    ],
    initial: 1,
  };
}

/**
 * `--sizes a1,...,aS` names the per-rank sizes of Array1..ArrayS, as the original's
 * `n1,n2,n3` does; stage s outputs Array s+2, the last stage Array1 again.
 */
export function sizesToSchedule(sizes: number[][]): number[][] {
  return sizes.map((arrays) => arrays.map((_, s) => arrays[(s + 1) % arrays.length]));
}

export function makePlan(
  stages: RingStage[],
  schedule: number[][],
  initial: number | Message,
  wasmModule: string,
  output?: RingPlan['output'],
  fields?: RingFields,
): RingPlan {
  if (fields) return makeFieldsPlan(stages, initial, wasmModule, output, fields);
  const S = stages.length;
  const last = stages[S - 1];
  const total = (s: number, e: number) => stages[s].ranks * schedule[e][s];
  const initialLength = total(S - 1, 0);
  if (typeof initial !== 'number' && initial.length !== initialLength) {
    throw new UsageError(
      `pipeline: "initial" holds ${initial.length} elements; Array1 needs ${initialLength} (stage "${last.name}": ${last.ranks} ranks x ${schedule[0][S - 1]})`,
    );
  }
  const maxInput = stages.map(() => 0);
  const take = (s: number, elems: number, from: string) => {
    if (elems % stages[s].ranks !== 0) {
      throw new UsageError(
        `sizes do not chain: stage "${stages[s].name}" gets ${elems} elements from ${from}, ` +
          `not divisible by its ${stages[s].ranks} ranks`,
      );
    }
    maxInput[s] = Math.max(maxInput[s], elems);
  };
  take(0, initialLength, 'the initial array');
  schedule.forEach((_, e) => {
    const prev = (e + schedule.length - 1) % schedule.length;
    take(0, total(S - 1, prev), `stage "${last.name}"`);
    for (let s = 1; s < S; s++) take(s, total(s - 1, e), `stage "${stages[s - 1].name}"`);
  });
  return { stages, schedule, initial, initialLength, maxInput, wasmModule, output };
}

/** A ring of fields: sizes in words of the packed blocks; the chaining was checked by ringFields. */
function makeFieldsPlan(stages: RingStage[], initial: number | Message, wasmModule: string, output: RingPlan['output'], fields: RingFields): RingPlan {
  const S = stages.length;
  const initialLength = stages[S - 1].ranks * fields.out[S - 1].words;
  if (typeof initial === 'number' || initial.length !== initialLength) throw new Error(`a ring of fields starts from its packed Array1 of ${initialLength} words`);
  return {
    stages,
    schedule: [fields.out.map((b) => b.words)],
    initial,
    initialLength,
    maxInput: stages.map((st, s) => st.ranks * fields.in[s].words),
    wasmModule,
    output,
    fields,
  };
}

/**
 * The shapes of iteration i, given how many elements Array1 holds now. Inputs are
 * derived from what the previous stage produced, so a schedule may change sizes
 * between iterations.
 */
export function iterationSteps(plan: RingPlan, iteration: number, array1Length: number): StageStep[] {
  const outs = plan.schedule[iteration % plan.schedule.length];
  if (plan.fields) return plan.stages.map((_, s) => ({ stage: s, iteration, nIn: plan.fields!.in[s].words, nOut: outs[s] }));
  let elems = array1Length;
  return plan.stages.map((st, s) => {
    const step = { stage: s, iteration, nIn: elems / st.ranks, nOut: outs[s] };
    elems = st.ranks * outs[s];
    return step;
  });
}

/** Elements in Array1 after iteration i: what the last stage outputs under that iteration's sizes. */
export function array1LengthAfter(plan: RingPlan, iteration: number): number {
  const S = plan.stages.length;
  return plan.stages[S - 1].ranks * plan.schedule[iteration % plan.schedule.length][S - 1];
}
