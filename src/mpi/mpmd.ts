/**
 * --launch mpmd from the CLI: starts one mpirun holding this master (rank 0) and every
 * stage's ranks, each stage its own app context, so Open MPI can use shared memory and
 * tears the whole job down if a rank dies. The process that started it only relays:
 * Ctrl-C goes to the inner master (a clean stop), its exit status comes back.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { distDir } from '../assets.js';
import type { CBackend } from '../stage/kernel.js';
import { setMpiEnvironment } from './addon.js';
import type { RingPlan } from '../pipeline/model.js';
import { stageCommand } from './transport.js';

export const MPMD_PIDFILE_ENV = 'COMMLOOP_MPMD_PIDFILE';

export interface MpmdOptions {
  cBackend: CBackend;
  hostfile?: string;
  host?: string;
}

/** The mpirun command line: `-np 1 master ARGS : -np N1 stage0 : ...`. */
export function mpmdCommand(plan: RingPlan, masterArgs: string[], opts: MpmdOptions): string[] {
  const args: string[] = [];
  if (opts.hostfile) args.push('--hostfile', opts.hostfile);
  if (opts.host) args.push('--host', opts.host);
  args.push('-np', '1', process.execPath, join(distDir, 'master.js'), ...masterArgs);
  for (const st of plan.stages) {
    const [cmd, cmdArgs] = stageCommand(plan, st, opts.cBackend);
    args.push(':', '-np', String(st.ranks), ...(st.cwd ? ['-wdir', st.cwd] : []), cmd, ...cmdArgs);
  }
  return args;
}

export async function launchMpmd(plan: RingPlan, masterArgs: string[], opts: MpmdOptions): Promise<number> {
  const pidfile = join(tmpdir(), `commloop-mpmd-${process.pid}.pid`);
  const env: NodeJS.ProcessEnv = { ...process.env, [MPMD_PIDFILE_ENV]: pidfile };
  // mpirun reads these itself and passes them to every rank.
  setMpiEnvironment(!opts.hostfile && !opts.host, env);
  const mpirun = existsSync('/usr/bin/mpirun.openmpi') ? '/usr/bin/mpirun.openmpi' : 'mpirun';
  // Its own process group: a terminal's Ctrl-C reaches only us, and we ask the inner master to stop.
  const child = spawn(mpirun, mpmdCommand(plan, masterArgs, opts), { stdio: 'inherit', env, detached: true });
  // The inner master writes its pid once its signal handlers are in place; a Ctrl-C that
  // comes earlier waits for that (up to 10 s) rather than tearing the job down.
  let relaying = false;
  const relay = async () => {
    if (relaying) return;
    relaying = true;
    for (let i = 0; i < 200; i++) {
      const pid = existsSync(pidfile) ? Number(readFileSync(pidfile, 'utf8')) : 0;
      if (pid > 0) {
        try {
          process.kill(pid, 'SIGINT');
          relaying = false;
          return;
        } catch {
          break; // gone already
        }
      }
      if (child.exitCode !== null) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    if (child.pid) process.kill(-child.pid, 'SIGTERM');
  };
  process.on('SIGINT', relay);
  process.on('SIGTERM', relay);
  try {
    return await new Promise<number>((resolve, reject) => {
      child.on('error', (err) => reject(new Error(`cannot start mpirun: ${err.message} (apt-get install -y openmpi-bin)`)));
      child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 + 15 : 1)));
    });
  } finally {
    process.off('SIGINT', relay);
    process.off('SIGTERM', relay);
    rmSync(pidfile, { force: true });
  }
}
