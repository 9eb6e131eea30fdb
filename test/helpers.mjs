import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = dirname(dirname(fileURLToPath(import.meta.url)));
export const master = join(root, 'dist', 'master.js');

/** Runs the CLI to completion; returns status, stdout, stderr. */
export function cli(args, opts = {}) {
  const r = spawnSync(process.execPath, [master, ...args], { encoding: 'utf8', timeout: 120_000, ...opts });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

/** Runs the CLI with --json and returns the parsed object (throws with stderr on failure). */
export function cliJson(args) {
  const r = cli([...args, '--json']);
  if (r.status !== 0) throw new Error(`exit ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}
