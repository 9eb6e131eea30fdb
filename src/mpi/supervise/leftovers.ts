/**
 * What a run leaves outside its processes, and its removal. Open MPI's shared-memory
 * transport (vader) backs each rank's segment with a file in /dev/shm that the rank's
 * daemon unlinks when the job ends; a daemon or mpirun killed with SIGKILL unlinks
 * nothing, and 4 MiB per rank stay until reboot. The supervisor learns the run's job
 * family from its ranks' environment and removes that family's segments on this host
 * when the run is over. Failure logs (Open MPI's messages of a failed run) are kept, the
 * newest LOGS_KEPT of them and none older than LOGS_MAX_AGE_MS.
 */
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';

export const SHM_DIR = '/dev/shm';

/**
 * The Open MPI job family of a process (jobid >> 16: every job of one mpirun, or of one
 * singleton hub and the stages it spawns, shares it), or undefined for a process that is
 * not a rank or is gone.
 */
export function jobFamily(pid: number): number | undefined {
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
export function removeSegments(families: Set<number>, dir = SHM_DIR): string[] {
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

/** Failure logs: where they go, and how many are kept. */
export const logDir = () => join(tmpdir(), 'commloop-logs');
export const LOGS_KEPT = 20;
export const LOGS_MAX_AGE_MS = 7 * 24 * 3600 * 1000;

/** Writes a failed run's Open MPI messages to a new log and prunes the old ones; returns its path. */
export function writeFailureLog(lines: string[], startedAt: number, pid: number | undefined): string {
  const dir = logDir();
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${new Date(startedAt).toISOString().replace(/[:.]/g, '-')}-${pid ?? 0}.log`);
  writeFileSync(file, lines.join('\n') + '\n');
  pruneLogs(dir, Date.now());
  return file;
}

/** Keeps the newest LOGS_KEPT logs of `dir`, none older than LOGS_MAX_AGE_MS. */
export function pruneLogs(dir: string, now: number): void {
  let logs: { file: string; mtime: number }[];
  try {
    logs = readdirSync(dir)
      .filter((n) => n.endsWith('.log'))
      .map((n) => {
        const file = join(dir, n);
        try {
          return { file, mtime: statSync(file).mtimeMs };
        } catch {
          return { file, mtime: -1 }; // removed by another run meanwhile
        }
      })
      .filter((l) => l.mtime >= 0)
      .sort((a, b) => b.mtime - a.mtime || (a.file < b.file ? 1 : -1));
  } catch {
    return;
  }
  logs.forEach((l, i) => {
    if (i >= LOGS_KEPT || now - l.mtime > LOGS_MAX_AGE_MS) rmSync(l.file, { force: true });
  });
}
