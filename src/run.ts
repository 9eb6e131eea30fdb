/**
 * The hub's loop: prepare the plan, start the stages, then drive each iteration around
 * the ring and time it. Transport-agnostic; the transport moves buffers, this file
 * decides what moves when.
 */
import { availableParallelism } from 'node:os';
import { makeArena } from './arena.js';
import { writeNpy } from './pipeline/npy.js';
import { demoPipeline, iterationSteps, type CBackend, type PipelineSpec, type RingPlan } from './pipeline/model.js';
import { loadPipelineFile, preparePlan, validatePipeline } from './pipeline/load.js';
import { checksum } from './stage/transforms.js';
import type { Transport, TransportContext } from './transport.js';
import { MpiTransport } from './mpi/transport.js';
import { ThreadsTransport } from './threads/transport.js';

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
  /** mpi transport: how the stages start (default spawn; mpmd needs the master to run under its mpirun). */
  launch?: LaunchMode;
  /** mpi transport: MPI_Info keys for spawn, e.g. { host: 'a,b' } or { hostfile: 'hosts' }. */
  spawnInfo?: Record<string, string>;
  /** threads transport: threads that run ranks, the hub included (default: min(max ranks, cores)). */
  threads?: number;
  /** threads transport: polls before a thread sleeps (default 2000). */
  spins?: number;
  /** Deadline for any one wait, in ms (default 60000). */
  timeoutMs?: number;
  /** Relative paths of a pipeline object resolve against this (default: the working directory). */
  baseDir?: string;
  /** Stops the loop after the iteration in flight; the result counts completed iterations. */
  signal?: AbortSignal;
  /** Called after every iteration with a view of Array1 for the next one; return false to stop. */
  onIteration?: (iteration: number, array: Float64Array) => boolean | void;
}

export interface RunResult {
  stages: { name: string; kind: string; ranks: number }[];
  procs: number;
  sizes: number[][];
  iterations: number;
  transport: TransportName;
  cBackend: CBackend;
  launch: LaunchMode;
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
  /** A copy of the final array (the last stage's output). */
  final: Float64Array;
}

/** How often a fully synchronous loop lets the event loop run (signals, progress, exits). */
const YIELD_EVERY_MS = 20;

/** The original ring, as `node dist/master.js` runs it without --pipeline. */
export async function runRing(opts: RunOptions & { procs: number; sizes: number[][] }): Promise<RunResult> {
  return runPipeline(demoPipeline(opts.procs), opts);
}

/** Runs a pipeline: a spec object (paths relative to opts.baseDir) or a pipeline JSON file. */
export async function runPipeline(pipeline: PipelineSpec | string, opts: RunOptions): Promise<RunResult> {
  const spec = typeof pipeline === 'string' ? loadPipelineFile(pipeline) : validatePipeline(pipeline, opts.baseDir ?? process.cwd());
  const transport = opts.transport ?? 'mpi';
  const cBackend = opts.cBackend ?? (transport === 'threads' ? 'wasm' : 'native');
  const launch = opts.launch ?? 'spawn';
  const plan = await preparePlan(spec, { transport, cBackend, procs: opts.procs, sizes: opts.sizes });
  const maxRanks = Math.max(...plan.stages.map((s) => s.ranks));
  const threads = transport === 'threads' ? (opts.threads ?? Math.min(maxRanks, availableParallelism())) : 0;
  const ctx: TransportContext = { arena: makeArena(plan, threads), timeoutMs: opts.timeoutMs ?? 60_000 };
  const t: Transport =
    transport === 'mpi'
      ? new MpiTransport(plan, ctx, { cBackend, launch, spawnInfo: opts.spawnInfo ?? {} })
      : new ThreadsTransport(plan, ctx, { cBackend, executors: threads, spins: opts.spins ?? 2000 });
  const t0 = performance.now();
  try {
    await t.start();
    const startS = (performance.now() - t0) / 1000;
    const { times, length } = await loop(plan, t, ctx, opts);
    const a1 = ctx.arena.buffers[0] / 8;
    const final = ctx.arena.f64.slice(a1, a1 + length);
    await t.close();
    if (plan.output) writeNpy(plan.output.file, final);
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
      threads,
      checksum: checksum(final),
      startS,
      firstIterS: times[0] ?? 0,
      lastIterS: times[done - 1] ?? 0,
      meanIterS: done ? times.reduce((a, b) => a + b, 0) / done : 0,
      medianIterS: done ? (sorted[(done - 1) >> 1] + sorted[done >> 1]) / 2 : 0,
      minIterS: sorted[0] ?? 0,
      maxIterS: sorted[done - 1] ?? 0,
      totalS: (performance.now() - t0) / 1000,
      stopped: done < opts.iterations,
      final,
    };
  } finally {
    await t.close();
  }
}

async function loop(plan: RingPlan, transport: Transport, ctx: TransportContext, opts: RunOptions) {
  const { f64, buffers } = ctx.arena;
  const a1 = buffers[0] / 8;
  let length = plan.initialLength;
  if (typeof plan.initial === 'number') f64.fill(plan.initial, a1, a1 + length);
  else f64.set(plan.initial, a1);
  const times: number[] = [];
  const S = plan.stages.length;
  const every = plan.output?.every ?? 0;
  let yielded = performance.now();
  for (let i = 0; i < opts.iterations; i++) {
    if (opts.signal?.aborted) break;
    const t = performance.now();
    for (const step of iterationSteps(plan, i, length)) {
      const pending = transport.runStage(step);
      if (pending) await pending;
    }
    length = plan.stages[S - 1].ranks * plan.schedule[i % plan.schedule.length][S - 1];
    const now = performance.now();
    times.push((now - t) / 1000);
    if (every && (i + 1) % every === 0) writeNpy(plan.output!.file.replace(/(\.npy)?$/, `.${i + 1}.npy`), f64.subarray(a1, a1 + length));
    if (opts.onIteration?.(i, f64.subarray(a1, a1 + length)) === false) break;
    if (now - yielded > YIELD_EVERY_MS) {
      await new Promise((resolve) => setImmediate(resolve));
      yielded = performance.now();
    }
  }
  return { times, length };
}
