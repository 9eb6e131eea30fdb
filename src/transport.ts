/** What the scheduler needs from a transport: start the stages, run one stage step, stop. */
import type { Arena } from './arena.js';
import type { StageStep } from './pipeline/model.js';
import type { StepTimes, TimingSpec } from './trace/log.js';
import type { RunStates } from './checkpoint/state.js';

export interface Transport {
  /** Starts every stage's ranks; resolves when all are ready. */
  start(): Promise<void>;
  /**
   * Scatters buffer `step.stage` of the arena to the stage's ranks and gathers their
   * output into the next buffer. Returns undefined when it finished synchronously,
   * so the hot loop pays for a promise only when it has to wait.
   */
  runStage(step: StageStep): Promise<void> | undefined;
  /**
   * Optional: the next `count` iterations from `first` will run without a stop in between
   * (MPI protocol v2 tells its stages once, not before every step). Transports without it
   * can stop after any iteration.
   */
  beginEpoch?(first: number, count: number): void;
  /**
   * At an iteration boundary (between epochs): every stage rank's state, for a checkpoint;
   * `iterations` is the next iteration to run. Stages that keep none give null.
   */
  saveStates(iterations: number): RunStates | Promise<RunStates>;
  /** Once, after start() and before the first iteration of a resumed run: hands the states back. */
  loadStates(iterations: number, states: RunStates): void | Promise<void>;
  /**
   * Stops every rank and releases the transport; safe to call more than once. After a
   * failure (`failed`) nothing is asked politely: a stage may be out of step or gone.
   */
  close(failed?: boolean): Promise<void>;
  /** After a clean close: the step times of the hub and of every rank (undefined without ctx.timing). */
  stepTimes?(): StepTimes | undefined;
}

export interface TransportContext {
  arena: Arena;
  /** Deadline for any single wait (a stage step, start-up, shutdown). */
  timeoutMs: number;
  /** The caller's stop: a step in flight gets STOP_GRACE_MS to finish, then the wait gives up. */
  signal?: AbortSignal;
  /** Keep per-step times (src/trace/log.ts): for a breakdown or a trace. */
  timing?: TimingSpec;
}

/** After a stop is asked for, how long the step in flight may still take. */
export const STOP_GRACE_MS = 2000;

/** What a run stopped mid-step rejects with. */
export const stoppedDetail = (iteration: number) => `stopped by signal; iteration ${iteration} did not finish within ${STOP_GRACE_MS} ms`;
