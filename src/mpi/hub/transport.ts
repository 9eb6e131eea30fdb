/**
 * The MPI transport: each stage is a spawned MPI job behind an intercommunicator,
 * driven by docs/PROTOCOL.md. Collectives run on the hub thread; the addon's
 * watchdog thread ends the run when a rank dies or a call outlives the timeout,
 * because a singleton master would otherwise spin forever.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { addonPath, distDir, howToBuild, pythonStagePath } from '../../assets.js';
import { RunError } from '../../errors.js';
import type { CBackend } from '../../stage/kernel.js';
import { CMD_EPOCH, CMD_LOAD, CMD_RUN, CMD_SAVE, CMD_STOP, FLAG_MERGED, FLAG_STATE, FLAG_TIMES, MAGIC, STEP_TIMEOUT_ENV, TAG_STATE, fieldTableText, hostHash, stepTable } from '../protocol.js';
import { STATE_NONE, type RankState, type RunStates, type StateFormat } from '../../checkpoint/state.js';
import { monoUs } from '../../trace/clock.js';
import { CLOCK_ROUNDS, REC, chronological, clockOffsets, keptCount, newRing, slotOf, type StepTimes } from '../../trace/log.js';
import { MpiError, mpi, type MpiAddon } from '../addon.js';
import { runMpi, type MpiImpl } from '../impl/index.js';
import type { RingPlan, RingStage, StageStep } from '../../pipeline/model.js';
import type { Transport, TransportContext } from '../../transport.js';
import { checkWasmRank } from '../../arena.js';
import { bytesOf, lastOfPart, messageView } from '../../message.js';

export interface MpiOptions {
  cBackend: CBackend;
  /** spawn: MPI_Comm_spawn per stage; mpmd: the stages are already in this mpirun's world. */
  launch: 'spawn' | 'mpmd';
  /** The project's own stages step on intracommunicators merged with the hub (FLAG_MERGED): the wire decides (wire.ts). */
  merged: boolean;
  /** MPI_Info keys for every spawn (host, hostfile); empty on one machine. */
  spawnInfo: Record<string, string>;
  /** The run takes checkpoints or resumes: stages that keep state get FLAG_STATE. */
  state: boolean;
}

/**
 * The command line that starts one rank of a stage. A program of the user's runs under
 * `sh -c 'exec PROGRAM ARGS >&2'`: the same process (exec keeps the pid the protocol
 * reports), with its stdout on stderr, because the master's stdout carries the result.
 * The project's own stage processes do that themselves.
 */
export function stageCommand(plan: RingPlan, st: RingStage, cBackend: CBackend): [string, string[]] {
  const worker = join(distDir, 'worker.js');
  // "env" goes through env(1), which execs the stage: the pid it reports stays the rank's, in both launch modes.
  if (st.env && Object.keys(st.env).length) {
    const [cmd, args] = stageCommand(plan, { ...st, env: undefined }, cBackend);
    return ['/usr/bin/env', [...Object.entries(st.env).map(([k, v]) => `${k}=${v}`), cmd, ...args]];
  }
  if (st.kind === 'python') return [st.python!, [st.runner ?? pythonStagePath, st.module!, st.function!, st.name]];
  if (st.kind === 'exec') return ['/bin/sh', ['-c', 'exec "$0" "$@" >&2', ...st.command!]];
  if (st.kind === 'c' && cBackend === 'native') return [st.worker![0], [st.worker![1]]];
  if (st.kind === 'c') return [process.execPath, [worker, 'c', plan.wasmModule, st.wasmExport!, st.name]];
  return [process.execPath, [worker, 'ts', st.module!, st.export!, st.name]];
}

/** One rank as its Ready message described it. */
export interface RankInfo {
  stage: number;
  rank: number;
  pid: number;
  /** FNV-1a hash of its host name (docs/PROTOCOL.md, Ready). */
  host: number;
}

/**
 * Written into the last element of each rank's slot before a gather: a rank that sends
 * fewer elements than asked leaves it there. A NaN payload no arithmetic produces,
 * written and read as integers so no float path can canonicalise it.
 */
const SENTINEL_LO = 0x5eca1c0d | 0;
const SENTINEL_HI = 0x7ff4c10f | 0;

export class MpiTransport implements Transport {
  private m!: MpiAddon;
  private comms: number[] = [];
  /** Per stage: the communicator its steps run on (the merged one under FLAG_MERGED), and whether merged. */
  private stepComms: number[] = [];
  private merged: boolean[] = [];
  readonly ranks: RankInfo[] = [];
  private i32!: Int32Array;
  private local: number | null = null;
  private readonly header = new Int32Array(4);
  private closed = false;
  /** Set while a step is half done: a stop header now would not match what the ranks expect. */
  private midStep = false;
  /** With ctx.timing: per stage, the hub's ring of step times; the ranks' come at the stop. */
  private hubRings: Float64Array[] | undefined;
  private rankTimes: (Float64Array[] | null)[] = [];
  private offsets: StepTimes['offsets'] = [];
  /** Per stage, the steps its ranks ran: what they keep and ship follows from it. */
  private steps: number[] = [];
  /** Stages that answered a save with no state from every rank: they have no hooks, and are not asked again. */
  private readonly stateless = new Set<number>();

  constructor(
    private readonly plan: RingPlan,
    private readonly ctx: TransportContext,
    private readonly opts: MpiOptions,
  ) {}

  /**
   * What an MPI run needs built, checked where the run is asked for (a missing part then
   * fails before any process starts, with the line saying how to get it).
   */
  static preflight(plan: RingPlan, cBackend: CBackend, impl: MpiImpl = runMpi()): void {
    // A C stage as WebAssembly runs in a process of its own, with a wasm32 memory per rank.
    if (cBackend === 'wasm') {
      plan.stages.forEach((st, s) => {
        if (st.kind === 'c') checkWasmRank(st.name, plan.maxInput[s] / st.ranks, Math.max(...plan.schedule.map((sizes) => sizes[s])));
      });
    }
    // The built-in C stages run the C worker build.sh built for this MPI.
    const worker = join(distDir, impl.cWorker);
    const needsWorker = plan.stages.some((st) => st.kind === 'c' && st.worker?.[0] === worker);
    if (cBackend === 'native' && needsWorker && !existsSync(worker)) {
      throw new RunError({ reason: 'start', detail: `${worker} is missing: ${howToBuild(impl.packages)}` });
    }
    try {
      addonPath(impl.addon);
    } catch (err) {
      throw new RunError({ reason: 'start', detail: `${(err as Error).message} (the MPI transport under ${impl.title} needs: apt-get install -y ${impl.packages})` });
    }
  }

  async start(): Promise<void> {
    MpiTransport.preflight(this.plan, this.opts.cBackend);
    runMpi().environment(Object.keys(this.opts.spawnInfo).length === 0, process.env);
    this.m = mpi();
    this.m.init();
    const { m } = this;
    m.setTimeout(this.ctx.timeoutMs);
    const here = hostHash();
    const connect = this.opts.launch === 'mpmd' ? this.mpmdConnector() : this.spawner();
    this.i32 = new Int32Array(this.ctx.arena.buffer);
    const timing = this.ctx.timing;
    if (timing) this.hubRings = this.plan.stages.map(() => newRing(timing));
    this.plan.stages.forEach((st, s) => {
      this.steps.push(0);
      const times = timing !== undefined && st.times && st.protocol >= 2;
      // The project's own stage processes speak FLAG_MERGED; exec stages keep the intercommunicator.
      const merge = this.opts.merged && st.protocol >= 2 && st.kind !== 'exec';
      const comm = connect(st, s);
      this.comms.push(comm);
      m.label(comm, st.name);
      this.step(s, 'start-up', () => {
        m.bcast(comm, Int32Array.of(MAGIC, st.protocol, s, st.ranks), m.ROOT);
        if (st.protocol >= 2) {
          // v2: the sizes of every step, once, so a step needs no header (docs/PROTOCOL.md).
          const { first, table } = stepTable(this.plan, s);
          // {P, first, flags}: FLAG_TIMES asks for step times (of stages that keep them), FLAG_MERGED
          // for steps on a merged intracommunicator (the project's own stages, where the wire says).
          const flags = (times ? FLAG_TIMES : 0) | (merge ? FLAG_MERGED : 0) | (this.stateful(s) ? FLAG_STATE : 0);
          m.bcast(comm, Int32Array.of(table.length / 2, first, flags), m.ROOT);
          m.bcast(comm, table, m.ROOT);
          if (st.protocol === 3) {
            // v3: the fields of the stage's blocks, as text (docs/PROTOCOL.md, "Version 3: fields").
            const text = fieldTableText(this.plan.fields!, s);
            m.bcast(comm, Int32Array.of(text.length), m.ROOT);
            m.bcast(comm, text, m.ROOT);
          }
          if (times) m.bcast(comm, Int32Array.of(timing.every, timing.cap), m.ROOT);
        }
        this.stepComms.push(merge ? m.merge(comm, false) : comm);
        this.merged.push(merge);
        if (merge) m.label(this.stepComms[s], st.name);
        const ready = new Int32Array(2 * st.ranks);
        m.gather(comm, null, ready, 2, m.ROOT);
        for (let r = 0; r < st.ranks; r++) this.ranks.push({ stage: s, rank: r, pid: ready[2 * r], host: ready[2 * r + 1] });
        // Only ranks on this host can be checked by pid; the others rely on the timeout.
        const pids = Int32Array.from({ length: st.ranks }, (_, r) => (ready[2 * r + 1] === here ? ready[2 * r] : 0));
        m.watch(comm, st.name, pids, this.ctx.timeoutMs);
        if (merge) m.watch(this.stepComms[s], st.name, pids, this.ctx.timeoutMs);
        if (times) this.syncClocks(s);
      });
      this.rankTimes.push(null);
    });
  }

  /** Step times: ping-pong rounds that put each other host's clock on the hub's (log.ts clockOffsets). */
  private syncClocks(s: number): void {
    const { m } = this;
    const st = this.plan.stages[s];
    const rounds = [];
    for (let k = 0; k < CLOCK_ROUNDS; k++) {
      const got = new Float64Array(st.ranks);
      const t0 = monoUs();
      m.bcast(this.comms[s], Float64Array.of(t0), m.ROOT);
      m.gather(this.comms[s], null, got, 1, m.ROOT);
      rounds.push({ t0, t1: monoUs(), got });
    }
    const { perHost } = clockOffsets(rounds, this.hostsOf(s), hostHash());
    for (const o of perHost) {
      const seen = this.offsets.find((p) => p.host === o.host);
      if (!seen) this.offsets.push(o);
      else if (o.rttUs < seen.rttUs) Object.assign(seen, o);
    }
  }

  /** Runs MPI calls for stage s; an MPI error becomes a RunError naming the stage and the step. */
  private step(s: number, what: string, calls: () => void): void {
    try {
      calls();
    } catch (err) {
      this.stepFailed(s, what, err);
    }
  }

  /** An MPI call of stage `s` threw: an MpiError becomes the stage's RunError, anything else goes on. */
  private stepFailed(s: number, what: string, err: unknown): never {
    if (!(err instanceof MpiError)) throw err;
    const truncated = /MPI_ERR_TRUNCATE/.test(err.message);
    // After the last iteration a stage must disconnect before it finalizes: one that does
    // not breaks the hub's disconnect. Its results are in, but the run did not end cleanly.
    const detail = truncated
      ? `a rank sent more elements than ${what} asked (${err.message})`
      : what === 'shutdown'
        ? `did not disconnect after the stop (every rank must MPI_Comm_disconnect before MPI_Finalize): ${err.message}`
        : `${err.message} in ${what}`;
    throw new RunError({ stage: this.plan.stages[s].name, reason: truncated ? 'count' : 'protocol', detail });
  }

  private spawner(): (st: RingStage, s: number) => number {
    // Ranks on other hosts are started by Open MPI's daemons there, whose environment is not
    // this process's: the step deadline goes with the command (env(1) execs it, same pid).
    const remote = Object.keys(this.opts.spawnInfo).length > 0;
    const deadline = process.env[STEP_TIMEOUT_ENV];
    return (st) => {
      const withDeadline = remote && deadline ? { ...st, env: { ...st.env, [STEP_TIMEOUT_ENV]: deadline } } : st;
      const [command, args] = stageCommand(this.plan, withDeadline, this.opts.cBackend);
      const info = st.cwd ? { ...this.opts.spawnInfo, wdir: st.cwd } : this.opts.spawnInfo;
      try {
        return this.m.spawn(command, args, st.ranks, info, st.name);
      } catch (err) {
        const hint = process.env.OMPI_COMM_WORLD_SIZE
          ? ' (under mpirun, add --oversubscribe or give it a hostfile with enough slots)'
          : '';
        throw new RunError({ stage: st.name, reason: 'start', detail: `could not start ${st.ranks} ranks: ${(err as Error).message}${hint}` });
      }
    };
  }

  /** MPMD: world rank 0 is this master; stage s holds the next ranks, in stage order, app number s+1. */
  private mpmdConnector(): (st: RingStage, s: number) => number {
    const { m } = this;
    const world = m.describe(0);
    const need = 1 + this.plan.stages.reduce((a, st) => a + st.ranks, 0);
    if (world.rank !== 0 || world.size !== need || m.appnum() !== 0) {
      throw new Error(
        `--launch mpmd: this master must be rank 0 of one mpirun with ${need} ranks (1 + every stage's), ` +
          `got rank ${world.rank} of ${world.size}; run it through node dist/master.js --launch mpmd, which starts that mpirun`,
      );
    }
    this.local = m.split(0, 0, 0);
    let leader = 1;
    return (st, s) => {
      const comm = m.intercommCreate(this.local!, 0, 0, leader, s + 1);
      leader += st.ranks;
      return comm;
    };
  }

  runStage(step: StageStep): undefined {
    const { m, header } = this;
    const { f64, buffers, outputs } = this.ctx.arena;
    const ranks = this.plan.stages[step.stage].ranks;
    const comm = this.comms[step.stage];
    const stepComm = this.stepComms[step.stage];
    const merged = this.merged[step.stage];
    const v1 = this.plan.stages[step.stage].protocol === 1;
    if (v1) {
      header[0] = CMD_RUN;
      header[1] = step.iteration;
      header[2] = step.nIn;
      header[3] = step.nOut;
    }
    this.midStep = true;
    const input = messageView(f64, buffers[step.stage], step.nIn * ranks);
    const output = messageView(f64, outputs[step.stage], step.nOut * ranks);
    const i32 = this.i32;
    for (let r = 0; r < ranks; r++) {
      const at = lastOfPart(outputs[step.stage], step.nOut, r) * 2;
      i32[at] = SENTINEL_LO;
      i32[at + 1] = SENTINEL_HI;
    }
    const ring = this.hubRings?.[step.stage];
    const slot = ring ? slotOf(step.iteration, this.ctx.timing!) : -1;
    // Inline rather than through step(): no closure and no message string on the hot path.
    try {
      if (v1) m.bcast(comm, header, m.ROOT);
      if (slot >= 0) ring![slot + 1] = monoUs();
      if (merged) m.scatterOthers(stepComm, input, null, step.nIn, 0);
      else m.scatter(comm, input, null, step.nIn, m.ROOT);
      if (slot >= 0) ring![slot + 2] = monoUs();
      if (merged) m.gatherOthers(stepComm, null, output, step.nOut, 0);
      else m.gather(comm, null, output, step.nOut, m.ROOT);
      if (slot >= 0) {
        ring![slot + 3] = monoUs();
        ring![slot] = step.iteration;
      }
    } catch (err) {
      this.stepFailed(step.stage, `iteration ${step.iteration}`, err);
    }
    this.steps[step.stage] = step.iteration + 1;
    for (let r = 0; r < ranks; r++) {
      const at = lastOfPart(outputs[step.stage], step.nOut, r) * 2;
      if (i32[at] === SENTINEL_LO && i32[at + 1] === SENTINEL_HI) {
        throw new RunError({
          stage: this.plan.stages[step.stage].name,
          rank: r,
          reason: 'count',
          detail: this.shortDetail(step),
        });
      }
    }
    this.midStep = false;
    return undefined;
  }

  /**
   * A rank's output came short (its count sentinel survived). In a ring of fields only the
   * block's end is seen: the field there is named, with the block's fields.
   */
  private shortDetail(step: StageStep): string {
    const block = this.plan.fields?.out[step.stage];
    if (!block) return `sent fewer than the ${step.nOut} elements iteration ${step.iteration} asked for`;
    const list = block.fields.map((f) => `${f.name} ${f.dtype} [${f.shape.join(',')}]`).join(', ');
    const last = block.fields[block.fields.length - 1];
    return `sent less than its output block of ${bytesOf(step.nOut)} bytes iteration ${step.iteration} asked for (fields ${list}): field "${last.name}", at its end, did not arrive in full`;
  }

  /** Stage s got FLAG_STATE: it may be asked for its state (docs/PROTOCOL.md section 5). */
  private stateful(s: number): boolean {
    const st = this.plan.stages[s];
    return this.opts.state && st.state && st.protocol >= 2;
  }

  /** CMD_SAVE to every stage that may keep state: each rank's {format, nbytes}, then its bytes. */
  saveStates(iterations: number): RunStates {
    const { m } = this;
    const header = Int32Array.of(CMD_SAVE, iterations, 0, 0);
    this.midStep = true;
    const states = this.plan.stages.map((st, s): RankState[] | null => {
      if (!this.stateful(s) || this.stateless.has(s)) return null;
      const comm = this.comms[s];
      const sizes = new Int32Array(2 * st.ranks);
      const out: RankState[] = [];
      this.step(s, `the state save before iteration ${iterations}`, () => {
        m.bcast(comm, header, m.ROOT);
        m.gather(comm, null, sizes, 2, m.ROOT);
        for (let r = 0; r < st.ranks; r++) {
          const [format, n] = [sizes[2 * r], sizes[2 * r + 1]];
          if (format < 0 || format > 2 || n < 0 || (format === STATE_NONE && n !== 0)) {
            throw new RunError({ stage: st.name, rank: r, reason: 'protocol', detail: `answered the state save with format ${format} and ${n} bytes (docs/PROTOCOL.md section 5)` });
          }
          const bytes = new Uint8Array(n);
          if (n > 0) m.recv(comm, bytes, r, TAG_STATE);
          out.push({ format: format as StateFormat, bytes });
        }
      });
      if (out.every((r) => r.format === STATE_NONE)) {
        this.stateless.add(s);
        return null;
      }
      return out;
    });
    this.midStep = false;
    return states;
  }

  /** CMD_LOAD to every stage the checkpoint holds state for: {format, nbytes} scattered, the bytes sent, an ack gathered. */
  loadStates(iterations: number, states: RunStates): void {
    const { m } = this;
    const header = Int32Array.of(CMD_LOAD, iterations, 0, 0);
    this.midStep = true;
    states.forEach((ranks, s) => {
      if (!ranks || !this.stateful(s)) return;
      const comm = this.comms[s];
      const st = this.plan.stages[s];
      this.step(s, `the state load before iteration ${iterations}`, () => {
        m.bcast(comm, header, m.ROOT);
        m.scatter(comm, Int32Array.from(ranks.flatMap((r) => [r.format, r.bytes.length])), null, 2, m.ROOT);
        ranks.forEach((r, rank) => {
          if (r.bytes.length > 0) m.send(comm, r.bytes, rank, TAG_STATE);
        });
        m.gather(comm, null, new Int32Array(st.ranks), 1, m.ROOT);
      });
    });
    this.midStep = false;
  }

  /**
   * v2 stages: the next `count` steps, from iteration `first`, need no header. Between
   * epochs every stage is between steps, so a stop can always be said politely.
   */
  beginEpoch(first: number, count: number): void {
    const header = Int32Array.of(CMD_EPOCH, first, count, 0);
    this.plan.stages.forEach((st, s) => {
      if (st.protocol >= 2) this.step(s, `the epoch header of iteration ${first}`, () => this.m.bcast(this.comms[s], header, this.m.ROOT));
    });
  }

  async close(failed = false): Promise<void> {
    if (this.closed || !this.m) return;
    this.closed = true;
    const { m } = this;
    if (this.midStep || failed) {
      m.killAll();
      return;
    }
    const stop = Int32Array.of(CMD_STOP, 0, 0, 0);
    this.comms.forEach((comm, s) => {
      const st = this.plan.stages[s];
      this.step(s, 'the stop', () => {
        m.bcast(comm, stop, m.ROOT);
        if (this.ctx.timing && st.times && st.protocol >= 2) this.rankTimes[s] = this.collectTimes(s);
      });
      this.step(s, 'shutdown', () => {
        if (this.merged[s]) {
          m.unwatch(this.stepComms[s]);
          m.free(this.stepComms[s]);
        }
        m.unwatch(comm); // the ranks now exit on purpose
        m.disconnect(comm);
      });
    });
    if (this.local !== null) m.free(this.local);
    m.finalize();
  }

  /** After the stop: every rank of stage s sends its kept records, oldest first, all of the same count. */
  private collectTimes(s: number): Float64Array[] {
    const st = this.plan.stages[s];
    const spec = this.ctx.timing!;
    const { kept, first } = keptCount(this.steps[s], spec);
    const all = new Float64Array(st.ranks * kept * REC);
    this.m.gather(this.comms[s], null, all, kept * REC, this.m.ROOT);
    const hosts = this.hostsOf(s);
    return Array.from({ length: st.ranks }, (_, r) => {
      const rec = all.slice(r * kept * REC, (r + 1) * kept * REC);
      // On the hub's clock: ranks on other hosts get their host's offset.
      const offset = this.offsets.find((o) => o.host === hosts[r])?.offsetUs ?? 0;
      for (let j = 0; j < kept; j++) {
        const due = first + j * spec.every;
        if (rec[j * REC] !== due) throw new MpiError(`rank ${r} sent step times of iteration ${rec[j * REC]} where ${due} was due`, 0, 0);
        if (offset) for (let c = 1; c < REC; c++) rec[j * REC + c] += offset;
      }
      return rec;
    });
  }

  /** Per rank of stage s, its host hash from the Ready gather. */
  private hostsOf(s: number): number[] {
    return this.ranks.filter((r) => r.stage === s).map((r) => r.host);
  }

  stepTimes(): StepTimes | undefined {
    const spec = this.ctx.timing;
    if (!spec) return undefined;
    const iterations = this.steps[this.steps.length - 1] ?? 0;
    const { kept, dropped } = keptCount(iterations, spec);
    return {
      spec,
      iterations,
      kept,
      dropped,
      hub: this.hubRings!.map((ring) => chronological(ring, iterations, spec)),
      ranks: this.rankTimes,
      hosts: this.plan.stages.map((_, s) => this.hostsOf(s)),
      hubHost: hostHash(),
      offsets: this.offsets,
    };
  }
}
