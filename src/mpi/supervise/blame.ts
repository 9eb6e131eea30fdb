/**
 * Which failure a failed MPI run reports: the first one, not what the runtime tore down
 * after it. Every account the supervisor has of a run's end comes here, and this is the
 * one place that ranks them. Why each rule, measured on this machine:
 * - A stage's own report (docs/PROTOCOL.md, `commloop-fail:`, written before the rank
 *   aborts or its crash ends it) names the cause itself.
 * - A host ssh could not reach is the cause of whatever failed at start-up.
 * - mpirun or the hub process killed by a signal from outside: its ranks die after it (the
 *   start-up watch saw one go), and a rank's death makes mpirun exit with a code, not a signal.
 * - The hub's own findings that need no death (a deadline, a wrong count, the stage's code
 *   failing) are first: the hub kills the ranks after them, and Open MPI then reports those.
 * - Deaths are where the hub's view and Open MPI's differ. When a rank dies, Open MPI takes
 *   the rest down: local ranks get SIGTERM, a daemon that gives up exits with a code, ranks
 *   that lose their daemon exit 195, a spawn in progress fails (MPI_ERR_INTERN), an MPI
 *   call mid-step fails; the hub sees whichever of those comes first. Open MPI's own notice
 *   ("process rank R ... exited on signal N") names the first death, and wins over any of
 *   them. A rank the hub saw killed by any other signal, or exit with its own code, was seen
 *   directly and is kept.
 * - A rank seen going during start-up (StartupWatch) wins over the ranks killed after it,
 *   and over an MPI's account that names only the host (impl/mpich.ts).
 * - A deadline's failure is not outranked by the deaths of its own teardown (isDeadline).
 */
import type { Failure } from '../../errors.js';

/**
 * A failure that a deadline named (a start that did not answer, a step that did not return,
 * a hub gone silent): whatever Open MPI reports dying after it is the teardown that the
 * deadline started, and the supervisor reads Open MPI's account only up to it
 * (supervision.ts). Seen on the Slurm bed: a start that hung, then 'stage "where" rank 0
 * on n1: was killed by SIGKILL (reported by Open MPI)', the kill being our own.
 */
export function isDeadline(f: Failure): boolean {
  return f.reason === 'timeout' || /\bwithin \d+ ms\b/.test(f.detail);
}

export interface Accounts {
  /** The stages' own reports, in the order they came. */
  stages: Failure[];
  /** A launch host that could not be reached (start-up only). */
  lostHost?: Failure;
  /** mpirun or the hub process killed by a signal the supervisor did not send. */
  launcher?: Failure;
  /** What the hub (or its watchdog, or the supervisor's deadlines) reported first. */
  hub?: Failure;
  /** Open MPI's account of the first rank that died (openmpi-text.ts). */
  openMpi?: Failure;
  /** The first rank the start-up watch saw go. */
  startup?: Failure;
}

/** The hub's failure is a consequence of a death Open MPI caused or noticed, not a cause. */
function tornDown(f: Failure): boolean {
  if (f.reason === 'killed') return /killed by SIGTERM/.test(f.detail);
  if (f.reason === 'exited') return /exited with code 195\b/.test(f.detail) || (f.stage === undefined && /^Open MPI's daemon .* exited with code/.test(f.detail));
  return f.reason === 'start' || f.reason === 'protocol';
}

/** The first failure of the run, or undefined when no account names one. */
export function firstFailure(a: Accounts): Failure | undefined {
  if (a.stages[0]) return a.stages[0];
  if (a.lostHost) return a.lostHost;
  if (a.launcher) return a.launcher;
  const hub = a.hub;
  if (hub && !tornDown(hub) && hub.reason !== 'killed' && hub.reason !== 'exited') return hub;
  if (hub && tornDown(hub) && a.openMpi) return a.openMpi;
  // A death during start-up, before the hub knew the ranks: what it then saw killed is the teardown.
  const st = a.startup;
  if (st && hub?.reason === 'killed' && (hub.stage !== st.stage || hub.rank !== st.rank)) return st;
  // An account that names a host but not the rank (MPICH's, when its cleanup's SIGKILLs hide which) yields to a rank seen going.
  if (st && a.openMpi && a.openMpi.stage === undefined) return hub ?? st;
  return hub ?? a.openMpi ?? st;
}
