/** What the scheduler needs from a transport: start the stages, run one stage step, stop. */
import type { Arena } from './arena.js';
import type { StageStep } from './pipeline/model.js';

export interface Transport {
  /** Starts every stage's ranks; resolves when all are ready. */
  start(): Promise<void>;
  /**
   * Scatters buffer `step.stage` of the arena to the stage's ranks and gathers their
   * output into the next buffer. Returns undefined when it finished synchronously,
   * so the hot loop pays for a promise only when it has to wait.
   */
  runStage(step: StageStep): Promise<void> | undefined;
  /** Stops every rank and releases the transport; safe to call more than once. */
  close(): Promise<void>;
}

export interface TransportContext {
  arena: Arena;
  /** Deadline for any single wait (a stage step, start-up, shutdown). */
  timeoutMs: number;
}
