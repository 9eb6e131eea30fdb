/**
 * A run's checkpoints, from the caller's side: the options checked, the checkpoint to
 * resume from found and verified, the writer, and the hooks the loop calls (in this
 * process for threads; through the hub's channel for MPI, where the supervisor writes).
 */
import { UsageError } from '../errors.js';
import { checkWritable } from '../pipeline/npy.js';
import type { RingPlan } from '../pipeline/model.js';
import type { CheckpointHooks } from '../loop.js';
import { identityDiff, identityOf, type Identity } from './identity.js';
import type { RunStates } from './state.js';
import { newestCheckpoint, type Checkpoint } from './store.js';
import { CheckpointWriter } from './writer.js';
import { join } from 'node:path';
import type { Message } from '../message.js';

export interface CheckpointOptions {
  /** The folder that holds the run's checkpoints (made if missing). */
  dir: string;
  /** Take one every N iterations. */
  every?: number;
  /** Take one every S seconds of wall-clock time. */
  intervalS?: number;
  /** Keep the newest N (default 2). */
  keep?: number;
  /** A 'checkpoint' event dispatched here asks for one at the next iteration boundary (the CLI's SIGUSR1). */
  requests?: EventTarget;
  /** Called once each checkpoint is on disk (synced and renamed into place). */
  onWritten?: (written: { path: string; iterations: number }) => void;
}

export type ResumeOption = boolean | 'if-any';

const show = (v: unknown) => JSON.stringify(v) ?? String(v);

/** Checks the options before anything starts: bad input is a UsageError naming the field. */
export function checkCheckpointOptions(cp: CheckpointOptions | undefined, resume: ResumeOption | undefined): void {
  if (resume !== undefined && resume !== true && resume !== false && resume !== 'if-any') {
    throw new UsageError(`resume must be true, false or 'if-any' (got ${show(resume)})`);
  }
  if (cp === undefined) {
    if (resume) throw new UsageError('resume needs checkpoint.dir: the folder to resume from');
    return;
  }
  if (typeof cp !== 'object' || cp === null) throw new UsageError(`checkpoint must be an object { dir, every?, intervalS?, keep? } (got ${show(cp)})`);
  if (typeof cp.dir !== 'string' || cp.dir === '') throw new UsageError(`checkpoint.dir must be a folder name (got ${show(cp.dir)})`);
  if (cp.every !== undefined && !(Number.isInteger(cp.every) && cp.every >= 1)) throw new UsageError(`checkpoint.every must be a positive integer (got ${show(cp.every)})`);
  if (cp.intervalS !== undefined && !(typeof cp.intervalS === 'number' && Number.isFinite(cp.intervalS) && cp.intervalS > 0)) {
    throw new UsageError(`checkpoint.intervalS must be a positive number of seconds (got ${show(cp.intervalS)})`);
  }
  if (cp.keep !== undefined && !(Number.isInteger(cp.keep) && cp.keep >= 1)) throw new UsageError(`checkpoint.keep must be a positive integer (got ${show(cp.keep)})`);
  if (cp.requests !== undefined && !(cp.requests instanceof EventTarget)) throw new UsageError('checkpoint.requests must be an EventTarget');
}

export class CheckpointSession {
  readonly writer: CheckpointWriter;
  /** The checkpoint this run starts from, and its folder. */
  readonly resume: (Checkpoint & { path: string }) | undefined;
  readonly every: number;
  readonly intervalMs: number;
  private asked = false;
  private readonly identity: Identity;
  /** Where a request goes besides this side's flag: a supervisor passes it to its hub. */
  forward: (() => void) | undefined;

  private constructor(
    plan: RingPlan,
    private readonly opts: CheckpointOptions,
    resume: (Checkpoint & { path: string }) | undefined,
    private readonly taken: Checkpoint['taken'],
  ) {
    this.identity = identityOf(plan);
    this.writer = new CheckpointWriter(opts.dir, opts.keep ?? 2, opts.onWritten);
    this.writer.start();
    this.resume = resume;
    this.every = opts.every ?? 0;
    this.intervalMs = (opts.intervalS ?? 0) * 1000;
    opts.requests?.addEventListener('checkpoint', this.heard);
  }

  private readonly heard = () => {
    this.asked = true;
    this.forward?.();
  };

  /**
   * The run's checkpoints, or undefined without `checkpoint`. Finds what to resume from
   * (notes for damaged ones go to `note`); UsageError when `resume: true` finds none or
   * the newest good one is of another run.
   */
  static open(plan: RingPlan, cp: CheckpointOptions | undefined, resume: ResumeOption | undefined, taken: Checkpoint['taken'], note: (line: string) => void): CheckpointSession | undefined {
    if (!cp) return undefined;
    checkWritable(join(cp.dir, 'checkpoint'), 'checkpoint');
    let from: (Checkpoint & { path: string }) | undefined;
    if (resume) {
      const found = newestCheckpoint(cp.dir);
      for (const n of found.notes) note(n);
      if (found.checkpoint) {
        const diff = identityDiff(found.checkpoint.identity, identityOf(plan));
        if (diff) throw new UsageError(`cannot resume from ${found.path}: it is a checkpoint of another run (${diff})`);
        from = { ...found.checkpoint, path: found.path! };
      } else if (resume === true) {
        throw new UsageError(`nothing to resume: no checkpoint in ${cp.dir}${found.notes.length ? ' that verifies' : ''}`);
      }
    }
    return new CheckpointSession(plan, cp, from, taken);
  }

  /** Where the run starts: the resumed checkpoint's iteration, else 0. */
  get resumedFrom(): number {
    return this.resume?.iterations ?? 0;
  }

  /** The newest checkpoint on disk from this run or the one it resumed: where a failed run can go on. */
  get lastIteration(): number | undefined {
    return this.writer.last?.iterations ?? this.resume?.iterations;
  }

  /** Asked for from outside, once. */
  requested(): boolean {
    const a = this.asked;
    this.asked = false;
    return a;
  }

  private pausesMs = 0;
  private captures = 0;

  /** Writes a capture (the writer must be free); `pauseMs`: what taking it cost the loop. */
  write(iterations: number, array1: Message, states: RunStates, pauseMs: number): void {
    this.pausesMs += pauseMs;
    this.captures++;
    this.writer.take({ iterations, array1, states, identity: this.identity, taken: this.taken });
  }

  /** The mean cost of a checkpoint so far, in seconds: the loop's pause, the writer's time. */
  costs(): { pauseS: number; writeS: number } {
    return { pauseS: this.captures ? this.pausesMs / this.captures / 1000 : 0, writeS: this.writer.count ? this.writer.writeMs / this.writer.count / 1000 : 0 };
  }

  /** The loop's hooks, for a loop in this process. */
  hooks(): CheckpointHooks {
    return {
      every: this.every,
      intervalMs: this.intervalMs,
      busy: () => this.writer.busy(),
      requested: () => this.requested(),
      take: (n, a, states, pauseMs) => this.write(n, a, states, pauseMs),
      idle: () => this.writer.idle(),
    };
  }

  /** After the run: the last write finished (its failure thrown when `rethrow`), the writer's thread ended. */
  async close(rethrow: boolean): Promise<void> {
    this.opts.requests?.removeEventListener('checkpoint', this.heard);
    try {
      await this.writer.idle();
    } catch (err) {
      if (rethrow) throw err;
    } finally {
      await this.writer.close();
    }
  }
}
