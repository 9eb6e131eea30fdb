/**
 * What one MPI implementation must say of itself (issue 28): the interface each file of this
 * folder fills (openmpi.ts, mpich.ts), and its types. index.ts picks one for a run.
 */
import type { Failure } from '../../errors.js';
import type { RingPlan } from '../../pipeline/model.js';
import type { Wire, WireContext } from '../wire.js';

export type MpiName = 'openmpi' | 'mpich';
export type MpiRequest = 'auto' | MpiName;
export const MPI_REQUESTS: readonly MpiRequest[] = ['auto', 'openmpi', 'mpich'];

/**
 * Which MPI every process of a run uses (the addon it loads, the C worker it starts), set by
 * whoever starts the run's processes; unset means Open MPI, the first this project ran on.
 */
export const MPI_ENV = 'COMMLOOP_MPI';

/** One program of an MPMD launch: its process count, command, arguments and working directory. */
export interface App {
  np: number;
  cmd: string;
  args: string[];
  cwd?: string;
}

/** How a launcher's text names a failed rank: by world rank (Open MPI) or by pid and host (MPICH's Hydra). */
export interface TextContext {
  plan: RingPlan;
  launch: 'spawn' | 'mpmd';
  /** The stage and rank of a pid on a host, as the ranks' Ready said. */
  rankOfPid(pid: number, host: string): { stage: number; rank: number } | undefined;
  /** The stages' ranks on a host in world-rank order (stage, then rank): as the ranks' Ready said, or on a one-host run every rank. */
  ranksOn(host: string): { stage: number; rank: number }[];
}

export interface MpiImpl {
  readonly name: MpiName;
  /** As people write it: "Open MPI", "MPICH". */
  readonly title: string;
  /** The MPI addon built against it (build/Release/NAME.node). */
  readonly addon: string;
  /** The native C stage built with its mpicc (dist/NAME). */
  readonly cWorker: string;
  /** Its C compiler wrapper: user C stages over MPI and the SDK's exec stages are built with it. */
  readonly mpicc: string;
  /** The Debian packages that bring it. */
  readonly packages: string;
  /**
   * How an MPMD hub talks to its supervisor: `stdio`, rank 0's stdin and stdout, which the
   * launcher forwards (to a hub on another host too); `fifo`, two named pipes on this host,
   * where the launcher's forwarding loses the hub's last words when a rank dies.
   */
  readonly mpmdChannel: 'stdio' | 'fifo';
  /** The environment variable its launcher gives each MPMD rank its world rank in. */
  readonly worldRankEnv: string;
  /** The process its MPMD launcher starts a host's ranks under, if any (Hydra's proxy): the ranks are its children. */
  readonly rankParent?: RegExp;
  /** Its launcher SIGKILLs every other rank within milliseconds of the first death (Hydra): ranks gone together say nothing of which went first. */
  readonly killsAllAtOnce: boolean;
  /** The MPMD launcher (mpirun, mpiexec): its path where installed, else the bare name. */
  launcher(): string;
  /** Whether its launcher and compiler are installed. */
  installed(): boolean;
  /** Fills in what its processes need in `env` (the user's settings win). */
  environment(local: boolean, env: NodeJS.ProcessEnv): void;
  /** What the run's messages travel on (src/mpi/wire.ts has the types). */
  chooseWire(c: WireContext): Wire;
  /** The launcher's arguments for the hub and every stage in one job; `passEnv` must reach every rank. */
  mpmdArgs(apps: App[], spawnInfo: Record<string, string>, passEnv: string[]): string[];
  /** Whether MPI_Comm_spawn works here: found by trying (cached), not by the version. */
  spawns(): boolean;
  /** A classifier of the hub's stderr: true for the MPI's own lines (to the run's log, not the user). */
  ownLines(): (line: string) => boolean;
  /** The first rank its launcher says died, if its text says so. */
  failureFromText(lines: string[], c: TextContext): Failure | undefined;
  /** A host whose daemon the job lost (a node gone), if its text says so. */
  lostHost(lines: string[]): string | undefined;
  /** What marks a rank's process as one of a run's (read from its environment), for its leftovers; undefined for none. */
  runMark(pid: number): string | undefined;
  /** Removes what the runs of these marks left on this host (shared-memory files); returns their names. */
  removeLeftovers(marks: Set<string>): string[];
}
