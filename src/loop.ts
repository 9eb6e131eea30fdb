/**
 * The hub's loop: start the transport, drive each iteration around the ring, time it, take
 * checkpoints at its boundaries, stop it. Transport-agnostic (the transport moves buffers,
 * this file decides what moves when) and the same wherever the hub runs: in the caller's
 * process (threads, a hub under the user's mpirun; src/run.ts) or in a hub process of its
 * own (src/mpi/hub/hub.ts).
 */
import type { Arena } from './arena.js';
import type { RunStates } from './checkpoint/state.js';
import type { WireName } from './mpi/wire.js';
import { array1LengthAfter, iterationSteps, type RingPlan } from './pipeline/model.js';
import type { Transport } from './transport.js';
import type { StepTimes } from './trace/log.js';
import { IterStats } from './trace/stats.js';
import { messageView, regroup, type Message } from './message.js';

/** What driving the ring produced, before it is summarised (it crosses a pipe for MPI runs). */
export interface RingOutcome {
  startS: number;
  /** The times of the iterations this run ran. */
  stats: IterStats;
  final: Message;
  totalS: number;
  /** With ctx.timing: every step's times. */
  steps?: StepTimes;
  /** Names for the host hashes of the run's ranks (default: this host's). */
  hostName?: (hash: number) => string;
  /** Per stage, the host each rank ran on (default: this host, for every rank). */
  hosts?: string[][];
  /** MPI runs: the wire it used (default: `user` for a hub under the user's own mpirun). */
  wire?: WireName;
}

export interface DriveHooks {
  signal?: AbortSignal;
  /** After each iteration, with Array1 for the next one; false (or a promise of it) stops. */
  onIteration?: (iteration: number, array: Message) => boolean | void | Promise<boolean | void>;
  /** Every `every` iterations (plan.output.every), with the array to write. */
  onOutput?: (iteration: number, array: Message) => void;
  /** When every stage is ready, before the first iteration. */
  onStarted?: () => void;
  /** About once a second while iterating: a supervisor's sign of life. */
  onBeat?: (iteration: number) => void;
  /** Start from a checkpoint: at its iteration, with its Array1, its states loaded first. */
  resume?: { iterations: number; array1: Message; states: RunStates };
  checkpoint?: CheckpointHooks;
}

/** When the loop takes checkpoints, and where they go (a writer here, or the supervisor of a hub). */
export interface CheckpointHooks {
  /** Iterations between checkpoints (0: not by count). */
  every: number;
  /** Milliseconds between checkpoints (0: not by time). */
  intervalMs: number;
  /** A checkpoint is being written: one that falls due waits for the next boundary after it. */
  busy(): boolean;
  /** One was asked for from outside (SIGUSR1, the caller): true once per request. */
  requested(): boolean;
  /** A capture to write: copies, so the loop may go on at once; `pauseMs` is what taking it cost the loop. */
  take(iterations: number, array1: Message, states: RunStates, pauseMs: number): void;
  /** Resolves when nothing is being written. */
  idle(): Promise<void>;
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

/** Starts the transport, runs the iterations, stops it: the hub's whole job, wherever it runs. */
export async function driveRing(plan: RingPlan, transport: Transport, arena: Arena, hooks: DriveHooks & { iterations?: number }): Promise<RingOutcome> {
  const t0 = performance.now();
  try {
    await transport.start();
    const startS = (performance.now() - t0) / 1000;
    hooks.onStarted?.();
    const { stats, length } = await loop(plan, transport, arena, hooks);
    const final = messageView(arena.f64, arena.array1At, length).slice();
    await transport.close();
    return { startS, stats, final, totalS: (performance.now() - t0) / 1000, steps: transport.stepTimes?.() };
  } catch (err) {
    await transport.close(true);
    throw err;
  }
}

async function loop(plan: RingPlan, transport: Transport, arena: Arena, hooks: DriveHooks & { iterations?: number }) {
  const { f64, u8, buffers, outputs } = arena;
  const { resume, checkpoint: cp } = hooks;
  let length = resume ? resume.array1.length : plan.initialLength;
  /** Array1 as it is now: the next iteration's input (in a ring of fields, as the last stage wrote it). */
  const array1 = () => messageView(f64, arena.array1At, length);
  // A ring of fields: the copies that make a stage's input from the previous stage's output, where their blocks differ.
  const regroups = plan.fields?.regroup.map((copies, s) => (copies ? () => regroup(u8, outputs[s], buffers[(s + 1) % buffers.length], copies) : undefined));
  if (resume) array1().set(resume.array1);
  else if (typeof plan.initial === 'number') array1().fill(plan.initial);
  else array1().set(plan.initial);
  regroups?.[regroups.length - 1]?.();
  if (resume?.states.some((st) => st !== null)) await transport.loadStates(resume.iterations, resume.states);
  let lastCp = resume?.iterations ?? 0;
  let lastCpAt = performance.now();
  const capture = async (done: number) => {
    const t = performance.now();
    const states = await transport.saveStates(done);
    const array = array1().slice();
    lastCpAt = performance.now();
    cp!.take(done, array, states, lastCpAt - t);
    lastCp = done;
  };
  const stats = new IterStats();
  const every = plan.output?.every ?? 0;
  const iterations = hooks.iterations ?? Infinity;
  let yielded = performance.now();
  let beat = yielded;
  const epochs = transport.beginEpoch !== undefined;
  let epoch = 0;
  let epochLeft = 0;
  let lastS = 0;
  let lastEnd = lastCpAt;
  let done = lastCp;
  for (let i = done; i < iterations; i++) {
    if (epochLeft === 0) {
      // A checkpoint is taken between epochs, where every stage waits for a header.
      if (cp && i > lastCp && !cp.busy() && ((cp.every && i - lastCp >= cp.every) || (cp.intervalMs && lastEnd - lastCpAt >= cp.intervalMs) || cp.requested())) {
        await capture(i);
      }
      if (hooks.signal?.aborted) break;
      if (epochs) {
        // Lockstep with the caller: one iteration at a time; else as many as fit in EPOCH_MS,
        // ending where a checkpoint by count falls due.
        epoch = hooks.onIteration ? 1 : nextEpoch(epoch, lastS, iterations - i);
        if (cp?.every && lastCp + cp.every > i) epoch = Math.min(epoch, lastCp + cp.every - i);
        transport.beginEpoch!(i, epoch);
        epochLeft = epoch;
      }
    }
    if (epochs) epochLeft--;
    const t = performance.now();
    for (const step of iterationSteps(plan, i, length)) {
      const pending = transport.runStage(step);
      if (pending) await pending;
      regroups?.[step.stage]?.();
    }
    length = array1LengthAfter(plan, i);
    if (arena.copyBack) array1().set(messageView(f64, arena.copyBack.from, length));
    const now = performance.now();
    lastS = (now - t) / 1000;
    lastEnd = now;
    done = i + 1;
    stats.add(lastS);
    if (every && (i + 1) % every === 0) hooks.onOutput?.(i, array1());
    if (hooks.onIteration) {
      let go = hooks.onIteration(i, array1());
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
  // The run's end, a stop or the caller's false: the last checkpoint holds where it stopped.
  if (cp && done > lastCp) {
    await cp.idle();
    await capture(done);
  }
  return { stats, length };
}
