/**
 * One seam per MPI (issue 28): what is one MPI implementation's own, behind one interface
 * that each implementation fills in a file of its own (openmpi.ts, mpich.ts). The rest of
 * src/mpi speaks MPI through the addon (built once for each MPI found, build.sh) and asks
 * the run's MpiImpl for what differs: the launcher and its command line, the environment
 * and the wire, what the launcher prints, what a killed run leaves behind, whether
 * MPI_Comm_spawn works. Adding the next MPI (Intel MPI, a 5.x with the standard ABI) is one
 * more file here and its line in IMPLS.
 */
import { existsSync, realpathSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { Failure } from '../../errors.js';
import { UsageError } from '../../errors.js';
import type { RingPlan } from '../../pipeline/model.js';
import type { Wire, WireContext } from '../wire.js';
import { openMpi } from './openmpi.js';
import { mpich } from './mpich.js';

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

const IMPLS: Record<MpiName, MpiImpl> = { openmpi: openMpi, mpich };

export function mpiImpl(name: MpiName): MpiImpl {
  return IMPLS[name];
}

/** The MPI of this process's run (MPI_ENV), for the hub and the stage processes. */
export function runMpi(env: NodeJS.ProcessEnv = process.env): MpiImpl {
  const name = env[MPI_ENV];
  return name === 'mpich' ? mpich : openMpi;
}

/**
 * The MPI a run uses: the one asked for, or with `auto` the one `mpiexec` on PATH belongs to
 * (its real path names it: Debian's alternatives end in mpiexec.openmpi or mpiexec.hydra),
 * else the first installed, Open MPI first. Throws a UsageError saying what to install when
 * the one asked for is not installed or its addon is not built.
 */
export function chooseMpi(request: MpiRequest, env: NodeJS.ProcessEnv = process.env, built: (impl: MpiImpl) => boolean = () => true): { impl: MpiImpl; why: string } {
  if (!MPI_REQUESTS.includes(request)) throw new UsageError(`mpi must be one of ${MPI_REQUESTS.join(', ')} (got ${JSON.stringify(request)})`);
  let impl: MpiImpl;
  let why: string;
  if (request !== 'auto') {
    impl = IMPLS[request];
    why = `--mpi ${request}`;
  } else {
    const onPath = mpiexecOnPath(env);
    const owner = onPath && Object.values(IMPLS).find((m) => m.name === ownerOf(onPath));
    if (owner && owner.installed()) {
      impl = owner;
      why = `auto: mpiexec on PATH is ${owner.title}'s (${onPath})`;
    } else {
      impl = Object.values(IMPLS).find((m) => m.installed()) ?? openMpi;
      why = `auto: ${onPath ? `mpiexec on PATH (${onPath}) is neither's; ` : 'no mpiexec on PATH; '}${impl.title} is installed`;
    }
  }
  if (!impl.installed()) throw new UsageError(`--mpi ${impl.name}: ${impl.title} is not installed (apt-get install -y ${impl.packages})`);
  if (!built(impl)) throw new UsageError(`--mpi ${impl.name}: commloop's addon for ${impl.title} is not built (bash build.sh builds one for each MPI installed)`);
  return { impl, why };
}

/** The real path of `mpiexec` as PATH finds it, or undefined. */
function mpiexecOnPath(env: NodeJS.ProcessEnv): string | undefined {
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    const p = join(dir, 'mpiexec');
    if (!dir || !existsSync(p)) continue;
    try {
      return realpathSync(p);
    } catch {
      return p;
    }
  }
  return undefined;
}

/** Which MPI a launcher's real path belongs to. */
function ownerOf(path: string): MpiName | undefined {
  if (/openmpi|orterun|prterun/.test(path)) return 'openmpi';
  if (/mpich|hydra/.test(path)) return 'mpich';
  return undefined;
}
