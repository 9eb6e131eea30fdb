/**
 * --launch mpmd: one launcher (mpirun, mpiexec) holds the hub (rank 0) and every stage's
 * ranks, each stage its own app context, so the MPI can use shared memory and tears the
 * whole job down if a rank dies. The supervisor (supervise/supervisor.ts) starts it and
 * talks to the hub through the launcher's forwarding of rank 0's stdin and stdout. The
 * command line's syntax is the MPI's (impl/).
 */
import { join } from 'node:path';
import { STEP_TIMEOUT_ENV } from '../protocol.js';
import { distDir } from '../../assets.js';
import type { CBackend } from '../../stage/kernel.js';
import type { RingPlan } from '../../pipeline/model.js';
import { stageCommand } from '../hub/transport.js';
import type { App, MpiImpl } from '../impl/index.js';

/** The launcher's arguments for `node hub.js` (one rank) and each stage (its ranks, its cwd). */
export function mpmdCommand(plan: RingPlan, cBackend: CBackend, spawnInfo: Record<string, string>, mpi: MpiImpl): string[] {
  const apps: App[] = [{ np: 1, cmd: process.execPath, args: [join(distDir, 'hub.js')] }];
  for (const st of plan.stages) {
    const [cmd, args] = stageCommand(plan, st, cBackend);
    apps.push({ np: st.ranks, cmd, args, cwd: st.cwd });
  }
  // The step deadline reaches the stages on every host (a stage reports its own stuck rank).
  return mpi.mpmdArgs(apps, spawnInfo, [STEP_TIMEOUT_ENV]);
}
