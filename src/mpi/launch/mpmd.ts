/**
 * --launch mpmd: one mpirun holds the hub (rank 0) and every stage's ranks, each stage
 * its own app context, so Open MPI can use shared memory and tears the whole job down
 * if a rank dies. The supervisor (supervisor.ts) starts it and talks to the hub through
 * mpirun's forwarding of rank 0's stdin and stdout.
 */
import { join } from 'node:path';
import { STEP_TIMEOUT_ENV } from '../protocol.js';
import { distDir } from '../../assets.js';
import type { CBackend } from '../../stage/kernel.js';
import type { RingPlan } from '../../pipeline/model.js';
import { stageCommand } from '../hub/transport.js';

/** The mpirun arguments: `[--hostfile F | --host H] -np 1 node hub.js : -np N1 stage0 : ...`. */
export function mpmdCommand(plan: RingPlan, cBackend: CBackend, spawnInfo: Record<string, string>): string[] {
  const args: string[] = [];
  if (spawnInfo.hostfile) args.push('--hostfile', spawnInfo.hostfile);
  if (spawnInfo.host) args.push('--host', spawnInfo.host);
  if (spawnInfo.map_by) args.push('--map-by', spawnInfo.map_by);
  // The step deadline reaches the stages on every host (a stage reports its own stuck rank).
  args.push('-x', STEP_TIMEOUT_ENV);
  args.push('-np', '1', process.execPath, join(distDir, 'hub.js'));
  for (const st of plan.stages) {
    const [cmd, cmdArgs] = stageCommand(plan, st, cBackend);
    args.push(':', '-np', String(st.ranks), ...(st.cwd ? ['-wdir', st.cwd] : []), cmd, ...cmdArgs);
  }
  return args;
}
