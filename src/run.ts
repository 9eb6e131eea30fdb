/**
 * The hub's loop: start the stages, then drive each iteration around the ring and
 * time it. Transport-agnostic; the transport moves buffers, this file decides what
 * moves when.
 */
import { availableParallelism } from 'node:os';
import { makeArena } from './arena.js';
import type { CBackend } from './executor.js';
import { demoSchedule, demoStages, iterationSteps, makePlan, type RingPlan } from './pipeline.js';
import { checksum } from './transforms.js';
import type { Transport, TransportContext } from './transport.js';
import { MpiTransport } from './transport-mpi.js';
import { ThreadsTransport } from './transport-threads.js';

export type TransportName = 'mpi' | 'threads';

export interface RunOptions {
  procs: number;
  /** One or more n1,n2,n3 triples; iteration i uses sizes[i % sizes.length]. */
  sizes: number[][];
  iterations: number;
  transport: TransportName;
  cBackend: CBackend;
  /** threads transport: threads that run ranks, the hub included (default: min(procs, cores)). */
  threads?: number;
  /** threads transport: polls before a thread sleeps (default 2000). */
  spins?: number;
  /** mpi transport: MPI_Info keys for spawn, e.g. { host: 'a,b' } or { hostfile: 'hosts' }. */
  spawnInfo?: Record<string, string>;
  /** Deadline for any one wait, in ms (default 60000). */
  timeoutMs?: number;
  /** Stops the loop after the iteration in flight; the result counts completed iterations. */
  signal?: AbortSignal;
  /** Called after every iteration with a view of Array4; return false to stop. */
  onIteration?: (iteration: number, array: Float64Array) => boolean | void;
}

export interface RunResult {
  procs: number;
  sizes: number[][];
  iterations: number;
  transport: TransportName;
  cBackend: CBackend;
  threads: number;
  checksum: number;
  startS: number;
  firstIterS: number;
  lastIterS: number;
  meanIterS: number;
  medianIterS: number;
  minIterS: number;
  totalS: number;
  stopped: boolean;
  /** A copy of the final Array4. */
  final: Float64Array;
}

/** How often a fully synchronous loop lets the event loop run (signals, progress, exits). */
const YIELD_EVERY_MS = 20;

export async function runRing(opts: RunOptions): Promise<RunResult> {
  const plan = makePlan(demoStages(opts.procs), demoSchedule(opts.sizes));
  const threads = opts.transport === 'threads' ? (opts.threads ?? Math.min(opts.procs, availableParallelism())) : 0;
  const ctx: TransportContext = { arena: makeArena(plan), timeoutMs: opts.timeoutMs ?? 60_000 };
  const transport: Transport =
    opts.transport === 'mpi'
      ? new MpiTransport(plan, ctx, { cBackend: opts.cBackend, spawnInfo: opts.spawnInfo ?? {} })
      : new ThreadsTransport(plan, ctx, { cBackend: opts.cBackend, executors: threads, spins: opts.spins ?? 2000 });
  const t0 = performance.now();
  try {
    await transport.start();
    const startS = (performance.now() - t0) / 1000;
    const { times, length } = await loop(plan, transport, ctx, opts);
    const final = ctx.arena.f64.slice(ctx.arena.buffers[0] / 8, ctx.arena.buffers[0] / 8 + length);
    await transport.close();
    const done = times.length;
    const sorted = Float64Array.from(times).sort();
    return {
      procs: opts.procs,
      sizes: opts.sizes,
      iterations: done,
      transport: opts.transport,
      cBackend: opts.cBackend,
      threads,
      checksum: checksum(final),
      startS,
      firstIterS: times[0] ?? 0,
      lastIterS: times[done - 1] ?? 0,
      meanIterS: done ? times.reduce((a, b) => a + b, 0) / done : 0,
      medianIterS: done ? (sorted[(done - 1) >> 1] + sorted[done >> 1]) / 2 : 0,
      minIterS: sorted[0] ?? 0,
      totalS: (performance.now() - t0) / 1000,
      stopped: done < opts.iterations,
      final,
    };
  } finally {
    await transport.close();
  }
}

async function loop(plan: RingPlan, transport: Transport, ctx: TransportContext, opts: RunOptions) {
  const { f64, buffers } = ctx.arena;
  const a1 = buffers[0] / 8;
  let length = plan.initialLength;
  f64.fill(plan.initialValue, a1, a1 + length);
  const times: number[] = [];
  let yielded = performance.now();
  for (let i = 0; i < opts.iterations; i++) {
    if (opts.signal?.aborted) break;
    const t = performance.now();
    for (const step of iterationSteps(plan, i, length)) {
      const pending = transport.runStage(step);
      if (pending) await pending;
    }
    const last = plan.stages[plan.stages.length - 1];
    length = last.ranks * plan.schedule[i % plan.schedule.length][plan.stages.length - 1];
    const now = performance.now();
    times.push((now - t) / 1000);
    if (opts.onIteration?.(i, f64.subarray(a1, a1 + length)) === false) break;
    if (now - yielded > YIELD_EVERY_MS) {
      await new Promise((resolve) => setImmediate(resolve));
      yielded = performance.now();
    }
  }
  return { times, length };
}
