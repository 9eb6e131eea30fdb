/**
 * Failure logs: a failed run's MPI messages, kept in a file of their own, the newest
 * LOGS_KEPT of them and none older than LOGS_MAX_AGE_MS. (What a killed run leaves in
 * /dev/shm is each MPI's own: impl/.)
 */
import { mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

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
