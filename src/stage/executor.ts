/**
 * What runs a stage's code, shared by every transport. An Executor runs one thread's
 * share of a stage on the shared arena: the hub thread and each worker thread own one;
 * rank r of every stage belongs to executor r % executors, so fewer threads than ranks
 * still cover every rank.
 */
import { nativeKernels } from '../assets.js';
import { RunError } from '../errors.js';
import type { RingStage, StageStep } from '../pipeline/model.js';
import { KernelTrap, instantiateKernel, nullGuard, type CBackend } from './kernel.js';
import { errorLine, loadStateHooks, loadTransform, mustBeSync, type StateHooks } from './ts-transform.js';
import { STATE_NONE, stateOfValue, valueOfState, type RankState } from '../checkpoint/state.js';
import { monoUs } from '../trace/clock.js';
import { REC, slotOf, type TimingSpec } from '../trace/log.js';
import { bytesOf, partIndex } from '../message.js';
import { dtypeCode, type RingFields } from '../pipeline/fields.js';
import { blockViews, fieldTable, wasmDescriptors } from './fields-views.js';

export interface ExecutorInit {
  index: number;
  executors: number;
  /** The arena's buffer, and its WebAssembly.Memory when C stages run as WebAssembly. */
  buffer: SharedArrayBuffer;
  memory?: WebAssembly.Memory;
  stages: RingStage[];
  /** The .wasm holding every C stage's kernel. */
  wasmModule: string;
  /** Byte offset of buffer s, the input of stage s. */
  buffers: number[];
  /** Byte offset of stage s's output (src/arena.ts: buffer s+1 mod S, or a buffer of its own in a one-stage ring). */
  outputs: number[];
  /** Top of this executor's WASM stack region in the arena. */
  stackTop: number;
  /** A ring of fields with WASM kernels: where this executor writes their descriptors (src/arena.ts). */
  scratch?: number;
  /** A ring of fields: every stage's blocks (src/pipeline/fields.ts); offsets below then count 8-byte words of them. */
  fields?: RingFields;
  cBackend: CBackend;
  /** The run's number in this process, for the kernel addon's interrupt (a positive integer). */
  run: number;
  /**
   * Step times (threads transport): every rank's ring, `spec.cap` records of REC doubles, in
   * one shared buffer; rank r of stage s owns ring number first[s] + r. This side writes when
   * each rank's compute starts and ends and when the thread's share is done; the hub adds
   * when the step was published (the rank's scatter-wait starts there).
   */
  times?: { spec: TimingSpec; rings: Float64Array; first: number[] };
}

type Runner = (step: StageStep, rank: number, inAt: number, outAt: number) => void;

/** One rank's state, as a thread reports it (save) or is handed it (load). */
export interface OwnedState {
  stage: number;
  rank: number;
  state: RankState;
}

export class Executor {
  /** "stage rank" of the user code running now: what this thread prints is labelled with it. */
  printing = '';

  private constructor(
    private readonly init: ExecutorInit,
    private readonly run: Runner[],
    private readonly hooks: StateHooks[],
  ) {}

  static async create(init: ExecutorInit): Promise<Executor> {
    const f64 = new Float64Array(init.buffer);
    const needsWasm = init.stages.some((s) => s.kind === 'c') && init.cBackend === 'wasm';
    const wasm = needsWasm ? instantiateKernel(init.memory!, init.wasmModule, init.stackTop) : undefined;
    const run: Runner[] = [];
    const hooks: StateHooks[] = [];
    const { fields } = init;
    let scratch = init.scratch ?? 0;
    for (const [s, st] of init.stages.entries()) {
      hooks.push(st.kind === 'ts' ? await loadStateHooks(st.module!) : {});
      const nranks = st.ranks;
      if (fields && st.kind === 'ts') {
        // Views made once per rank: a ring of fields keeps its offsets.
        const fn = await loadTransform(st.module!, st.export!);
        const input = fieldTable(fields.in[s]);
        const output = fieldTable(fields.out[s]);
        const views: ({ inAt: number; outAt: number; i: object; o: object } | undefined)[] = [];
        run.push((step, rank, inAt, outAt) => {
          let v = views[rank];
          if (v?.inAt !== inAt || v.outAt !== outAt) {
            v = views[rank] = { inAt, outAt, i: blockViews(init.buffer, bytesOf(inAt), fields.in[s]), o: blockViews(init.buffer, bytesOf(outAt), fields.out[s]) };
          }
          mustBeSync(fn(v.i as never, v.o as never, { rank, nranks, iteration: step.iteration, input, output } as never));
        });
      } else if (fields && st.kind === 'c' && wasm) {
        const call = wasm[st.wasmExport!] as unknown as (inDesc: number, nIn: number, outDesc: number, nOut: number, r: number, n: number, it: number) => void;
        const desc = wasmDescriptors(init.buffer, scratch, fields.in[s], fields.out[s]);
        scratch += Math.ceil(desc.bytes / 4) * 4;
        const nIn = fields.in[s].fields.length;
        const nOut = fields.out[s].fields.length;
        const dirty = nullGuard(init.memory!);
        run.push((step, rank, inAt, outAt) => {
          desc.point(bytesOf(inAt), bytesOf(outAt));
          call(desc.inDesc, nIn, desc.outDesc, nOut, rank, nranks, step.iteration);
          const wrote = dirty();
          if (wrote) throw new KernelTrap(wrote);
        });
      } else if (fields && st.kind === 'c') {
        const addon = nativeKernels();
        const kernel = addon.open(st.nativeLib!, st.nativeSymbol!);
        const table = (b: RingFields['in'][number]) => b.fields.map((f) => ({ name: f.name, dtype: dtypeCode(f.dtype), count: f.count, shape: f.shape, offset: f.offset }));
        const handle = addon.prepareFields(kernel, { in: table(fields.in[s]), out: table(fields.out[s]) });
        run.push((step, rank, inAt, outAt) => addon.runFields(handle, f64, bytesOf(inAt), bytesOf(outAt), rank, nranks, step.iteration, st.name, init.run));
      } else if (st.kind === 'ts') {
        const fn = await loadTransform(st.module!, st.export!);
        run.push((step, rank, inAt, outAt) =>
          mustBeSync(
            fn(f64.subarray(inAt, inAt + step.nIn), f64.subarray(outAt, outAt + step.nOut), {
              rank,
              nranks,
              iteration: step.iteration,
            }),
          ),
        );
      } else if (st.kind === 'c' && wasm) {
        const call = wasm[st.wasmExport!];
        const dirty = nullGuard(init.memory!);
        run.push((step, rank, inAt, outAt) => {
          call(bytesOf(inAt), step.nIn, bytesOf(outAt), step.nOut, rank, nranks, step.iteration);
          // One memory for every executor: a null write of a rank on another thread may be
          // seen here first; it is still this stage's (ranks of one step are of one stage).
          const wrote = dirty();
          if (wrote) throw new KernelTrap(wrote);
        });
      } else if (st.kind === 'c') {
        const addon = nativeKernels();
        const kernel = st.nativeLib ? addon.open(st.nativeLib, st.nativeSymbol!) : st.nativeSymbol!;
        run.push((step, rank, inAt, outAt) =>
          addon.run(kernel, f64.subarray(inAt, inAt + step.nIn), f64.subarray(outAt, outAt + step.nOut), rank, nranks, step.iteration, st.name, init.run),
        );
      } else {
        run.push(() => {
          throw new Error('exec stages run only over MPI');
        });
      }
    }
    return new Executor(init, run, hooks);
  }

  /** Ranks r of stage s that this executor runs. */
  private *mine(s: number): Generator<number> {
    for (let r = this.init.index; r < this.init.stages[s].ranks; r += this.init.executors) yield r;
  }

  /** Every state this executor's ranks keep, from their stage's save(ctx); stages without one give none. */
  saveStates(iteration: number): OwnedState[] {
    const out: OwnedState[] = [];
    this.init.stages.forEach((st, s) => {
      const save = this.hooks[s].save;
      if (!save) return;
      for (const r of this.mine(s)) {
        this.printing = `${st.name} ${r}`;
        try {
          out.push({ stage: s, rank: r, state: stateOfValue(save({ rank: r, nranks: st.ranks, iteration })) });
        } catch (err) {
          throw new RunError({ stage: st.name, rank: r, reason: 'user-code', detail: `save() failed: ${errorLine(err)}` });
        }
      }
    });
    return out;
  }

  /** Hands each of this executor's ranks its saved state (load(state, ctx)). */
  loadStates(iteration: number, states: OwnedState[]): void {
    for (const { stage: s, rank: r, state } of states) {
      if (state.format === STATE_NONE) continue;
      const st = this.init.stages[s];
      this.printing = `${st.name} ${r}`;
      try {
        const load = this.hooks[s].load;
        if (!load) throw new Error('the checkpoint holds a state for this rank, but the module exports no load(state, ctx)');
        load(valueOfState(state), { rank: r, nranks: st.ranks, iteration });
      } catch (err) {
        throw new RunError({ stage: st.name, rank: r, reason: 'user-code', detail: `load() failed: ${errorLine(err)}` });
      }
    }
  }

  /** Runs this executor's ranks of the step; `running(r)` hears of each rank before it runs. */
  runShare(step: StageStep, running?: (rank: number) => void): void {
    const { stages, buffers, outputs, index, executors } = this.init;
    const run = this.run[step.stage];
    const times = this.init.times;
    const slot = times ? slotOf(step.iteration, times.spec) : -1;
    const ringOf = (r: number) => (times!.first[step.stage] + r) * times!.spec.cap * REC + slot;
    // One clock read per rank and one more: a rank's compute starts where the one before it on
    // this thread ended (a clock read costs about a tenth of a small step here).
    let t = slot >= 0 ? monoUs() : 0;
    for (let r = index; r < stages[step.stage].ranks; r += executors) {
      this.printing = `${stages[step.stage].name} ${r}`;
      running?.(r);
      if (slot >= 0) times!.rings[ringOf(r) + 2] = t;
      try {
        run(step, r, partIndex(buffers[step.stage], step.nIn, r), partIndex(outputs[step.stage], step.nOut, r));
      } catch (err) {
        throw new RunError({ stage: stages[step.stage].name, rank: r, reason: 'user-code', detail: errorLine(err) });
      }
      if (slot >= 0) times!.rings[ringOf(r) + 3] = t = monoUs();
    }
    if (slot >= 0) {
      // The share is done and about to be counted: each rank's "gather" ends here.
      for (let r = index; r < stages[step.stage].ranks; r += executors) {
        times!.rings[ringOf(r)] = step.iteration;
        times!.rings[ringOf(r) + 4] = t;
      }
    }
  }
}
