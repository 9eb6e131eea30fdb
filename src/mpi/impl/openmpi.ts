/**
 * Open MPI (4.1 here, Debian's openmpi-bin): the MPI this project first ran on. Its wire
 * (openmpi-wire.ts) and its text (openmpi-text.ts) have files of their own; the rest of
 * what is its own is here: the environment its processes need, mpirun's MPMD command line,
 * and the shared-memory files of a killed job.
 */
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { App, MpiImpl } from './mpi-impl.js';
import { chooseWire } from './openmpi-wire.js';
import { failureFromOpenMpi, lostDaemonHost, openMpiLines } from './openmpi-text.js';

const MPIRUN = '/usr/bin/mpirun.openmpi';
const SHM_DIR = '/dev/shm';

/**
 * Defaults Open MPI needs for a singleton master, or for our MPMD mpirun, on one small
 * machine; the user's environment wins. Must reach MPI before MPI_Init (or mpirun) reads it.
 */
function environment(local: boolean, env: NodeJS.ProcessEnv): void {
  const defaults: Record<string, string> = {
    // Without it even 2 spawned ranks fail on 2 cores: the singleton counts one slot per core.
    OMPI_MCA_rmaps_base_oversubscribe: '1',
    // Oversubscribed ranks that spin starve each other; yielding measured 3x faster here.
    OMPI_MCA_mpi_yield_when_idle: '1',
  };
  // Spawned jobs meet over TCP; on one machine, loopback only.
  if (local) defaults.OMPI_MCA_btl_tcp_if_include = 'lo';
  if (process.getuid?.() === 0) {
    defaults.OMPI_ALLOW_RUN_AS_ROOT = '1';
    defaults.OMPI_ALLOW_RUN_AS_ROOT_CONFIRM = '1';
  }
  for (const [k, v] of Object.entries(defaults)) env[k] ??= v;
}

/**
 * The Open MPI job family of a process (jobid >> 16: every job of one mpirun, or of one
 * singleton hub and the stages it spawns, shares it), or undefined for a process that is
 * not a rank or is gone.
 */
function jobFamily(pid: number): number | undefined {
  try {
    const env = readFileSync(`/proc/${pid}/environ`, 'latin1');
    const job = /(?:^|\0)OMPI_MCA_ess_base_jobid=(\d+)\0/.exec(env);
    return job ? Number(job[1]) >>> 16 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Removes this host's vader segments of the given job families (named
 * vader_segment.HOST.UID.JOBID-in-hex.LOCALRANK by Open MPI 4.1); returns their names.
 */
function removeSegments(families: Set<number>, dir = SHM_DIR): string[] {
  if (families.size === 0) return [];
  const prefix = `vader_segment.${hostname()}.${process.getuid?.() ?? 0}.`;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const jobid = Number.parseInt(name.slice(prefix.length).split('.')[0], 16);
    if (!Number.isFinite(jobid) || !families.has(jobid >>> 16)) continue;
    rmSync(join(dir, name), { force: true });
    removed.push(name);
  }
  return removed;
}

/** mpirun's arguments: `[--hostfile F | --host H] [--map-by M] -x VAR... -np N1 app1 : -np N2 app2 ...`. */
function mpmdArgs(apps: App[], spawnInfo: Record<string, string>, passEnv: string[]): string[] {
  const args: string[] = [];
  if (spawnInfo.hostfile) args.push('--hostfile', spawnInfo.hostfile);
  if (spawnInfo.host) args.push('--host', spawnInfo.host);
  if (spawnInfo.map_by) args.push('--map-by', spawnInfo.map_by);
  for (const name of passEnv) args.push('-x', name);
  apps.forEach((app, k) => {
    if (k) args.push(':');
    args.push('-np', String(app.np), ...(app.cwd ? ['-wdir', app.cwd] : []), app.cmd, ...app.args);
  });
  return args;
}

export const openMpi: MpiImpl = {
  name: 'openmpi',
  title: 'Open MPI',
  addon: 'commloop_mpi',
  cWorker: 'commloop_c_worker',
  mpmdChannel: 'stdio',
  worldRankEnv: 'OMPI_COMM_WORLD_RANK',
  // Its teardown is slower: SIGTERM to the local ranks, daemons that give up (blame.ts).
  killsAllAtOnce: false,
  mpicc: 'mpicc.openmpi',
  packages: 'openmpi-bin libopenmpi-dev',
  launcher: () => (existsSync(MPIRUN) ? MPIRUN : 'mpirun'),
  installed: () => existsSync(MPIRUN),
  environment,
  chooseWire,
  mpmdArgs,
  spawns: () => true,
  ownLines: openMpiLines,
  failureFromText: (lines, c) => failureFromOpenMpi(lines, c.plan, c.launch),
  lostHost: lostDaemonHost,
  runMark(pid) {
    const family = jobFamily(pid);
    return family === undefined ? undefined : String(family);
  },
  removeLeftovers: (marks) => removeSegments(new Set([...marks].map(Number))),
};
