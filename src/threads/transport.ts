/**
 * The in-process transport: a pool of worker threads plus the hub thread itself,
 * all working on one shared arena. A dispatch is one stage step: the hub publishes
 * it in the control block, runs its own share, then waits for the others. No array
 * is copied; scatter and gather are offsets into the arena.
 */
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { distDir } from '../assets.js';
import { CMD, CMD_RUN, CMD_STOP, DONE, FAILED, GO, ITER, NIN, NOUT, STAGE, newControl, waitChange } from './control.js';
import { StageError } from '../errors.js';
import { Executor, type ExecutorInit } from '../stage/executor.js';
import type { CBackend } from '../stage/kernel.js';
import type { RingPlan, StageStep } from '../pipeline/model.js';
import type { Transport, TransportContext } from '../transport.js';

export interface ThreadsOptions {
  cBackend: CBackend;
  /** Threads that run ranks, the hub included. */
  executors: number;
  /** Atomics.load polls before sleeping in Atomics.wait. */
  spins: number;
}

/** How long the hub blocks its own event loop waiting for a stage before it waits asynchronously. */
const SYNC_WAIT_MS = 20;

export class ThreadsTransport implements Transport {
  private readonly ctrl = newControl();
  private readonly workers: Worker[] = [];
  private readonly exited: Promise<void>[] = [];
  private self!: Executor;
  private failure: Error | undefined;
  private current: StageStep | undefined;
  private closing = false;

  constructor(
    private readonly plan: RingPlan,
    private readonly ctx: TransportContext,
    private readonly opts: ThreadsOptions,
  ) {}

  private init(index: number): ExecutorInit {
    const { memory, buffers, stackTops } = this.ctx.arena;
    const { stages, wasmModule } = this.plan;
    return { index, executors: this.opts.executors, memory, stages, wasmModule, buffers, stackTop: stackTops[index], cBackend: this.opts.cBackend };
  }

  private ranksOf(index: number, stage: number): string {
    const ranks: number[] = [];
    for (let r = index; r < this.plan.stages[stage].ranks; r += this.opts.executors) ranks.push(r);
    return ranks.join(',');
  }

  async start(): Promise<void> {
    const ready: Promise<void>[] = [];
    for (let i = 1; i < this.opts.executors; i++) {
      const w = new Worker(join(distDir, 'thread-worker.js'), {
        workerData: { init: this.init(i), ctrl: this.ctrl, spins: this.opts.spins },
      });
      this.workers.push(w);
      ready.push(
        new Promise((resolve, reject) => {
          w.once('message', () => resolve());
          w.once('error', reject);
        }),
      );
      w.on('message', (m: { type: string; message?: string }) => {
        if (m.type === 'error') this.failure ??= new Error(m.message);
      });
      w.on('error', (err) => {
        this.failure ??= this.lost(i, err.message);
      });
      this.exited.push(
        new Promise((resolve) =>
          w.once('exit', (code) => {
            if (!this.closing) this.failure ??= this.lost(i, `exited with code ${code}`);
            resolve();
          }),
        ),
      );
    }
    this.self = await Executor.create(this.init(0));
    await withDeadline(Promise.all(ready), this.ctx.timeoutMs, 'worker threads did not start');
  }

  private lost(index: number, what: string): Error {
    const step = this.current;
    if (!step) return new Error(`worker thread ${index} ${what} between stages`);
    const st = this.plan.stages[step.stage];
    return new StageError(st.name, undefined, `worker thread ${index} (ranks ${this.ranksOf(index, step.stage)}) ${what}`);
  }

  runStage(step: StageStep): Promise<void> | undefined {
    const ctrl = this.ctrl;
    this.current = step;
    if (this.workers.length > 0) {
      Atomics.store(ctrl, DONE, 0);
      Atomics.store(ctrl, STAGE, step.stage);
      Atomics.store(ctrl, ITER, step.iteration);
      Atomics.store(ctrl, NIN, step.nIn);
      Atomics.store(ctrl, NOUT, step.nOut);
      Atomics.store(ctrl, CMD, CMD_RUN);
      Atomics.add(ctrl, GO, 1);
      Atomics.notify(ctrl, GO);
    }
    this.self.runShare(step);
    return this.awaitOthers();
  }

  private awaitOthers(): Promise<void> | undefined {
    const need = this.workers.length;
    if (need === 0) return undefined;
    const ctrl = this.ctrl;
    const until = performance.now() + SYNC_WAIT_MS;
    let done = Atomics.load(ctrl, DONE);
    while (done !== need && performance.now() < until) {
      done = waitChange(ctrl, DONE, done, this.opts.spins, SYNC_WAIT_MS);
    }
    if (done === need) return this.checkFailed();
    return this.awaitOthersAsync();
  }

  /** The slow path: lets the event loop run so a worker's exit or error can be seen. */
  private async awaitOthersAsync(): Promise<void> {
    const need = this.workers.length;
    const deadline = performance.now() + this.ctx.timeoutMs;
    for (;;) {
      const done = Atomics.load(this.ctrl, DONE);
      if (done === need) return this.checkFailed();
      if (this.failure) throw this.failure;
      if (performance.now() > deadline) {
        const st = this.plan.stages[this.current!.stage];
        throw new StageError(st.name, undefined, `no result within ${this.ctx.timeoutMs} ms`);
      }
      const r = Atomics.waitAsync(this.ctrl, DONE, done, 50);
      if (r.async) await r.value;
      else await new Promise((resolve) => setImmediate(resolve));
    }
  }

  private checkFailed(): Promise<void> | undefined {
    if (Atomics.load(this.ctrl, FAILED) === 0) return undefined;
    // The worker posted its error before it counted itself done; give the message a turn to arrive.
    return (async () => {
      for (let i = 0; i < 100 && !this.failure; i++) await new Promise((resolve) => setTimeout(resolve, 10));
      throw this.failure ?? new Error('a worker thread failed without a message');
    })();
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    Atomics.store(this.ctrl, CMD, CMD_STOP);
    Atomics.add(this.ctrl, GO, 1);
    Atomics.notify(this.ctrl, GO);
    const stopped = await Promise.race([
      Promise.all(this.exited).then(() => true),
      new Promise<boolean>((resolve) => setTimeout(resolve, 2000, false).unref()),
    ]);
    // A worker stuck in a user transform never reads the stop; terminate interrupts it.
    if (!stopped) await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

export async function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, expired]);
  } finally {
    clearTimeout(timer);
  }
}
