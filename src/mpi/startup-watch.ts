/**
 * The ranks of a local MPMD run while it starts, watched from the supervisor. A rank that
 * dies before Open MPI has registered it (its first milliseconds) ends the job with no
 * account at all: mpirun prints only "1 process returned a non-zero exit code" and exits
 * 128+signal, and the hub, blocked in its first collective, never learns who. So until
 * the hub's Ready the supervisor looks at mpirun's children itself (every 20 ms, a few
 * small /proc reads) and keeps the first rank it saw go.
 *
 * Only for runs without --host/--hostfile: then every rank is a child of mpirun on this
 * host, and orted starts them in world-rank order, so a rank missing below one that is
 * there has already died (even if it died before any look saw it).
 */
import { readFileSync, readdirSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Failure } from '../errors.js';
import type { RingPlan } from '../pipeline/model.js';
import { mpmdPlace, signalName } from './openmpi-text.js';

/** How often the watch looks while the run starts. */
export const STARTUP_LOOK_MS = 20;
/** A rank seen dead this long ago, and mpirun has not ended the job: it is ended and reported. */
export const DEATH_GRACE_MS = 3_000;

interface Death {
  world: number;
  pid?: number;
  at: number;
}

/** The pids of `pid`'s children, from every thread's children list ([] once it is gone). */
function children(pid: number): number[] {
  try {
    const out: number[] = [];
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      const text = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim();
      if (text) out.push(...text.split(' ').map(Number));
    }
    return out;
  } catch {
    return [];
  }
}

/** OMPI_COMM_WORLD_RANK from a process's environment (undefined: not a rank, or not yet exec'd). */
function worldRank(pid: number): number | undefined {
  try {
    const m = /(?:^|\0)OMPI_COMM_WORLD_RANK=(\d+)\0/.exec(readFileSync(`/proc/${pid}/environ`, 'latin1'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** A process that is there and not a zombie. */
function alive(pid: number): boolean {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s[s.lastIndexOf(')') + 2] !== 'Z';
  } catch {
    return false;
  }
}

export class StartupWatch {
  /** World rank -> pid, for every rank seen alive. */
  private readonly seen = new Map<number, number>();
  private readonly ranks: number;
  first?: Death;

  constructor(private readonly plan: RingPlan) {
    this.ranks = plan.stages.reduce((n, st) => n + st.ranks, 0);
  }

  /** One look at mpirun's children; notes the first rank found gone. */
  look(mpirun: number, now: number): void {
    if (this.first) return;
    const here = new Set<number>();
    let unnamed = false; // a child not yet exec'd (its environment is still mpirun's)
    for (const pid of children(mpirun)) {
      if (!alive(pid)) continue;
      const world = [...this.seen].find(([, p]) => p === pid)?.[0] ?? worldRank(pid);
      if (world === undefined) unnamed = true;
      else if (world !== 0) {
        this.seen.set(world, pid);
        here.add(world);
      }
    }
    for (const [world, pid] of this.seen) {
      if (!here.has(world)) return this.died(world, pid, now);
    }
    // Never seen, yet a later rank is there and every child is named: it was started and is gone.
    if (unnamed || here.size === 0) return;
    const highest = Math.max(...here);
    for (let world = 1; world < Math.min(highest, this.ranks + 1); world++) {
      if (!here.has(world)) return this.died(world, undefined, now);
    }
  }

  private died(world: number, pid: number | undefined, at: number): void {
    this.first = { world, pid, at };
  }

  /**
   * The first rank seen gone, as a Failure. `mpirunCode`, when mpirun has exited, is its
   * code: 128+N when the first rank to fail was killed by signal N.
   */
  failure(mpirunCode?: number | null): Failure | undefined {
    const d = this.first;
    const place = d && mpmdPlace(this.plan, d.world);
    if (!place) return undefined;
    const signalled = Boolean(mpirunCode && mpirunCode > 128);
    const how = signalled ? `was killed by ${signalName(mpirunCode! - 128)}` : 'died';
    const which = d.pid ? `pid ${d.pid}` : 'before its pid was seen';
    return {
      stage: this.plan.stages[place.stage].name,
      rank: place.rank,
      host: hostname(),
      reason: signalled ? 'killed' : 'exited',
      detail: `${how} during start-up (${which})`,
    };
  }
}
