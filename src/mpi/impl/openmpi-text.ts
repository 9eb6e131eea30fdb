/**
 * Reading what Open MPI prints. Its help boxes and runtime notices are not the user's
 * business unless asked (--verbose): they go to the run's log. When a run dies with no
 * better word from the hub or a stage (a rank on another host, whose pid nobody here
 * can watch), they are also the only account of which process went first.
 */
import { constants } from 'node:os';
import type { Failure } from '../../errors.js';

import type { RingPlan } from '../../pipeline/model.js';

export const signalName = (n: number) => Object.entries(constants.signals).find(([, v]) => v === n)?.[0] ?? `signal ${n}`;

/** Under MPMD, world rank `world` (1 and up: 0 is the hub) as a stage index and its rank there. */
export function mpmdPlace(plan: RingPlan, world: number): { stage: number; rank: number } | undefined {
  let first = 1;
  for (const [s, st] of plan.stages.entries()) {
    if (world >= first && world < first + st.ranks) return { stage: s, rank: world - first };
    first += st.ranks;
  }
  return undefined;
}

/** A line-by-line classifier: true for Open MPI's own lines (it remembers open boxes). */
export function openMpiLines(): (line: string) => boolean {
  let inBox = false;
  return (line) => {
    if (/^-{20,}$/.test(line.trim())) {
      inBox = !inBox;
      return true;
    }
    if (inBox) return true;
    return (
      /^\[[^\]\s]+:\d+\]/.test(line) || // [host:pid] runtime notices and error-handler banners
      /^\[warn\] /.test(line) || // libevent, through mpirun
      /^ssh: /.test(line) || // the rsh launcher's ssh, passed on by Open MPI (read by unreachable())
      /^(mpirun|orterun|orted|Primary job|Child job|MPI_ABORT was invoked|\s*Process name:|\s*Exit code:)/.test(line) ||
      /^(a non-zero exit code|Per user-direction|with errorcode|You may or may not see output|NOTE: invoking MPI_ABORT)/.test(line)
    );
  };
}

/**
 * The host whose Open MPI daemon the job lost ("ORTE has lost communication with a remote
 * daemon ... Remote daemon: [[J,0],D] on node H"): a node that died, or its network. Its
 * ranks went with it, and every failure after that is the teardown.
 */
export function lostDaemonHost(lines: string[]): string | undefined {
  return /ORTE has lost communication with a remote daemon\.[\s\S]*?Remote daemon\s*: \S+ on node (\S+)/.exec(lines.join('\n'))?.[1];
}

/**
 * The first rank Open MPI says ended, as a Failure: "... process rank R with PID P on node
 * H exited on signal N (Name)". Under MPMD, R is the world rank (0 the hub, then each
 * stage's ranks in ring order); in spawn mode R is the rank in a stage's own job, and the
 * job is "Child job J" (J = stage index + 2: the hub's own job and its daemon come first).
 * Open MPI 4.1 may print PID 0, so the rank decides, not the pid.
 */
export function failureFromOpenMpi(lines: string[], plan: RingPlan, launch: 'spawn' | 'mpmd'): Failure | undefined {
  const text = lines.join('\n');
  const m = /process rank (\d+) with PID \d+ on node (\S+?)\.? exited on signal (\d+) \(([^)]+)\)/.exec(text);
  if (!m) return undefined;
  let stage: number | undefined;
  let rank = Number(m[1]);
  if (launch === 'mpmd') {
    if (rank === 0) return { reason: 'killed', host: m[2], detail: `the hub was killed by ${signalName(Number(m[3]))} (reported by Open MPI)` };
    ({ stage, rank } = mpmdPlace(plan, rank) ?? { rank });
  } else {
    const job = /Child job (\d+) terminated/.exec(text);
    if (job) stage = Number(job[1]) - 2;
  }
  const st = stage === undefined ? undefined : plan.stages[stage];
  if (!st) return undefined;
  return { stage: st.name, rank, host: m[2], reason: 'killed', detail: `was killed by ${signalName(Number(m[3]))} (reported by Open MPI)` };
}
