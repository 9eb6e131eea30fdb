/**
 * The hub's loop and the library's entry: prepare the plan, start the stages, drive each
 * iteration around the ring and time it. Transport-agnostic; the transport moves
 * buffers, this file decides what moves when. An MPI run's hub runs in a process of its
 * own (src/mpi/supervisor.ts), so a failure or a second run never touches the caller.
 */
import { availableParallelism } from 'node:os';
import { layout, makeArena, type Arena } from './arena.js';
import { RunError, UsageError } from './errors.js';
import { checkWritable, writeNpy } from './pipeline/npy.js';
import { array1LengthAfter, demoPipeline, iterationSteps, type CBackend, type PipelineSpec, type RingPlan } from './pipeline/model.js';
import { loadPipelineFile, preparePlan, validatePipeline } from './pipeline/load.js';
import { checksum } from './stage/transforms.js';
import type { Transport, TransportContext } from './transport.js';
import { MpiTransport } from './mpi/transport.js';
import { superviseMpiRun } from './mpi/supervisor.js';
import { ThreadsTransport } from './threads/transport.js';
import { hostname } from 'node:os';
import { DEFAULT_TIMING, MAX_CAP, type StepTimes, type TimingSpec } from './trace/log.js';
import { computeBreakdown, type Breakdown } from './trace/breakdown.js';
import { writeChromeTrace } from './trace/chrome.js';
import { hostHash, hostLabel } from './mpi/protocol.js';
import { version } from './version.js';
import { WIRE_REQUESTS, type WireName, type WireRequest } from './mpi/wire.js';

export type TransportName = 'mpi' | 'threads';
export type LaunchMode = 'spawn' | 'mpmd';

export interface RunOptions {
  /** Overrides every stage's ranks (the demo ring needs it). */
  procs?: number;
  /** Overrides the sizes: per-rank sizes of Array1..ArrayS; iteration i uses sizes[i % sizes.length]. */
  sizes?: number[][];
  iterations: number;
  transport?: TransportName;
  /** Default: native with mpi, wasm with threads. */
  cBackend?: CBackend;
  /** mpi transport: how the stages start (default spawn; mpmd: one mpirun holds the hub and every stage). */
  launch?: LaunchMode;
  /**
   * mpi transport: what the messages travel on (src/mpi/wire.ts): `auto` (default) the
   * fastest this run can have (spawn mode on one host: UCX shared memory where Open MPI can
   * select it, else TCP loopback; MPMD: ob1's shared memory), or `shm` / `tcp` by hand. An
   * OMPI_MCA_pml, OMPI_MCA_btl or OMPI_MCA_mtl in the environment always wins (wire `user`).
   */
  wire?: WireRequest;
  /** mpi transport: MPI_Info keys for spawn, e.g. { host: 'a,b' } or { hostfile: 'hosts' }; mpirun's options in MPMD. */
  spawnInfo?: Record<string, string>;
  /** threads transport: worker threads that run ranks (default: min(max ranks, cores)). */
  threads?: number;
  /** threads transport: polls before a thread sleeps (default 2000). */
  spins?: number;
  /** Deadline for any one wait, in ms (default 60000). */
  timeoutMs?: number;
  /** Relative paths of a pipeline object resolve against this (default: the working directory). */
  baseDir?: string;
  /** Stops the loop after the iteration in flight; the result counts completed iterations. */
  signal?: AbortSignal;
  /**
   * Called after every iteration with a view of Array1 for the next one; return false to
   * stop. Over MPI the hub waits for it every iteration (the array crosses a pipe): it
   * costs time per iteration that a run without it does not pay.
   */
  onIteration?: (iteration: number, array: Float64Array) => boolean | void;
  /** mpi transport: Open MPI's own messages also go to stderr (they always go to the run's log). */
  verbose?: boolean;
  /** Completed iterations so far, for a progress display: after each (threads), about once a second (mpi). */
  onProgress?: (iterations: number) => void;
  /**
   * Keep every rank's step times and give a per-stage breakdown in the result (scatter,
   * compute, gather, the hub's own time). Costs a few clock reads per step: nothing
   * measurable over MPI, about a tenth of a step on threads at the smallest sizes.
   */
  breakdown?: boolean;
  /** Also write the step times as a Chrome trace (Perfetto, chrome://tracing) to this file; implies breakdown. */
  trace?: string;
  /** Keep the times of every N-th iteration only (default 1). */
  traceEvery?: number;
  /** Keep at most the newest N iterations' times per rank (default 10000); older ones are dropped and counted. */
  traceCap?: number;
}

export interface RunResult {
  stages: { name: string; kind: string; ranks: number }[];
  procs: number;
  sizes: number[][];
  iterations: number;
  transport: TransportName;
  cBackend: CBackend;
  launch: LaunchMode;
  /** What the messages travelled on: `shm`, `tcp`, `user` (the environment's MCA settings), `memory` (threads). */
  wire: WireName;
  threads: number;
  checksum: number;
  startS: number;
  firstIterS: number;
  lastIterS: number;
  meanIterS: number;
  medianIterS: number;
  minIterS: number;
  maxIterS: number;
  totalS: number;
  stopped: boolean;
  /** With `breakdown` or `trace`: where each iteration's time went, per stage (src/trace/breakdown.ts). */
  breakdown?: Breakdown;
  /** With `trace`: the file written and its event count. */
  trace?: { file: string; events: number };
  /** A copy of the final array (the last stage's output). */
  final: Float64Array;
}

/** What driving the ring produced, before it is summarised (it crosses a pipe for MPI runs). */
export interface RingOutcome {
  startS: number;
  times: number[];
  final: Float64Array;
  totalS: number;
  /** With ctx.timing: every step's times. */
  steps?: StepTimes;
  /** Names for the host hashes of the run's ranks (default: this host's). */
  hostName?: (hash: number) => string;
  /** MPI runs: the wire it used (default: `user` for a hub under the user's own mpirun). */
  wire?: WireName;
}

export interface DriveHooks {
  signal?: AbortSignal;
  /** After each iteration, with Array1 for the next one; false (or a promise of it) stops. */
  onIteration?: (iteration: number, array: Float64Array) => boolean | void | Promise<boolean | void>;
  /** Every `every` iterations (plan.output.every), with the array to write. */
  onOutput?: (iteration: number, array: Float64Array) => void;
  /** When every stage is ready, before the first iteration. */
  onStarted?: () => void;
  /** About once a second while iterating: a supervisor's sign of life. */
  onBeat?: (iteration: number) => void;
}

/** How often a fully synchronous loop lets the event loop run (signals, progress, exits). */
const YIELD_EVERY_MS = 20;
/** An epoch (iterations promised to the stages at once) lasts about this long at most: a stop waits for it. */
const EPOCH_MS = 20;
const MAX_EPOCH = 1 << 16;

/** Doubles from 1, to as many iterations as the last one's time fits in EPOCH_MS, and no more than are left. */
function nextEpoch(previous: number, lastIterS: number, left: number): number {
  const fit = lastIterS > 0 ? Math.floor(EPOCH_MS / 1000 / lastIterS) : 1;
  return Math.max(1, Math.min(previous * 2 || 1, fit, MAX_EPOCH, left));
}
const BEAT_EVERY_MS = 1000;

/**
 * Worker threads for the threads transport. The hub's thread runs no rank and waits for
 * each step: with a core of its own it spins and a step costs about a microsecond; without
 * one it must sleep, and waking it costs tens of microseconds per step when every core runs
 * a spinning worker (measured, 2 cores: 1.7 µs against 69 µs per iteration at 8 B). So
 * small steps leave the hub a core, and only steps big enough that computing in parallel
 * pays for the wake (a stage moving at least PARALLEL_ELEMS doubles) use every core.
 */
const PARALLEL_ELEMS = 1 << 16;
function defaultThreads(plan: RingPlan, maxRanks: number): number {
  const cores = availableParallelism();
  const big = plan.maxInput.some((elems) => elems >= PARALLEL_ELEMS);
  return Math.max(1, Math.min(maxRanks, big ? cores : cores - 1));
}

/** The original ring, as `node dist/master.js` runs it without --pipeline. */
export async function runRing(opts: RunOptions & { procs: number; sizes: number[][] }): Promise<RunResult> {
  return runPipeline(demoPipeline(opts.procs), opts);
}

/** Runs a pipeline: a spec object (paths relative to opts.baseDir) or a pipeline JSON file. */
export async function runPipeline(pipeline: PipelineSpec | string, opts: RunOptions): Promise<RunResult> {
  if (!Number.isInteger(opts.iterations) || opts.iterations < 1) {
    throw new UsageError(`iterations must be a positive integer (got ${JSON.stringify(opts.iterations)})`);
  }
  const spec = typeof pipeline === 'string' ? loadPipelineFile(pipeline) : validatePipeline(pipeline, opts.baseDir ?? process.cwd());
  const transport = opts.transport ?? 'mpi';
  const cBackend = opts.cBackend ?? (transport === 'threads' ? 'wasm' : 'native');
  const launch = opts.launch ?? 'spawn';
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const wire = opts.wire ?? 'auto';
  if (!WIRE_REQUESTS.includes(wire)) throw new UsageError(`wire must be one of ${WIRE_REQUESTS.join(', ')} (got ${JSON.stringify(wire)})`);
  const timing = timingSpec(opts);
  const plan = await preparePlan(spec, { transport, cBackend, procs: opts.procs, sizes: opts.sizes });
  if (plan.output) checkWritable(plan.output.file);
  if (opts.trace) checkWritable(opts.trace, 'trace');
  layout(plan); // sizes that cannot fit fail here, as bad input, wherever the hub will run
  if (transport === 'mpi') MpiTransport.preflight(plan, cBackend);
  let outcome: RingOutcome;
  let threads = 0;
  const writeEvery = (i: number, a: Float64Array) => writeNpy(plan.output!.file.replace(/(\.npy)?$/, `.${i + 1}.npy`), a);
  if (transport === 'mpi' && process.env.OMPI_COMM_WORLD_SIZE === undefined) {
    // The usual case: the hub runs in a process of its own, supervised from here.
    outcome = await superviseMpiRun(plan, { iterations: opts.iterations, cBackend, launch, wire, spawnInfo: opts.spawnInfo ?? {}, timeoutMs, verbose: opts.verbose ?? false, timing }, {
      signal: opts.signal,
      onIteration: opts.onIteration,
      onOutput: writeEvery,
      onProgress: opts.onProgress,
    });
  } else {
    // Threads, or a hub the user started under their own mpirun: the loop runs here.
    const maxRanks = Math.max(...plan.stages.map((s) => s.ranks));
    threads = transport === 'threads' ? (opts.threads ?? defaultThreads(plan, maxRanks)) : 0;
    const ctx: TransportContext = { arena: makeArena(plan, threads), timeoutMs, signal: opts.signal, timing };
    const t: Transport =
      transport === 'mpi'
        ? new MpiTransport(plan, ctx, { cBackend, launch: 'spawn', merged: false, spawnInfo: opts.spawnInfo ?? {} })
        : new ThreadsTransport(plan, ctx, { cBackend, executors: threads, spins: opts.spins ?? 2000 });
    const { onIteration, onProgress } = opts;
    outcome = await inProcess(driveRing(plan, t, ctx.arena, {
      iterations: opts.iterations,
      signal: opts.signal,
      onOutput: writeEvery,
      onIteration:
        onIteration || onProgress
          ? (i, a) => {
              onProgress?.(i + 1);
              return onIteration?.(i, a);
            }
          : undefined,
    }));
  }
  if (plan.output) writeNpy(plan.output.file, outcome.final);
  const { times, final, steps } = outcome;
  let trace: RunResult['trace'];
  if (opts.trace && steps) {
    const here = new Map([[hostHash(), hostname()]]);
    const hostName = outcome.hostName ?? ((h: number) => hostLabel(h, here));
    const about = { commloop: version, transport, launch, cBackend, iterations: times.length };
    trace = { file: opts.trace, ...writeChromeTrace(opts.trace, steps, { stages: plan.stages, hostName, about }) };
  }
  const done = times.length;
  const sorted = Float64Array.from(times).sort();
  return {
    stages: plan.stages.map(({ name, kind, ranks }) => ({ name, kind, ranks })),
    procs: plan.stages[0].ranks,
    sizes: opts.sizes ?? [plan.stages.map((_, s) => plan.schedule[0][(s + plan.stages.length - 1) % plan.stages.length])],
    iterations: done,
    transport,
    cBackend,
    launch,
    wire: transport === 'threads' ? 'memory' : (outcome.wire ?? 'user'),
    threads,
    checksum: checksum(final),
    startS: outcome.startS,
    firstIterS: times[0] ?? 0,
    lastIterS: times[done - 1] ?? 0,
    meanIterS: done ? times.reduce((a, b) => a + b, 0) / done : 0,
    medianIterS: done ? (sorted[(done - 1) >> 1] + sorted[done >> 1]) / 2 : 0,
    minIterS: sorted[0] ?? 0,
    maxIterS: sorted[done - 1] ?? 0,
    totalS: outcome.totalS,
    stopped: done < opts.iterations,
    ...(steps ? { breakdown: computeBreakdown(steps, plan.stages.map((st) => st.name)) } : {}),
    ...(trace ? { trace } : {}),
    final,
  };
}

/** A run in this process: every rank runs on this host, so a failure of a stage's rank names it. */
async function inProcess<T>(run: Promise<T>): Promise<T> {
  try {
    return await run;
  } catch (err) {
    if (!(err instanceof RunError) || err.stage === undefined || err.host) throw err;
    throw new RunError({ stage: err.stage, rank: err.rank, host: hostname(), reason: err.reason, detail: err.detail });
  }
}

/** The step times a run keeps, if any: checked like every other option, before anything starts. */
function timingSpec(opts: RunOptions): TimingSpec | undefined {
  const { traceEvery, traceCap } = opts;
  if (traceEvery !== undefined && !(Number.isInteger(traceEvery) && traceEvery >= 1 && traceEvery <= 2 ** 31 - 1)) {
    throw new UsageError(`traceEvery must be a positive integer (got ${JSON.stringify(traceEvery)})`);
  }
  if (traceCap !== undefined && !(Number.isInteger(traceCap) && traceCap >= 1 && traceCap <= MAX_CAP)) {
    throw new UsageError(`traceCap must be an integer from 1 to ${MAX_CAP} (got ${JSON.stringify(traceCap)})`);
  }
  if (opts.trace !== undefined && (typeof opts.trace !== 'string' || opts.trace === '')) {
    throw new UsageError(`trace must be a file name (got ${JSON.stringify(opts.trace)})`);
  }
  if (!opts.breakdown && !opts.trace) return undefined;
  return { every: traceEvery ?? DEFAULT_TIMING.every, cap: traceCap ?? DEFAULT_TIMING.cap };
}

/** Starts the transport, runs the iterations, stops it: the hub's whole job, wherever it runs. */
export async function driveRing(plan: RingPlan, transport: Transport, arena: Arena, hooks: DriveHooks & { iterations?: number }): Promise<RingOutcome> {
  const t0 = performance.now();
  try {
    await transport.start();
    const startS = (performance.now() - t0) / 1000;
    hooks.onStarted?.();
    const { times, length } = await loop(plan, transport, arena, hooks);
    const a1 = arena.buffers[0] / 8;
    const final = arena.f64.slice(a1, a1 + length);
    await transport.close();
    return { startS, times, final, totalS: (performance.now() - t0) / 1000, steps: transport.stepTimes?.() };
  } catch (err) {
    await transport.close(true);
    throw err;
  }
}

async function loop(plan: RingPlan, transport: Transport, arena: Arena, hooks: DriveHooks & { iterations?: number }) {
  const { f64, buffers } = arena;
  const a1 = buffers[0] / 8;
  let length = plan.initialLength;
  if (typeof plan.initial === 'number') f64.fill(plan.initial, a1, a1 + length);
  else f64.set(plan.initial, a1);
  const times: number[] = [];
  const every = plan.output?.every ?? 0;
  const iterations = hooks.iterations ?? Infinity;
  let yielded = performance.now();
  let beat = yielded;
  const epochs = transport.beginEpoch !== undefined;
  let epoch = 0;
  let epochLeft = 0;
  let lastS = 0;
  for (let i = 0; i < iterations; i++) {
    if (epochLeft === 0) {
      if (hooks.signal?.aborted) break;
      if (epochs) {
        // Lockstep with the caller: one iteration at a time; else as many as fit in EPOCH_MS.
        epoch = hooks.onIteration ? 1 : nextEpoch(epoch, lastS, iterations - i);
        transport.beginEpoch!(i, epoch);
        epochLeft = epoch;
      }
    }
    if (epochs) epochLeft--;
    const t = performance.now();
    for (const step of iterationSteps(plan, i, length)) {
      const pending = transport.runStage(step);
      if (pending) await pending;
    }
    length = array1LengthAfter(plan, i);
    if (arena.copyBack) f64.copyWithin(a1, arena.copyBack.from / 8, arena.copyBack.from / 8 + length);
    const now = performance.now();
    lastS = (now - t) / 1000;
    times.push(lastS);
    if (every && (i + 1) % every === 0) hooks.onOutput?.(i, f64.subarray(a1, a1 + length));
    if (hooks.onIteration) {
      let go = hooks.onIteration(i, f64.subarray(a1, a1 + length));
      if (go instanceof Promise) go = await go;
      if (go === false) break;
    }
    if (now - yielded > YIELD_EVERY_MS) {
      await new Promise((resolve) => setImmediate(resolve));
      yielded = performance.now();
      if (hooks.onBeat && yielded - beat > BEAT_EVERY_MS) {
        beat = yielded;
        hooks.onBeat(i);
      }
    }
  }
  return { times, length };
}
