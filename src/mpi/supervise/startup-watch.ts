/**
 * The ranks of a local run while it starts, watched from the supervisor. A rank that dies
 * before Open MPI has registered it (its first milliseconds) ends the job with no account
 * of who: under MPMD mpirun prints only "1 process returned a non-zero exit code" and exits
 * 128+signal (or, rarely, never ends the job); in spawn mode the hub, which knows a stage's
 * pids only from its Ready, sees the ranks Open MPI then tears down and would blame one of
 * them. So until the hub's Ready the supervisor looks at the launcher's children itself
 * (mpirun, or the orted below the spawn-mode hub; every 20 ms, a few small /proc reads)
 * and keeps the first rank it saw go.
 *
 * Only for runs without --host/--hostfile: then every rank is a child of the launcher on
 * this host, which starts a job's ranks in rank order (MPMD: in world-rank order), so a
 * rank missing below one that is there has died, even if no look saw it alive.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Failure } from '../../errors.js';
import type { RingPlan } from '../../pipeline/model.js';
import { mpmdPlace, signalName } from '../impl/openmpi-text.js';
import { alive, children, cmdline } from './procs.js';
import type { MpiImpl } from '../impl/mpi-impl.js';

/** How often the watch looks while the run starts. */
export const STARTUP_LOOK_MS = 20;
/** A rank seen dead this long ago, and mpirun has not ended the job: it is ended and reported. */
export const DEATH_GRACE_MS = 3_000;

/** A rank, placed: its stage and rank there; `group` and `order` say where it comes in its launcher's start order. */
interface Place {
  stage: number;
  rank: number;
  group: number;
  order: number;
}

interface Death extends Place {
  pid?: number;
  at: number;
}

/**
 * Where a rank process belongs, from the environment its launcher gave it (undefined: not a
 * rank, or not yet exec'd). MPMD: OMPI_COMM_WORLD_RANK is the world rank (0 the hub); spawn
 * mode: every stage is a job of its own, local job id = stage index + 2.
 */
function placeOf(plan: RingPlan, launch: 'spawn' | 'mpmd', pid: number, worldRankEnv: string): Place | 'hub' | undefined {
  let env: string;
  try {
    env = readFileSync(`/proc/${pid}/environ`, 'latin1');
  } catch {
    return undefined;
  }
  const rank = new RegExp(`(?:^|\\0)${launch === 'mpmd' ? worldRankEnv : 'OMPI_COMM_WORLD_RANK'}=(\\d+)\\0`).exec(env);
  if (!rank) return undefined;
  if (launch === 'mpmd') {
    const world = Number(rank[1]);
    const at = mpmdPlace(plan, world);
    return world === 0 ? 'hub' : at && { ...at, group: 0, order: world };
  }
  const job = /(?:^|\0)OMPI_MCA_ess_base_jobid=(\d+)\0/.exec(env);
  const stage = job ? (Number(job[1]) & 0xffff) - 2 : -1;
  return plan.stages[stage] && { stage, rank: Number(rank[1]), group: stage, order: Number(rank[1]) };
}

export class StartupWatch {
  /** Rank key -> its place and pid, for every rank seen alive. */
  private readonly seen = new Map<string, Place & { pid: number }>();
  /** Every rank process seen, named or not yet: the supervisor records them (a launcher killed before Ready orphans them). */
  readonly pids = new Set<number>();
  /** The orted that starts a spawn-mode run's ranks (a child of the hub). */
  private launcher = 0;
  first?: Death;
  /** The watch saw nothing it could tell apart and stopped looking. */
  private stopped = false;

  constructor(
    private readonly plan: RingPlan,
    private readonly launch: 'spawn' | 'mpmd',
    private readonly mpi: Pick<MpiImpl, 'worldRankEnv' | 'rankParent' | 'killsAllAtOnce'>,
  ) {}

  /** One look at the ranks below `top` (mpirun, or the spawn-mode hub); notes the first rank found gone. */
  look(top: number, now: number): void {
    if (this.first || this.stopped) return;
    if (this.launch === 'spawn') {
      this.launcher ||= children(top).find((pid) => /(^|\/)orted$/.test(cmdline(pid)[0] ?? '')) ?? 0;
      if (!this.launcher) return;
    }
    const here = new Map<string, Place>();
    let unnamed = false; // a child not yet exec'd: its environment is still its launcher's
    // Under Hydra the ranks are its proxy's children, not the launcher's.
    const proxy = this.mpi.rankParent && children(top).find((pid) => this.mpi.rankParent!.test(cmdline(pid)[0] ?? ''));
    for (const pid of children(this.launcher || proxy || top)) {
      if (!alive(pid)) continue;
      this.pids.add(pid);
      const known = [...this.seen.values()].find((p) => p.pid === pid);
      const place = known ?? placeOf(this.plan, this.launch, pid, this.mpi.worldRankEnv);
      if (place === undefined) unnamed = true;
      else if (place !== 'hub') {
        const key = `${place.stage}/${place.rank}`;
        this.seen.set(key, { ...place, pid });
        here.set(key, place);
      }
    }
    const gone = [...this.seen].filter(([key]) => !here.has(key));
    // Hydra's cleanup SIGKILLs every rank within milliseconds of the first death: several gone
    // between two looks say nothing of which went first, and the watch stops (MPICH's exit
    // statuses then name the host and the ranks it may be).
    if (gone.length > 1 && this.mpi.killsAllAtOnce) {
      this.stopped = true;
      return;
    }
    if (gone.length) return this.died(gone[0][1], gone[0][1].pid, now);
    // Never seen, yet a rank started after it is there and every child is named: it was
    // started and is gone (a launcher starts a job's ranks in order, MPMD's in world order).
    if (unnamed) return;
    const groups = new Map<number, number>();
    for (const p of here.values()) groups.set(p.group, Math.max(groups.get(p.group) ?? -1, p.order));
    for (const [group, highest] of groups) {
      for (let order = this.launch === 'mpmd' ? 1 : 0; order < highest; order++) {
        const place = this.launch === 'mpmd' ? mpmdPlace(this.plan, order) : { stage: group, rank: order };
        if (place && !here.has(`${place.stage}/${place.rank}`)) return this.died({ ...place, group, order }, undefined, now);
      }
    }
  }

  private died(place: Place, pid: number | undefined, at: number): void {
    this.first = { ...place, pid, at };
  }

  /**
   * The first rank seen gone, as a Failure. `mpirunCode`, when mpirun has exited, is its
   * code: 128+N when the first rank to fail was killed by signal N.
   */
  failure(mpirunCode?: number | null): Failure | undefined {
    const d = this.first;
    if (!d) return undefined;
    const signalled = this.launch === 'mpmd' && Boolean(mpirunCode && mpirunCode > 128);
    const how = signalled ? `was killed by ${signalName(mpirunCode! - 128)}` : 'died';
    const which = d.pid ? `pid ${d.pid}` : 'before its pid was seen';
    return {
      stage: this.plan.stages[d.stage].name,
      rank: d.rank,
      host: hostname(),
      reason: signalled ? 'killed' : 'exited',
      detail: `${how} during start-up (${which})`,
    };
  }
}
