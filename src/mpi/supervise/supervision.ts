/**
 * One supervised MPI run's state, and what changes it (supervisor.ts wires the events to
 * it): the hub's messages, the lines on its stderr, the start-up looks, the deadline tick,
 * the kill, and the end, which becomes the outcome or one RunError (firstFailure in
 * blame.ts ranks the accounts collected here). Apart from supervisor.ts so that each phase
 * is a method over one named state instead of a closure over a dozen variables; a new hub
 * message is one more case of onHubMessage, a new deadline one more rule in deadlines.ts.
 */
import { hostname } from 'node:os';
import { RunError, type Failure } from '../../errors.js';
import type { RingPlan } from '../../pipeline/model.js';
import type { RingOutcome } from '../../loop.js';
import { firstFailure, isDeadline } from './blame.js';
import { STAGE_FAIL, decodeArray, statesFromWire, stepTimesFromWire, type FromHub } from '../channel.js';
import { IterStats } from '../../trace/stats.js';
import { exitGraceMs, overdue, type RunClock } from './deadlines.js';
import type { LaunchedHub, LaunchOptions } from '../launch/hub-launch.js';
import { pendingLaunches, unreachable } from './reach.js';
import { writeFailureLog } from './leftovers.js';
import { descendants, killRecorded, procOf, type Proc } from './procs.js';
import { hostLabel } from '../protocol.js';
import { StartupWatch } from './startup-watch.js';
import type { TimingSpec } from '../../trace/log.js';
import type { CheckpointSession } from '../../checkpoint/session.js';
import type { Message } from '../../message.js';

/** The signals a process gets from its own fault, not from someone's kill. */
const CRASHES = new Set<string>(['SIGSEGV', 'SIGBUS', 'SIGILL', 'SIGFPE', 'SIGABRT']);

/** A supervised MPI run: how the hub is launched (LaunchOptions), and what it runs. */
export interface SuperviseOptions extends LaunchOptions {
  iterations: number;
  verbose: boolean;
  timing?: TimingSpec;
  /** The run's checkpoints: the hub takes them, this side writes them (on the caller's host). */
  checkpoints?: CheckpointSession;
}

export interface SuperviseHooks {
  signal?: AbortSignal;
  onIteration?: (iteration: number, array: Message) => boolean | void;
  onOutput?: (iteration: number, array: Message) => void;
  onProgress?: (iterations: number) => void;
  /** A `note:` line for the caller (a start tried again). */
  onNote?: (line: string) => void;
}

/** How a run ended: its outcome, or what the caller's promise rejects with. */
export type RunEnd = { outcome: RingOutcome } | { error: unknown };

export class Supervision implements RunClock {
  readonly t0 = Date.now();
  lastWord = this.t0;
  lastPulse = 0;
  hubHost = '';
  /** Until Ready: the hosts whose launch (ssh HOST orted ...) was still running at the last look. */
  launching: string[] = [];
  readyAt = 0;
  /** The result or a failure is in (0: not yet); from then on the job only has to go. */
  private endedAt = 0;
  abortedAt = 0;
  readonly noise: string[] = [];
  readonly startup?: StartupWatch;
  readonly timeoutMs: number;
  readonly stageCount: number;
  readonly launchHosts: readonly string[];

  private outcome?: RingOutcome;
  private hubFailure?: Failure;
  private callerError: unknown;
  private killedHere = false;
  /**
   * How many of Open MPI's lines were in when a deadline (the hub's or this side's) ended the
   * run: the deaths Open MPI reports after that are the teardown's (blame.ts), not a cause.
   */
  private deadlineAt: number | undefined;
  private readonly stageFailures: Failure[] = [];
  private readonly ranks = new Map<string, { host: number; pid: number }>();
  private readonly recorded = new Map<number, Proc>();
  /** The run's marks (Open MPI: its job families), for what it leaves in /dev/shm (the MPI's removeLeftovers). */
  private readonly marks = new Set<string>();
  /** The MPI's own lines of the hub's stderr (to the run's log). */
  private readonly isMpiText: (line: string) => boolean;

  constructor(
    private readonly plan: RingPlan,
    private readonly opts: SuperviseOptions,
    private readonly hooks: SuperviseHooks,
    private readonly hub: LaunchedHub,
  ) {
    this.timeoutMs = opts.timeoutMs;
    this.stageCount = plan.stages.length;
    this.launchHosts = hub.launchHosts;
    this.isMpiText = hub.mpi.ownLines();
    // A local job: its ranks are mpirun's (or the hub's orted's) children here, watched until Ready.
    this.startup = hub.remote ? undefined : new StartupWatch(plan, opts.launch, hub.mpi);
  }

  /** One message of the hub (channel.ts FromHub). */
  onHubMessage(m: FromHub): void {
    const now = Date.now();
    if (m.t !== 'pulse') this.lastWord = now;
    switch (m.t) {
      case 'pulse':
        this.lastPulse = now;
        this.hubHost = m.host;
        break;
      case 'ready':
        this.readyAt = now;
        for (const [s, r, pid, host] of m.ranks) this.ranks.set(`${s}/${r}`, { pid, host });
        this.record();
        break;
      case 'beat':
        this.hooks.onProgress?.(m.i + 1);
        break;
      case 'it': {
        let go = false;
        try {
          go = this.hooks.onIteration!(m.i, decodeArray(m.a)) !== false;
        } catch (err) {
          this.callerError ??= err;
        }
        this.hooks.onProgress?.(m.i + 1);
        this.hub.tell({ t: go ? 'go' : 'halt' });
        break;
      }
      case 'out':
        this.hooks.onOutput?.(m.i, decodeArray(m.a));
        break;
      case 'checkpoint':
        this.writeCheckpoint(m);
        break;
      case 'done':
        this.endedAt = now;
        this.outcome = {
          startS: m.startS,
          totalS: m.totalS,
          stats: IterStats.fromJSON(m.stats),
          final: decodeArray(m.final),
          steps: m.steps && stepTimesFromWire(m.steps),
          hostName: (hash) => hostLabel(hash, this.hub.hostNames),
          hosts: this.plan.stages.map((st, s) => Array.from({ length: st.ranks }, (_, r) => hostLabel(this.ranks.get(`${s}/${r}`)?.host ?? 0, this.hub.hostNames))),
          wire: this.hub.wire.name,
        };
        break;
      case 'fail':
        this.endedAt ||= now;
        this.record();
        this.hubFailure ??= { stage: m.stage, rank: m.rank, host: m.host, reason: m.reason, detail: m.detail };
        if (isDeadline(this.hubFailure)) this.deadlineAt ??= this.noise.length;
        break;
      default:
        m satisfies never; // a new message of FromHub needs its case here
    }
  }

  /**
   * A checkpoint the hub took: written here (on the caller's host, wherever the hub runs)
   * while the ring goes on; the hub sends the next one only after 'written'. A write that
   * fails ends the run with its error.
   */
  private writeCheckpoint(m: Extract<FromHub, { t: 'checkpoint' }>): void {
    const cps = this.opts.checkpoints;
    const failed = (err: unknown) => {
      this.callerError ??= err;
      this.kill();
    };
    if (!cps) return failed(new Error('the hub sent a checkpoint that this run did not ask for'));
    try {
      cps.write(m.n, decodeArray(m.a), statesFromWire(m.states), m.ms);
    } catch (err) {
      return failed(err);
    }
    cps.writer.idle().then(() => this.hub.tell({ t: 'written' }), failed);
  }

  /** One line of the hub's stderr: a stage's failure report, Open MPI's noise (kept), or a stage's own output. */
  onStderrLine(line: string): void {
    const mark = STAGE_FAIL.exec(line);
    if (mark) {
      const st = this.plan.stages[Number(mark[1])];
      if (st) this.stageFailures.push({ stage: st.name, rank: Number(mark[2]), reason: 'user-code', detail: mark[3] });
      return;
    }
    if (this.isMpiText(line)) {
      this.noise.push(line);
      if (this.opts.verbose) process.stderr.write(line + '\n');
    } else process.stderr.write(line + '\n');
  }

  /** The caller asked for a clean stop (its AbortSignal). */
  stop(): void {
    this.abortedAt = Date.now();
    this.hub.tell({ t: 'stop' });
  }

  /** The hub's command could not be started. */
  onSpawnError(err: Error): void {
    this.hubFailure ??= { reason: 'start', detail: `cannot start ${this.hub.cmd}: ${err.message}${this.hub.launcherName ? ` (apt-get install -y ${this.hub.mpi.packages})` : ''}` };
  }

  /** One look of the start-up watch (startup-watch.ts); false once the run is ready or over. */
  lookAtStartup(now: number): boolean {
    if (this.readyAt || this.endedAt) return false;
    const pid = this.hub.child.pid;
    if (pid) {
      this.startup!.look(pid, now);
      // Recorded as they appear: mpirun killed before Ready leaves them orphans, which the
      // end of the run must still find (and their shared-memory files with them).
      for (const p of this.startup!.pids) {
        if (this.recorded.has(p)) continue;
        const proc = procOf(p);
        if (proc && this.hub.mpi.runMark(p) !== undefined) this.keep(proc);
      }
    }
    return true;
  }

  /** The deadlines (deadlines.ts): the first passed ends the run; once it is over, a job slow to go is killed. */
  tick(now: number): void {
    const pid = this.hub.child.pid;
    // Looked at now, before a deadline ends them: the hub's own ends the daemon and its ssh.
    if (!this.readyAt && !this.endedAt && this.launchHosts.length && pid) this.launching = pendingLaunches(descendants(pid), this.hub.launchHosts);
    if (this.endedAt) {
      // The result (or the failure) is in: a job slow to go is ended, not reported.
      if (now - this.endedAt > exitGraceMs(this.hub.remote, Boolean(this.hubFailure))) this.kill();
      return;
    }
    const late = overdue(this, now);
    if (late) {
      this.hubFailure ??= late;
      this.deadlineAt ??= this.noise.length;
      this.endedAt ||= now;
      this.record();
      this.kill();
    }
  }

  /** SIGKILLs the hub's process group and every process of the run recorded so far. */
  kill(): void {
    this.killedHere = true;
    try {
      process.kill(-this.hub.child.pid!, 'SIGKILL');
    } catch {
      // the group is gone already
    }
    killRecorded(this.recorded.values());
  }

  /** The hub's process has closed with `code` or `signal`: the run's outcome, or its one error. */
  settle(code: number | null, signal: NodeJS.Signals | null): RunEnd {
    // Whatever of the run is still there (an orted that outlived its hub) goes now, and
    // with it the shared-memory files that a daemon killed with SIGKILL could not remove.
    killRecorded(this.recorded.values());
    this.hub.mpi.removeLeftovers(this.marks);
    if (this.callerError !== undefined) return { error: this.callerError };
    if (this.outcome && !this.hubFailure) return { outcome: this.outcome };
    // A host that ssh could not reach is the cause of whatever failed at start-up; a host
    // whose daemon Open MPI lost (a node gone) of whatever failed after.
    const lostHost = this.readyAt ? this.lostNode() : unreachable(this.noise, this.launching, this.timeoutMs);
    // mpirun or the hub process killed by a signal nobody here sent: that is the cause (a rank's
    // death makes mpirun exit with a code, not die by a signal).
    // A crash signal is the process's own fault (mpirun 4.1 can crash while it goes down with
    // its daemons, as after a scancel), not something sent to it: said so.
    const how = !signal ? `exited with code ${code}` : CRASHES.has(signal) ? `crashed (${signal})` : `was killed by ${signal}`;
    const launcher: Failure = {
      reason: signal ? 'killed' : 'exited',
      detail: `${this.hub.launcherName ?? 'the MPI hub'} ${how} before the run ended`,
    };
    const failure =
      firstFailure({
        stages: this.stageFailures,
        lostHost,
        launcher: signal && !this.killedHere ? launcher : undefined,
        hub: this.hubFailure,
        openMpi: this.hub.mpi.failureFromText(this.noise.slice(0, this.deadlineAt), { plan: this.plan, launch: this.opts.launch, rankOfPid: (pid, host) => this.rankOfPid(pid, host), ranksOn: (host) => this.ranksOn(host) }),
        startup: this.startup?.failure(code),
      }) ?? launcher;
    failure.host ??= this.hostOf(failure.stage, failure.rank);
    const err = new RunError(failure);
    if (this.noise.length) {
      err.log = writeFailureLog(this.noise, this.t0, this.hub.child.pid);
      err.logOf = this.hub.mpi.title;
    }
    return { error: err };
  }

  /**
   * The node whose Open MPI daemon the job lost, as the failure of the first stage rank that
   * ran there (its ranks all went with it; Open MPI says only the node).
   */
  private lostNode(): Failure | undefined {
    const host = this.hub.mpi.lostHost(this.noise);
    if (!host) return undefined;
    for (const [s, st] of this.plan.stages.entries()) {
      for (let r = 0; r < st.ranks; r++) {
        const at = this.ranks.get(`${s}/${r}`);
        if (at && hostLabel(at.host, this.hub.hostNames) === host) {
          return { stage: st.name, rank: r, host, reason: 'exited', detail: 'its node was lost: Open MPI lost its daemon there (the node or its network went down)' };
        }
      }
    }
    return { reason: 'exited', host, detail: `host ${host} was lost: Open MPI lost its daemon there (the node or its network went down)` };
  }

  /** Records one process of the run, and its job family. */
  private keep(p: Proc): void {
    if (!this.recorded.has(p.pid)) {
      const mark = this.hub.mpi.runMark(p.pid);
      if (mark !== undefined) this.marks.add(mark);
    }
    this.recorded.set(p.pid, p);
  }

  /** Records every process below the hub now. */
  private record(): void {
    const pid = this.hub.child.pid;
    if (pid) for (const p of descendants(pid)) this.keep(p);
  }

  /** The stage and rank of a pid on a host, as the ranks' Ready said. */
  private rankOfPid(pid: number, host: string): { stage: number; rank: number } | undefined {
    for (const [key, at] of this.ranks) {
      if (at.pid === pid && hostLabel(at.host, this.hub.hostNames) === host) {
        const [stage, rank] = key.split('/').map(Number);
        return { stage, rank };
      }
    }
    return undefined;
  }

  /**
   * The stages' ranks on a host, stage by stage and rank by rank: as the ranks' Ready said, or
   * on a run of this host alone, every rank of the plan (a rank may die before its Ready).
   */
  private ranksOn(host: string): { stage: number; rank: number }[] {
    if (!this.hub.remote && host === hostname()) {
      return this.plan.stages.flatMap((st, stage) => Array.from({ length: st.ranks }, (_, rank) => ({ stage, rank })));
    }
    return [...this.ranks]
      .filter(([, at]) => hostLabel(at.host, this.hub.hostNames) === host)
      .map(([key]) => key.split('/').map(Number))
      .sort((a, b) => a[0] - b[0] || a[1] - b[1])
      .map(([stage, rank]) => ({ stage, rank }));
  }

  /** The host of a stage's rank, by name where the run knows it (from Ready). */
  private hostOf(stage?: string, rank?: number): string | undefined {
    const s = this.plan.stages.findIndex((st) => st.name === stage);
    const r = this.ranks.get(`${s}/${rank}`);
    return r ? hostLabel(r.host, this.hub.hostNames) : undefined;
  }
}
