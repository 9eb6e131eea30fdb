/**
 * The deadlines of a supervised MPI run (supervisor.ts), in one place: every WATCH_MS the
 * supervisor asks the rules of DEADLINES, in order, and the first that names a failure
 * ends the run. A rule reads the run's clock and returns the failure its passing deadline
 * means, or undefined. Apart from supervision.ts so that each timing of the supervisor is
 * one small named rule, and a new phase adds its deadline as one more entry of the list.
 * They run in the caller's process, which no stage's code can stall.
 */
import type { Failure } from '../../errors.js';
import { STOP_GRACE_MS } from '../../transport.js';
import { unreachable } from './reach.js';
import { DEATH_GRACE_MS, type StartupWatch } from './startup-watch.js';

/** How often the deadlines are looked at. */
export const WATCH_MS = 100;
/** After a failure or the result, how long the hub and its job get to be gone. */
const EXIT_GRACE_MS = 10_000;
/** Beyond the hub's own per-call deadline: node and mpirun starting, a slow host. */
const START_SLACK_MS = 2_000;
/**
 * With other hosts, after the hub's failure: how long Open MPI gets to take the job down
 * before the supervisor does. Its abort waits on every daemon, and one behind a partition
 * never answers; the daemons that outlive mpirun end when they lose it.
 */
const REMOTE_FAIL_GRACE_MS = 1_000;
/**
 * The hub's watchdog pulses every 500 ms; with none for this long past the timeout (at least
 * 1 s), the hub or its host is lost: a partition, with the hub on the far side.
 */
const PULSE_SLACK_MS = 1_500;

/** What the rules read of a run (Supervision); times in ms since the epoch, 0 for not yet. */
export interface RunClock {
  /** When the hub was started. */
  readonly t0: number;
  /** The hub's last message other than a pulse (t0 until its first). */
  readonly lastWord: number;
  /** The last pulse of the hub's watchdog, and the host it came from. */
  readonly lastPulse: number;
  readonly hubHost: string;
  /** The hub's Ready: every stage started. */
  readonly readyAt: number;
  /** The caller asked the run to stop. */
  readonly abortedAt: number;
  readonly timeoutMs: number;
  readonly stageCount: number;
  /** The hosts of --host/--hostfile, and those whose launch was still running at the last look. */
  readonly launchHosts: readonly string[];
  readonly launching: readonly string[];
  /** Open MPI's lines so far. */
  readonly noise: readonly string[];
  /** A local run's ranks, watched until Ready. */
  readonly startup?: StartupWatch;
}

export type Deadline = (run: RunClock, now: number) => Failure | undefined;

/** Asked to stop, and the hub neither finished the step nor shut down: a stage hangs. */
const stopIgnored: Deadline = (run, now) =>
  run.abortedAt && now - run.abortedAt > STOP_GRACE_MS + EXIT_GRACE_MS
    ? { reason: 'timeout', detail: `stopped by signal; the run did not stop within ${STOP_GRACE_MS + EXIT_GRACE_MS} ms` }
    : undefined;

/** The hub's watchdog pulsed and then fell silent: the hub's host, or the way to it, is gone. */
const hubLost: Deadline = (run, now) =>
  run.lastPulse && now - run.lastPulse > Math.max(run.timeoutMs, 1_000) + PULSE_SLACK_MS
    ? {
        reason: 'timeout',
        host: run.hubHost,
        detail: `the hub on ${run.hubHost} fell silent for ${now - run.lastPulse} ms: the host or the network to it is down`,
      }
    : undefined;

/** Before Ready, a rank died and mpirun has not ended the job: the hub would wait for it until its deadline. */
const deathAtStart: Deadline = (run, now) =>
  !run.readyAt && run.startup?.first && now - run.startup.first.at > DEATH_GRACE_MS ? run.startup.failure() : undefined;

/** The stages did not start in time: a host that cannot be reached, or else the start itself. */
const notStarted: Deadline = (run, now) => {
  if (!run.readyAt && now - run.t0 > run.timeoutMs + START_SLACK_MS) {
    const where = run.launchHosts.length ? ` on ${run.launchHosts.join(', ')} (is every host reachable, by ssh too?)` : '';
    return unreachable(run.noise, run.launching, run.timeoutMs) ?? { reason: 'start', detail: `the stages did not start within ${run.timeoutMs} ms${where}` };
  }
  return undefined;
};

/** After Ready, no word from the hub for longer than every stage's step and one more could take. */
const hubMute: Deadline = (run, now) =>
  run.readyAt && now - run.lastWord > (run.stageCount + 1) * run.timeoutMs + START_SLACK_MS
    ? { reason: 'timeout', detail: `the hub stopped answering for ${now - run.lastWord} ms` }
    : undefined;

/** In order: the first that names a failure wins. */
export const DEADLINES: readonly Deadline[] = [stopIgnored, hubLost, deathAtStart, notStarted, hubMute];

/** The failure of the first deadline that has passed, or undefined. */
export function overdue(run: RunClock, now: number): Failure | undefined {
  for (const rule of DEADLINES) {
    const late = rule(run, now);
    if (late) return late;
  }
  return undefined;
}

/** Once the result or a failure is in: how long the hub and its job get to be gone before they are killed. */
export function exitGraceMs(remote: boolean, failed: boolean): number {
  return remote && failed ? REMOTE_FAIL_GRACE_MS : EXIT_GRACE_MS;
}
