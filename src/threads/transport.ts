/**
 * The in-process transport: a pool of worker threads working on one shared arena. A
 * dispatch is one stage step: the hub publishes it in the control block and waits for
 * every thread's share. No array is copied; scatter and gather are offsets into the
 * arena. No user code runs on the hub's thread (the caller's), so its deadline, a
 * Ctrl-C or the caller's abort always gets a turn, whatever a rank does.
 */
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import { distDir, nativeKernels } from '../assets.js';
import { CMD, CMD_LOAD, CMD_RUN, CMD_SAVE, CMD_STOP, DONE, FAILED, GO, ITER, NIN, NOUT, STAGE, newControl, waitChange } from './control.js';
import { RunError, type Failure } from '../errors.js';
import type { ExecutorInit, OwnedState } from '../stage/executor.js';
import type { RankState, RunStates } from '../checkpoint/state.js';
import type { CBackend } from '../stage/kernel.js';
import type { RingPlan, StageStep } from '../pipeline/model.js';
import { STOP_GRACE_MS, stoppedDetail, type Transport, type TransportContext } from '../transport.js';
import { monoUs } from '../trace/clock.js';
import { REC, chronological, keptCount, newRing, slotOf, type StepTimes } from '../trace/log.js';
import { hostHash } from '../mpi/protocol.js';

export interface ThreadsOptions {
  cBackend: CBackend;
  /** Worker threads that run ranks. */
  executors: number;
  /** Atomics.load polls before sleeping in Atomics.wait. */
  spins: number;
}

/** How long the hub blocks its own event loop waiting for a stage before it waits asynchronously. */
const SYNC_WAIT_MS = 20;
/** Each run's number in this process: the kernel addon interrupts one run's kernels, not another's. */
let runs = 0;
/** The slow path's wait between looks at a failure, a stop or the deadline. */
const WAIT_SLICE_MS = 50;

export type ThreadMessage = { type: 'ready' } | { type: 'error'; failure: Failure } | { type: 'states'; states: OwnedState[] };

export class ThreadsTransport implements Transport {
  private readonly ctrl = newControl();
  private readonly workers: Worker[] = [];
  /** Per thread, the port its CMD_LOAD states go to; and the states threads posted for a save. */
  private readonly statePorts: MessagePort[] = [];
  private saved: OwnedState[][] = [];
  private stateless = false;
  private readonly exited: Promise<void>[] = [];
  private failure: RunError | undefined;
  private current: StageStep | undefined;
  private closing = false;
  /**
   * The hub only waits (it runs no rank): it spins only while a core is left over for it,
   * else it sleeps at once, because a spinning hub on a core a worker needs costs that
   * worker its time slice (measured: 76 µs per iteration instead of a few, 2 workers on 2 cores).
   */
  private hubSpins = 0;
  /** With ctx.timing: the hub's ring per stage, every rank's in one shared buffer (executor.ts), the slot in flight. */
  private hubRings: Float64Array[] | undefined;
  private rankRings: ExecutorInit['times'];
  private timedAt = -1;
  private steps: number[];
  private readonly run = ++runs;

  constructor(
    private readonly plan: RingPlan,
    private readonly ctx: TransportContext,
    private readonly opts: ThreadsOptions,
  ) {
    this.hubSpins = opts.executors < availableParallelism() ? opts.spins : 0;
    this.steps = plan.stages.map(() => 0);
    const spec = ctx.timing;
    if (spec) {
      this.hubRings = plan.stages.map(() => newRing(spec));
      const first = plan.stages.map((_, s) => plan.stages.slice(0, s).reduce((a, st) => a + st.ranks, 0));
      const total = plan.stages.reduce((a, st) => a + st.ranks, 0);
      this.rankRings = { spec, first, rings: new Float64Array(new SharedArrayBuffer(total * spec.cap * REC * 8)) };
    }
  }

  private init(index: number): ExecutorInit {
    const { buffer, memory, buffers, outputs, stackTops, scratch } = this.ctx.arena;
    const { stages, wasmModule } = this.plan;
    return { index, executors: this.opts.executors, buffer, memory, stages, wasmModule, buffers, outputs, stackTop: stackTops[index], scratch: scratch[index], fields: this.plan.fields, cBackend: this.opts.cBackend, run: this.run, times: this.rankRings };
  }

  private ranksOf(index: number, stage: number): number[] {
    const ranks: number[] = [];
    for (let r = index; r < this.plan.stages[stage].ranks; r += this.opts.executors) ranks.push(r);
    return ranks;
  }

  async start(): Promise<void> {
    const ready: Promise<void>[] = [];
    for (let i = 0; i < this.opts.executors; i++) {
      const { port1, port2 } = new MessageChannel();
      this.statePorts.push(port1);
      const w = new Worker(join(distDir, 'thread-worker.js'), {
        workerData: { init: this.init(i), ctrl: this.ctrl, spins: this.opts.spins, states: port2 },
        transferList: [port2],
      });
      this.workers.push(w);
      ready.push(
        new Promise((resolve, reject) => {
          w.once('message', () => resolve());
          w.once('error', reject);
          w.once('exit', () => reject(this.failure ?? new RunError({ reason: 'start', detail: `worker thread ${i} exited while starting` })));
        }),
      );
      w.on('message', (m: ThreadMessage) => {
        if (m.type === 'error') this.failure ??= new RunError(m.failure);
        else if (m.type === 'states') this.saved.push(m.states);
      });
      w.on('error', (err) => {
        this.failure ??= this.lost(i, `failed: ${err.message.split('\n')[0]}`);
      });
      this.exited.push(
        new Promise((resolve) =>
          w.once('exit', (code) => {
            // A worker thread ends on its own only through process.exit in user code (an
            // uncaught error comes as 'error' first): the rank running on it called it.
            if (!this.closing) this.failure ??= this.lost(i, `called process.exit(${code})`);
            resolve();
          }),
        ),
      );
    }
    await withDeadline(Promise.all(ready), this.ctx.timeoutMs, () => new RunError({ reason: 'start', detail: `worker threads did not start within ${this.ctx.timeoutMs} ms` }));
  }

  /** Every thread's ranks' states (their stage's save(ctx)), after iteration `iterations - 1`. */
  async saveStates(iterations: number): Promise<RunStates> {
    const states: RunStates = this.plan.stages.map(() => null);
    // No ts stage, or none whose module has a save: a first save said so, none is asked again.
    if (this.stateless || !this.plan.stages.some((st) => st.kind === 'ts')) return states;
    this.saved = [];
    await this.command(CMD_SAVE, iterations, `the state save before iteration ${iterations}`);
    // Each thread posted its states before it counted itself done: give the messages a turn.
    for (let k = 0; k < 1000 && this.saved.length < this.workers.length; k++) await new Promise((resolve) => setImmediate(resolve));
    if (this.saved.length < this.workers.length) throw new RunError({ reason: 'protocol', detail: 'a worker thread saved no states' });
    if (this.saved.every((list) => list.length === 0)) this.stateless = true;
    for (const { stage, rank, state } of this.saved.flat()) {
      const ranks = (states[stage] ??= Array.from({ length: this.plan.stages[stage].ranks }, (): RankState => ({ format: 0, bytes: new Uint8Array(0) })));
      ranks[rank] = state;
    }
    return states;
  }

  /** Hands every rank its state: each thread's share through its port, then CMD_LOAD. */
  async loadStates(iterations: number, states: RunStates): Promise<void> {
    this.statePorts.forEach((port, i) => {
      const mine: OwnedState[] = [];
      states.forEach((ranks, stage) => ranks?.forEach((state, rank) => rank % this.opts.executors === i && mine.push({ stage, rank, state })));
      port.postMessage(mine);
    });
    await this.command(CMD_LOAD, iterations, `the state load before iteration ${iterations}`);
  }

  /** Publishes a command other than a step and waits, within the deadline, for every thread. */
  private async command(cmd: number, iterations: number, what: string): Promise<void> {
    const ctrl = this.ctrl;
    this.timedAt = -1;
    Atomics.store(ctrl, DONE, 0);
    Atomics.store(ctrl, ITER, iterations);
    Atomics.store(ctrl, CMD, cmd);
    Atomics.add(ctrl, GO, 1);
    Atomics.notify(ctrl, GO);
    // A save of small states takes microseconds: wait for it here first, as a step does.
    const need = this.workers.length;
    const soon = performance.now() + SYNC_WAIT_MS;
    let done = Atomics.load(ctrl, DONE);
    while (done !== need && performance.now() < soon) done = waitChange(ctrl, DONE, done, this.hubSpins, SYNC_WAIT_MS);
    const deadline = performance.now() + this.ctx.timeoutMs;
    while (Atomics.load(ctrl, DONE) !== need) {
      if (this.failure) throw this.failure;
      if (performance.now() > deadline) throw new RunError({ reason: 'timeout', detail: `${what} did not finish within ${this.ctx.timeoutMs} ms` });
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    await this.checkFailed();
  }

  /** A thread that died: blame the rank it was running (control.ts RUNNING), else the stage in flight's first of its ranks. */
  private lost(index: number, what: string): RunError {
    const step = this.current;
    const running = Atomics.load(this.ctrl, FAILED + 1 + index) - 1;
    if (!step) return new RunError({ reason: 'exited', detail: `worker thread ${index} ${what} between stages` });
    const rank = running >= 0 ? running : this.ranksOf(index, step.stage)[0];
    return new RunError({ stage: this.plan.stages[step.stage].name, rank, reason: 'exited', detail: what });
  }

  runStage(step: StageStep): Promise<void> | undefined {
    const ctrl = this.ctrl;
    this.current = step;
    this.steps[step.stage] = step.iteration + 1;
    const ring = this.hubRings?.[step.stage];
    this.timedAt = ring ? slotOf(step.iteration, this.ctx.timing!) : -1;
    if (this.timedAt >= 0) {
      // Publishing a step is a few stores: its "scatter" is not timed apart (ends where it starts).
      ring![this.timedAt] = step.iteration;
      ring![this.timedAt + 1] = ring![this.timedAt + 2] = monoUs();
    }
    Atomics.store(ctrl, DONE, 0);
    Atomics.store(ctrl, STAGE, step.stage);
    Atomics.store(ctrl, ITER, step.iteration);
    Atomics.store(ctrl, NIN, step.nIn);
    Atomics.store(ctrl, NOUT, step.nOut);
    Atomics.store(ctrl, CMD, CMD_RUN);
    Atomics.add(ctrl, GO, 1);
    Atomics.notify(ctrl, GO);
    return this.awaitWorkers();
  }

  private awaitWorkers(): Promise<void> | undefined {
    const need = this.workers.length;
    const ctrl = this.ctrl;
    const until = performance.now() + SYNC_WAIT_MS;
    let done = Atomics.load(ctrl, DONE);
    while (done !== need && performance.now() < until) {
      done = waitChange(ctrl, DONE, done, this.hubSpins, SYNC_WAIT_MS);
    }
    if (done === need) return this.checkFailed();
    return this.awaitWorkersAsync();
  }

  /** The slow path: lets the event loop run so a thread's exit, a signal or the deadline is seen. */
  private async awaitWorkersAsync(): Promise<void> {
    const need = this.workers.length;
    const deadline = performance.now() + this.ctx.timeoutMs;
    for (;;) {
      const done = Atomics.load(this.ctrl, DONE);
      if (done === need) return this.checkFailed();
      if (this.failure) throw this.failure;
      const abortedAt = this.abortedAt();
      if (abortedAt !== undefined && performance.now() - abortedAt > STOP_GRACE_MS) {
        const step = this.current!;
        throw new RunError({ stage: this.plan.stages[step.stage].name, rank: this.slowestRank(step), reason: 'timeout', detail: stoppedDetail(step.iteration) });
      }
      if (performance.now() > deadline) {
        const step = this.current!;
        throw new RunError({
          stage: this.plan.stages[step.stage].name,
          rank: this.slowestRank(step),
          reason: 'timeout',
          detail: `no result for iteration ${step.iteration} within ${this.ctx.timeoutMs} ms`,
        });
      }
      // Atomics.waitAsync holds no handle on the event loop: with the only thread gone (a
      // process.exit in a transform) nothing else would, and the process would end with
      // exit 0 and no word. The timer keeps it up while this waits.
      const r = Atomics.waitAsync(this.ctrl, DONE, done, WAIT_SLICE_MS);
      if (r.async) {
        const keep = setTimeout(() => {}, WAIT_SLICE_MS + 10);
        await r.value;
        clearTimeout(keep);
      } else await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /** The rank a late thread is on: each thread publishes the rank it runs (control.ts RUNNING). */
  private slowestRank(step: StageStep): number | undefined {
    for (let i = 0; i < this.workers.length; i++) {
      const r = Atomics.load(this.ctrl, FAILED + 1 + i) - 1;
      if (r >= 0) return r;
    }
    return this.ranksOf(0, step.stage)[0];
  }

  private abortTime: number | undefined;
  private abortedAt(): number | undefined {
    if (this.ctx.signal?.aborted) this.abortTime ??= performance.now();
    return this.abortTime;
  }

  private checkFailed(): Promise<void> | undefined {
    if (this.timedAt >= 0) this.hubRings![this.current!.stage][this.timedAt + 3] = monoUs();
    if (Atomics.load(this.ctrl, FAILED) === 0) return undefined;
    // The thread posted its error before it counted itself done; give the message a turn to arrive.
    return (async () => {
      for (let i = 0; i < 100 && !this.failure; i++) await new Promise((resolve) => setTimeout(resolve, 10));
      throw this.failure ?? new RunError({ reason: 'user-code', detail: 'a worker thread failed without a message' });
    })();
  }

  stepTimes(): StepTimes | undefined {
    const spec = this.ctx.timing;
    if (!spec) return undefined;
    const iterations = this.steps[this.steps.length - 1];
    const { kept, dropped } = keptCount(iterations, spec);
    const hub = this.hubRings!.map((ring) => chronological(ring, iterations, spec));
    const { rings, first } = this.rankRings!;
    const ranks = this.plan.stages.map((st, s) =>
      Array.from({ length: st.ranks }, (_, r) => {
        const at = (first[s] + r) * spec.cap * REC;
        const rec = chronological(rings.subarray(at, at + spec.cap * REC), iterations, spec);
        // A rank's wait for its input starts when the hub published the step.
        for (let j = 0; j < kept; j++) rec[j * REC + 1] = hub[s][j * REC + 1];
        return rec;
      }),
    );
    const here = hostHash();
    return { spec, iterations, kept, dropped, hub, ranks, hosts: this.plan.stages.map((st) => new Array<number>(st.ranks).fill(here)), hubHost: here, offsets: [] };
  }

  async close(failed = false): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    Atomics.store(this.ctrl, CMD, CMD_STOP);
    Atomics.add(this.ctrl, GO, 1);
    Atomics.notify(this.ctrl, GO);
    // After a failure a native kernel may never return (a loop that does not end): the
    // kernel addon jumps its thread out of it, which then reads the stop and exits.
    if (failed && this.nativeC) nativeKernels().interrupt(this.run);
    if (await within(Promise.all(this.exited), STOP_GRACE_MS)) return;
    // A thread stuck in a user transform never reads the stop: terminate interrupts JS.
    if (this.nativeC) nativeKernels().interrupt(this.run);
    await within(Promise.all(this.workers.map((w) => w.terminate())), STOP_GRACE_MS);
    // Still there: a native kernel the interrupt could not reach (a thread past the addon's
    // table, or one that blocks its signals). unref lets the caller's process exit anyway.
    for (const w of this.workers) w.unref();
  }

  /** The run has C stages on the native backend: kernels in this process that only the addon can interrupt. */
  private get nativeC(): boolean {
    return this.opts.cBackend === 'native' && this.plan.stages.some((st) => st.kind === 'c');
  }
}

/** True when `p` settles within `ms`; leaves no timer behind either way. */
async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((resolve) => (timer = setTimeout(resolve, ms, false)));
  try {
    return await Promise.race([p.then(() => true), late]);
  } finally {
    clearTimeout(timer);
  }
}

export async function withDeadline<T>(p: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
  });
  try {
    return await Promise.race([p, expired]);
  } finally {
    clearTimeout(timer);
  }
}
