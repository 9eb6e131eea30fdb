/**
 * The library's entry: check the options, prepare the plan, pick the transport and where the
 * hub's loop (src/loop.ts) runs, and summarise what it did. An MPI run's hub runs in a
 * process of its own (src/mpi/supervise/supervisor.ts), so a failure or a second run never touches
 * the caller.
 */
import { availableParallelism } from 'node:os';
import { layout, makeArena, wasmAddressed } from './arena.js';
import { RunError, UsageError } from './errors.js';
import { checkWritable, writeOutput } from './pipeline/npy.js';
import { demoPipeline, iterationSteps, type CBackend, type PipelineSpec, type RingPlan } from './pipeline/model.js';
import { loadPipelineFile, preparePlan, validatePipeline } from './pipeline/load.js';
import type { Transport, TransportContext } from './transport.js';
import { MpiTransport } from './mpi/hub/transport.js';
import { superviseMpiRun } from './mpi/supervise/supervisor.js';
import { ThreadsTransport } from './threads/transport.js';
import { hostname } from 'node:os';
import { DEFAULT_TIMING, MAX_CAP, type TimingSpec } from './trace/log.js';
import { computeBreakdown, type Breakdown } from './trace/breakdown.js';
import { writeChromeTrace } from './trace/chrome.js';
import { hostHash, hostLabel } from './mpi/protocol.js';
import { version } from './version.js';
import { CheckpointSession, checkCheckpointOptions, type CheckpointOptions, type ResumeOption } from './checkpoint/session.js';
import { IterStats } from './trace/stats.js';
import { driveRing, type RingOutcome } from './loop.js';
import { WIRE_REQUESTS, type WireName, type WireRequest } from './mpi/wire.js';
import { LAUNCH_REQUESTS, chooseLaunch, placementOf, type LaunchMode, type LaunchRequest } from './mpi/launch/placement.js';
import { thisNode } from './mpi/launch/slurm.js';
import { chooseMpi, mpiImpl, type MpiImpl, type MpiName, type MpiRequest } from './mpi/impl/index.js';
import { addonBuilt } from './assets.js';
import { array1Form, bytesOf, checksumOf, outputBytes, publicArray1, wholeShape, type Array1, type Array1Form, type Message } from './message.js';

export type TransportName = 'mpi' | 'threads';
export type { LaunchMode, LaunchRequest } from './mpi/launch/placement.js';

export interface RunOptions {
  /** Overrides every stage's ranks (the demo ring needs it). */
  procs?: number;
  /** Overrides the sizes: per-rank sizes of Array1..ArrayS; iteration i uses sizes[i % sizes.length]. */
  sizes?: number[][];
  iterations: number;
  transport?: TransportName;
  /** Default: native with mpi, wasm with threads. */
  cBackend?: CBackend;
  /**
   * mpi transport: how the stages start: `auto` (default) spawn mode where every rank is on
   * this host, MPMD where the ranks span several hosts (--host, a hostfile, a Slurm allocation
   * of several nodes; src/mpi/launch/placement.ts says why); `spawn`: MPI_Comm_spawn per stage;
   * `mpmd`: one mpirun holds the hub and every stage.
   */
  launch?: LaunchRequest;
  /**
   * mpi transport: what the messages travel on (src/mpi/impl/openmpi-wire.ts): `auto` (default) the
   * fastest this run can have (spawn mode on one host: UCX shared memory where Open MPI can
   * select it, else TCP loopback; MPMD: ob1's shared memory), or `shm` / `tcp` by hand. An
   * OMPI_MCA_pml, OMPI_MCA_btl or OMPI_MCA_mtl in the environment always wins (wire `user`).
   */
  wire?: WireRequest;
  /** mpi transport: MPI_Info keys for spawn, e.g. { host: 'a,b' } or { hostfile: 'hosts' }; mpirun's options in MPMD. */
  spawnInfo?: Record<string, string>;
  /** threads transport: worker threads that run ranks (default: min(max ranks, cores)). */
  threads?: number;
  /** threads transport: polls before a thread sleeps (default SPINS). */
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
  onIteration?: (iteration: number, array: Array1) => boolean | void;
  /**
   * mpi transport: which MPI runs it (`auto`, the default: the one `mpiexec` on PATH belongs
   * to, else the first installed, Open MPI first; src/mpi/impl/index.ts). Each needs its
   * addon built (build.sh builds one for each MPI installed).
   */
  mpi?: MpiRequest;
  /** mpi transport: Open MPI's own messages also go to stderr (they always go to the run's log). */
  verbose?: boolean;
  /** Completed iterations so far, for a progress display: about once a second (after each iteration when onIteration is given). */
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
  /**
   * Take checkpoints into `dir` (docs/CHECKPOINTS.md): every `every` iterations, every
   * `intervalS` seconds, when `requests` gets a 'checkpoint' event, and when the run ends or
   * is stopped; the newest `keep` (default 2) are kept.
   */
  checkpoint?: CheckpointOptions;
  /**
   * Continue from the newest checkpoint in checkpoint.dir that verifies: `true` fails
   * (UsageError) when there is none, `'if-any'` then starts from iteration 0.
   * `iterations` stays the total, as in the first run.
   */
  resume?: ResumeOption;
  /** Lines worth a user's eye that are not failures (a damaged checkpoint passed over, nothing left to run, a start across hosts tried again). */
  onNote?: (line: string) => void;
}

export interface RunResult {
  /** The ring as it ran; `hosts[r]`: the host rank r ran on (its name where the run knows it, else `host #HASH`). */
  /**
   * Each stage: its ranks' hosts, the bytes of a rank's input and output in a step (the first
   * group of sizes; in a ring of fields its packed blocks, padding included), and in a ring of
   * fields its output fields (per-rank shapes).
   */
  stages: { name: string; kind: string; ranks: number; hosts: string[]; bytes: { in: number; out: number }; fields?: { name: string; dtype: string; shape: number[]; to?: 'all' }[] }[];
  procs: number;
  sizes: number[][];
  iterations: number;
  transport: TransportName;
  cBackend: CBackend;
  /** MPI runs: the MPI that ran it, and why that one (`--mpi mpich`, `auto: mpiexec on PATH is MPICH's (...)`). */
  mpi?: MpiName;
  mpiReason?: string;
  /** The launch mode the run used (threads: `spawn`, which means nothing there). */
  launch: LaunchMode;
  /** Why that mode: `--launch spawn`, `auto: every rank on this host`, `auto: ranks on 2 other hosts`, ... */
  launchReason: string;
  /** What the messages travelled on: `shm`, `tcp`, `user` (the environment's MCA settings), `memory` (threads). */
  wire: WireName;
  threads: number;
  checksum: number;
  startS: number;
  firstIterS: number;
  lastIterS: number;
  meanIterS: number;
  /** From a histogram: within 2^-11 (0.05%) of the exact order statistic (src/trace/stats.ts). */
  medianIterS: number;
  p95IterS: number;
  minIterS: number;
  maxIterS: number;
  totalS: number;
  stopped: boolean;
  /** The iteration this run started at: 0, or the checkpoint it resumed from. The times above are this run's. */
  resumedFrom: number;
  /**
   * With `checkpoint`: the folder, how many this run wrote, the newest on disk, and their
   * mean cost: `pauseS` the loop's (asking the stages, copying), `writeS` the writer's.
   */
  checkpoints?: { dir: string; written: number; last?: { path: string; iterations: number }; pauseS: number; writeS: number };
  /** With `breakdown` or `trace`: where each iteration's time went, per stage (src/trace/breakdown.ts). */
  breakdown?: Breakdown;
  /** With `trace`: the file written and its event count. */
  trace?: { file: string; events: number };
  /** A copy of the final array (the last stage's output); in a ring of fields, its fields by name. */
  final: Array1;
  /** A ring of fields: Array1's fields in order, each with its dtype, whole shape and checksum (its values summed left to right as doubles). */
  fields?: Record<string, { dtype: string; shape: number[]; checksum: number }>;
}

/**
 * Worker threads for the threads transport. The hub's thread runs no rank and waits for
 * each step: with a core of its own it spins and a step costs about a microsecond; without
 * one it must sleep, and waking it costs tens of microseconds per step when every core runs
 * a spinning worker (measured, 2 cores: 1.7 µs against 69 µs per iteration at 8 B). So
 * small steps leave the hub a core, and only steps big enough that computing in parallel
 * pays for the wake (a stage moving at least PARALLEL_ELEMS doubles) use every core.
 */
const PARALLEL_ELEMS = 1 << 16;
/**
 * Polls of the shared counter before a thread sleeps: some 300 µs here (an Atomics.load is
 * ~15 ns). 2000 (~30 µs) slept through every wait longer than that, so each step of a big
 * stage (50-100 µs) paid a wake-up on each side (2 threads on 2 cores, a float32 ring of
 * 1 MiB: 0.58-0.67x of its float64 one at 2000, 0.54-0.62x at 20000, the float64 ring
 * 383-398 µs against 300-413 µs an iteration; 8 B and the demo ring unchanged within noise).
 */
const SPINS = 20000;
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
  const request = opts.launch ?? 'auto';
  if (!LAUNCH_REQUESTS.includes(request)) throw new UsageError(`launch must be one of ${LAUNCH_REQUESTS.join(', ')} (got ${JSON.stringify(request)})`);
  // Which MPI (impl/index.ts): asked for, or the one mpiexec on PATH belongs to; a hub under the user's own mpirun is Open MPI's.
  const underMpirun = transport === 'mpi' && process.env.OMPI_COMM_WORLD_SIZE !== undefined;
  const mpi = transport === 'threads' ? undefined : underMpirun ? { impl: mpiImpl('openmpi'), why: 'under your mpirun' } : chooseMpi(opts.mpi ?? 'auto', process.env, (m) => addonBuilt(m.addon));
  // Where the ranks go, for a run that launches them.
  const where = transport === 'threads' || underMpirun ? undefined : placementOf(opts.spawnInfo ?? {});
  // A hub under the user's own mpirun spawns its stages, as it always did.
  const { launch, why: launchReason } =
    transport === 'threads' ? { launch: 'spawn' as const, why: 'threads: no launch' }
    : underMpirun ? { launch: 'spawn' as const, why: 'under your mpirun: MPI_Comm_spawn per stage' }
    : chooseLaunch(request, where!, mpi!.impl);
  // A hub that talks on named pipes (MPICH: impl/mpich.ts) must run on this host: its launcher
  // is given this host's slot first, which inside a Slurm allocation must be one of its nodes.
  if (mpi?.impl.mpmdChannel === 'fifo' && where?.remote && !where.listed.length && !thisNode(where.alloc)) {
    throw new UsageError(`--mpi ${mpi.impl.name}: this host (${hostname()}) is not a node of Slurm allocation ${where.alloc!.jobId} (${where.alloc!.nodes.join(',')}), and the hub, which talks to this process on named pipes, must run here: run commloop in the job script (sbatch), or use --mpi openmpi`);
  }
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const wire = opts.wire ?? 'auto';
  if (!WIRE_REQUESTS.includes(wire)) throw new UsageError(`wire must be one of ${WIRE_REQUESTS.join(', ')} (got ${JSON.stringify(wire)})`);
  const timing = timingSpec(opts);
  checkCheckpointOptions(opts.checkpoint, opts.resume);
  const plan = await preparePlan(spec, { transport, cBackend, procs: opts.procs, sizes: opts.sizes, mpi: mpi?.impl });
  if (plan.output) checkWritable(plan.output.file);
  if (opts.trace) checkWritable(opts.trace, 'trace');
  layout(plan, 0, wasmAddressed(plan, transport, cBackend)); // sizes that cannot fit fail here, as bad input, wherever the hub will run
  if (transport === 'mpi') MpiTransport.preflight(plan, cBackend, mpi!.impl);
  const note = opts.onNote ?? (() => {});
  const cps = CheckpointSession.open(plan, opts.checkpoint, opts.resume, { transport, launch, cBackend }, note);
  const from = cps?.resume;
  if (from && timing) {
    throw new UsageError(`breakdown and trace cannot be used on a resumed run (it resumes at iteration ${from.iterations}; its ranks' step times would not line up)`);
  }
  if (from && from.iterations >= opts.iterations) {
    note(`${from.path} is at iteration ${from.iterations}: nothing is left to run for ${opts.iterations} iterations`);
    await cps.close(false);
    if (plan.output) writeOutput(plan.output.file, outputBytes(array1Form(plan), from.array1));
    return resultOf(plan, opts, { transport, mpi, cBackend, launch, launchReason, threads: 0, wire: 'memory', resumedFrom: from.iterations, cps }, { startS: 0, totalS: 0, stats: new IterStats(), final: from.array1 });
  }
  try {
    return await runWith(plan, opts, { transport, mpi, cBackend, launch, launchReason, wire, timeoutMs, timing, cps });
  } catch (err) {
    await cps?.close(false);
    const last = cps?.lastIteration;
    if (err instanceof RunError && last !== undefined) err.resumeAt(last);
    throw err;
  }
}

interface Settled {
  transport: TransportName;
  /** The run's MPI and why (MPI runs). */
  mpi?: { impl: MpiImpl; why: string };
  cBackend: CBackend;
  launch: LaunchMode;
  launchReason: string;
  wire: WireRequest;
  timeoutMs: number;
  timing: TimingSpec | undefined;
  cps: CheckpointSession | undefined;
}

async function runWith(plan: RingPlan, opts: RunOptions, { transport, mpi, cBackend, launch, launchReason, wire, timeoutMs, timing, cps }: Settled): Promise<RunResult> {
  const from = cps?.resume;
  let outcome: RingOutcome;
  let threads = 0;
  const form = array1Form(plan);
  const ext = form ? '.npz' : '.npy';
  const writeEvery = (i: number, a: Message) => writeOutput(plan.output!.file.replace(form ? /(\.npz)?$/ : /(\.npy)?$/, `.${i + 1}${ext}`), outputBytes(form, a));
  // The caller sees Array1 as it is (one float64 array) or as its fields (a copy each time).
  const userOnIteration = opts.onIteration && (form ? (i: number, a: Message) => opts.onIteration!(i, publicArray1(form, a)) : opts.onIteration);
  if (transport === 'mpi' && process.env.OMPI_COMM_WORLD_SIZE === undefined) {
    // The usual case: the hub runs in a process of its own, supervised from here.
    outcome = await superviseMpiRun(plan, { iterations: opts.iterations, cBackend, mpi: mpi!.impl.name, launch, wire, spawnInfo: opts.spawnInfo ?? {}, timeoutMs, verbose: opts.verbose ?? false, timing, checkpoints: cps }, {
      signal: opts.signal,
      onIteration: userOnIteration,
      onOutput: writeEvery,
      onProgress: opts.onProgress,
      onNote: opts.onNote,
    });
  } else {
    // Threads, or a hub the user started under their own mpirun: the loop runs here.
    const maxRanks = Math.max(...plan.stages.map((s) => s.ranks));
    threads = transport === 'threads' ? (opts.threads ?? defaultThreads(plan, maxRanks)) : 0;
    const ctx: TransportContext = { arena: makeArena(plan, threads, wasmAddressed(plan, transport, cBackend)), timeoutMs, signal: opts.signal, timing };
    const t: Transport =
      transport === 'mpi'
        ? new MpiTransport(plan, ctx, { cBackend, launch: 'spawn', merged: false, spawnInfo: opts.spawnInfo ?? {}, state: cps !== undefined })
        : new ThreadsTransport(plan, ctx, { cBackend, executors: threads, spins: opts.spins ?? SPINS });
    const { onProgress } = opts;
    const onIteration = userOnIteration;
    outcome = await inProcess(driveRing(plan, t, ctx.arena, {
      iterations: opts.iterations,
      signal: opts.signal,
      onOutput: writeEvery,
      checkpoint: cps?.hooks(),
      resume: from,
      onIteration: onIteration
        ? (i, a) => {
            onProgress?.(i + 1);
            return onIteration(i, a);
          }
        : undefined,
      // Progress alone must not make the loop go in lockstep (onIteration does): once a second.
      onBeat: onProgress && !onIteration ? (i) => onProgress(i + 1) : undefined,
    }));
  }
  await cps?.close(true);
  if (plan.output) writeOutput(plan.output.file, outputBytes(form, outcome.final));
  let trace: RunResult['trace'];
  const { steps } = outcome;
  if (opts.trace && steps) {
    const here = new Map([[hostHash(), hostname()]]);
    const hostName = outcome.hostName ?? ((h: number) => hostLabel(h, here));
    const about = { commloop: version, transport, launch, cBackend, iterations: outcome.stats.count };
    const bytes = stageBytes(plan);
    trace = { file: opts.trace, ...writeChromeTrace(opts.trace, steps, { stages: plan.stages.map((st, s) => ({ name: st.name, kind: st.kind, bytes: bytes[s] })), hostName, about }) };
  }
  const wireName: WireName = transport === 'threads' ? 'memory' : (outcome.wire ?? 'user');
  return resultOf(plan, opts, { transport, mpi, cBackend, launch, launchReason, threads, wire: wireName, resumedFrom: from?.iterations ?? 0, cps, trace }, outcome);
}

/** The result: what ran, where, and the times of this run's iterations. */
function resultOf(
  plan: RingPlan,
  opts: RunOptions,
  how: { transport: TransportName; mpi?: { impl: MpiImpl; why: string }; cBackend: CBackend; launch: LaunchMode; launchReason: string; threads: number; wire: WireName; resumedFrom: number; cps?: CheckpointSession; trace?: RunResult['trace'] },
  outcome: Pick<RingOutcome, 'startS' | 'totalS' | 'stats' | 'final' | 'steps' | 'hosts'>,
): RunResult {
  const t = outcome.stats.summary();
  const form = array1Form(plan);
  const done = how.resumedFrom + t.count;
  const last = how.cps?.writer.last;
  return {
    stages: plan.stages.map(({ name, kind, ranks }, s) => ({
      name,
      kind,
      ranks,
      hosts: outcome.hosts?.[s] ?? new Array<string>(ranks).fill(hostname()),
      bytes: stageBytes(plan)[s],
      ...(plan.fields ? { fields: plan.fields.declared[s].map((f) => ({ name: f.name, dtype: f.dtype, shape: f.shape, ...(f.to === 'all' ? { to: 'all' as const } : {}) })) } : {}),
    })),
    procs: plan.stages[0].ranks,
    sizes: opts.sizes ?? [plan.stages.map((_, s) => plan.schedule[0][(s + plan.stages.length - 1) % plan.stages.length])],
    iterations: done,
    transport: how.transport,
    ...(how.mpi ? { mpi: how.mpi.impl.name, mpiReason: how.mpi.why } : {}),
    cBackend: how.cBackend,
    launch: how.launch,
    launchReason: how.launchReason,
    wire: how.wire,
    threads: how.threads,
    checksum: checksumOf(form, outcome.final),
    startS: outcome.startS,
    firstIterS: t.firstS,
    lastIterS: t.lastS,
    meanIterS: t.meanS,
    medianIterS: t.medianS,
    p95IterS: t.p95S,
    minIterS: t.minS,
    maxIterS: t.maxS,
    totalS: outcome.totalS,
    stopped: done < opts.iterations,
    resumedFrom: how.resumedFrom,
    ...(how.cps ? { checkpoints: { dir: how.cps.writer.dir, written: how.cps.writer.count, ...(last ? { last: { path: last.path, iterations: last.iterations } } : {}), ...how.cps.costs() } } : {}),
    ...(outcome.steps ? { breakdown: computeBreakdown(outcome.steps, plan.stages.map((st) => st.name)) } : {}),
    ...(how.trace ? { trace: how.trace } : {}),
    final: publicArray1(form, outcome.final),
    ...(form ? { fields: fieldSummary(form, outcome.final) } : {}),
  };
}

/** Bytes of a rank's input and output per stage in the first group of sizes (in a ring of fields, its packed blocks). */
function stageBytes(plan: RingPlan): { in: number; out: number }[] {
  return iterationSteps(plan, 0, plan.initialLength).map((st) => ({ in: bytesOf(st.nIn), out: bytesOf(st.nOut) }));
}

/** Each field of Array1: its dtype, whole shape and checksum. */
function fieldSummary(form: Array1Form, m: Message): NonNullable<RunResult['fields']> {
  const out: NonNullable<RunResult['fields']> = {};
  for (const f of form.block.fields) {
    out[f.name] = { dtype: f.dtype, shape: wholeShape(f, form.ranks), checksum: checksumOf({ block: { fields: [f], words: form.block.words }, ranks: form.ranks }, m) };
  }
  return out;
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
