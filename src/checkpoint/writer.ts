/**
 * Writes checkpoints on a thread of its own, so the ring does not wait for the disk: the
 * loop hands over a capture (Array1 and the states, copied) and goes on. One write at a
 * time: while one is in flight the writer is busy, and a checkpoint that falls due then
 * waits for the next iteration boundary after it (docs/CHECKPOINTS.md, "When").
 */
import { Worker } from 'node:worker_threads';
import { join } from 'node:path';
import { distDir } from '../assets.js';
import type { Checkpoint } from './store.js';

export interface Written {
  path: string;
  iterations: number;
  bytes: number;
  ms: number;
}

type Reply = { ok: true; path: string; bytes: number; ms: number } | { ok: false; error: string };

export class CheckpointWriter {
  private worker: Worker | undefined;
  private inFlight: Promise<void> | undefined;
  private failure: Error | undefined;
  /** The newest checkpoint written, and how many this writer wrote. */
  last: Written | undefined;
  count = 0;
  /** The time every write took, together. */
  writeMs = 0;

  constructor(
    readonly dir: string,
    private readonly keep: number,
    /** Told of each checkpoint once it is on disk (the CLI's status lines name the last). */
    private readonly onWritten?: (w: Written) => void,
  ) {}

  /**
   * Starts the writer's thread now (it takes tens of milliseconds to boot), so that the
   * first checkpoint does not wait for it: called as the run starts its stages.
   */
  start(): void {
    (this.worker ??= new Worker(join(distDir, 'checkpoint-writer.js'))).unref();
  }

  busy(): boolean {
    this.check();
    return this.inFlight !== undefined;
  }

  /** Starts writing `cp`; the writer must not be busy. */
  take(cp: Checkpoint): void {
    this.check();
    if (this.inFlight) throw new Error('a checkpoint is already being written');
    this.start();
    const w = this.worker!;
    w.ref(); // a write in flight keeps the process up
    this.inFlight = new Promise<void>((resolve) => {
      const done = (r: Reply) => {
        w.off('error', lost);
        w.unref();
        this.inFlight = undefined;
        if (r.ok) {
          this.last = { path: r.path, iterations: cp.iterations, bytes: r.bytes, ms: r.ms };
          this.count++;
          this.writeMs += r.ms;
          this.onWritten?.(this.last);
        } else this.failure ??= new Error(`checkpoint ${join(this.dir, '')}: cannot be written (${r.error})`);
        resolve();
      };
      const lost = (err: Error) => done({ ok: false, error: err.message });
      w.once('message', done);
      w.once('error', lost);
    });
    // Copied, not transferred: the capture may be a view of the arena's shared memory.
    w.postMessage({ dir: this.dir, keep: this.keep, cp });
  }

  /** Waits for the write in flight; rejects if a write failed. */
  async idle(): Promise<void> {
    if (this.inFlight) await this.inFlight;
    this.check();
  }

  /** Ends the writer's thread (after idle(): a write in flight is lost). */
  async close(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    if (w) await w.terminate();
  }

  private check(): void {
    if (this.failure) throw this.failure;
  }
}
