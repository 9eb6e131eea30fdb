/**
 * Where an MPI run's ranks go, and the launch mode that follows from it, decided in this one
 * place before anything starts: the hosts of --host/--hostfile, or the nodes of a Slurm
 * allocation (slurm.ts), else this host alone.
 *
 * `--launch auto` (the default) picks spawn mode where every rank is on this host and MPMD
 * where the ranks span several hosts. Why: Open MPI 4.1's MPI_Comm_spawn across daemons hangs
 * at start-up now and then (a child rank stuck in ompi_mpi_init; docs/CLUSTERS.md has the
 * counts), one mpirun holding every app context never did, and on one host spawn mode is the
 * faster wire (UCX shared memory, wire.ts).
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { slurmAllocation, type SlurmAllocation } from './slurm.js';
import { UsageError } from '../../errors.js';
import type { MpiImpl } from '../impl/index.js';

export type LaunchMode = 'spawn' | 'mpmd';
export type LaunchRequest = 'auto' | LaunchMode;
export const LAUNCH_REQUESTS: readonly LaunchRequest[] = ['auto', 'spawn', 'mpmd'];

export interface Placement {
  /** The run has hosts of its own (--host, --hostfile, a Slurm allocation of several nodes): no loopback-only TCP. */
  remote: boolean;
  /** The hosts of --host and the hostfile, by name, in order (empty without them). */
  listed: string[];
  /** The Slurm allocation the run is in, if any. */
  alloc?: SlurmAllocation;
  /** The spawn keys the run uses: the caller's, with map_by=node inside an allocation of several nodes. */
  spawnInfo: Record<string, string>;
  /** The hosts other than this one that ranks may go to (what makes a run span several hosts). */
  others: string[];
}

/** This host's own names: a hostfile or --host naming only these keeps the run on one host. */
function isThisHost(name: string): boolean {
  return name === hostname() || name === 'localhost' || /^127\./.test(name) || name === '::1';
}

export function placementOf(spawnInfo: Record<string, string>, env: NodeJS.ProcessEnv = process.env): Placement {
  const listed = listedHosts(spawnInfo);
  const given = Boolean(spawnInfo.host || spawnInfo.hostfile);
  // Inside an allocation of several nodes, Open MPI's own Slurm support finds them; every
  // stage's ranks go round the nodes (a spawn from the batch node would fill it first and
  // fail for slots).
  const alloc = slurmAllocation(env);
  const spread = !given && alloc !== undefined && alloc.nodes.length > 1;
  const info = spread && !spawnInfo.map_by ? { ...spawnInfo, map_by: 'node' } : spawnInfo;
  const others = (given ? listed : spread ? alloc!.nodes : []).filter((h) => !isThisHost(h));
  return { remote: given || spread, listed, alloc, spawnInfo: info, others };
}

/** The launch mode a run gets, and why (shown in -g, --json and the result). */
export function chooseLaunch(request: LaunchRequest, where: Placement, mpi?: Pick<MpiImpl, 'title' | 'name' | 'spawns'>): { launch: LaunchMode; why: string } {
  // An MPI whose MPI_Comm_spawn fails here (Debian's MPICH: ch4:ucx) runs MPMD; found by trying.
  if (request === 'spawn' && mpi && !mpi.spawns()) {
    throw new UsageError(`--launch spawn: ${mpi.title} here cannot spawn (MPI_Comm_spawn was tried and refused); use --launch mpmd or auto`);
  }
  if (request !== 'auto') return { launch: request, why: `--launch ${request}` };
  if (mpi && !mpi.spawns()) return { launch: 'mpmd', why: `auto: ${mpi.title} here cannot spawn (MPI_Comm_spawn refused)` };
  if (where.others.length === 0) return { launch: 'spawn', why: 'auto: every rank on this host' };
  const what = where.alloc && !where.listed.length ? `the Slurm allocation's ${where.alloc.nodes.length} nodes` : `${where.others.length} other host${where.others.length > 1 ? 's' : ''}`;
  return { launch: 'mpmd', why: `auto: ranks on ${what}` };
}

/** The hosts of --host and the hostfile, by name, in order. */
export function listedHosts(info: Record<string, string>): string[] {
  const names: string[] = [];
  if (info.host) names.push(...info.host.split(',').map((h) => h.split(':')[0]));
  if (info.hostfile) {
    try {
      for (const line of readFileSync(info.hostfile, 'utf8').split('\n')) {
        const name = line.replace(/#.*/, '').trim().split(/\s+/)[0];
        if (name) names.push(name);
      }
    } catch {
      // the hub reports an unreadable hostfile itself
    }
  }
  return [...new Set(names)];
}
