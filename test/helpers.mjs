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

import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { spawn } from 'node:child_process';

/** Parent pid and state of a live process, or undefined when it is gone. */
function stat(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { state: rest[0], ppid: Number(rest[1]) };
  } catch {
    return undefined;
  }
}

/** Every process below `root` in the process tree (pids), read from /proc. */
export function descendants(root) {
  const children = new Map();
  for (const name of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(name)) continue;
    const st = stat(name);
    if (!st) continue;
    if (!children.has(st.ppid)) children.set(st.ppid, []);
    children.get(st.ppid).push(Number(name));
  }
  const out = [];
  const walk = (p) => {
    for (const c of children.get(p) ?? []) {
      out.push(c);
      walk(c);
    }
  };
  walk(root);
  return out;
}

/** The command line of a process ('' when gone). */
export function cmdline(pid) {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    return '';
  }
}

/** Whether a process's environment holds `entry` ("NAME=value"): a mark a test gave what it started. */
export function hasEnv(pid, entry) {
  try {
    return readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(entry);
  } catch {
    return false;
  }
}

/** True while the process exists in any state, zombies included: a zombie still shows in ps. */
export function exists(pid) {
  return stat(pid) !== undefined;
}

/**
 * Polls `cond` every 20 ms until it holds (true) or `ms` pass (its last value). With `run`, an
 * object whose `ended` becomes true when the run it waits on is over, it stops waiting then:
 * what a run that ended did not do, it will not do later.
 */
export async function until(cond, ms, run) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    if (run?.ended) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  return cond();
}

/**
 * Starts the CLI in the background; resolves `exit` with { code, signal, stdout, stderr, ms }.
 * `done(n)` waits for a status line counting n iterations (give the run --status-every).
 */
export function startCli(args, prefix = [], env = {}) {
  const t0 = Date.now();
  const cmd = prefix.length ? prefix[0] : process.execPath;
  const argv = prefix.length ? [...prefix.slice(1), process.execPath, master, ...args] : [master, ...args];
  const child = spawn(cmd, argv, { env: { ...process.env, ...env } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const exit = new Promise((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal, stdout, stderr, ms: Date.now() - t0 })),
  );
  /** Resolves true once a status line (--status-every) counts `n` or more iterations done; false after `ms`. */
  const done = (n = 1, ms = 30_000) => until(() => [...stderr.matchAll(/^status: (\d+) of /gm)].some((m) => Number(m[1]) >= n), ms);
  return { child, exit, t0, done };
}

/** stderr without the status lines a run prints with --status-every (tests give it to see a run go). */
export const unstatus = (text) => text.split('\n').filter((l) => !l.startsWith('status: ')).join('\n');

export const haveMpi = () => existsSync('/usr/bin/mpirun') && existsSync(join(root, 'build', 'Release', 'commloop_mpi.node'));
export const MPI_MISSING =
  'Open MPI or the MPI addon is missing: apt-get install -y openmpi-bin libopenmpi-dev, then bash build.sh';

/** A temp folder for a test file, and a writer of pipeline JSON files into it: `file(name, spec)`. */
export function pipelineFiles(prefix) {
  const dir = mkdtempSync(join(tmpdir(), `commloop-${prefix}-`));
  const file = (name, spec) => {
    const path = join(dir, `${name}.json`);
    writeFileSync(path, JSON.stringify(spec));
    return path;
  };
  return { dir, file };
}

/**
 * The line of a rank killed by SIGKILL on `host` under MPICH (src/mpi/impl/mpich.ts
 * fromExitCodes), as a regex source: named, where it was the only rank killed there; else
 * the host and every rank Hydra's cleanup killed with it, `who` among them. `who` is a
 * regex source such as `stage "c" rank \d`.
 */
export const mpichKilled = (who, host) =>
  String.raw`^commloop: (${who} on ${host}: was killed by SIGKILL \(reported by MPICH\)|a rank on ${host} was killed by SIGKILL \(reported by MPICH, whose cleanup ends the others there by the same signal, so which of (stage "\w+" rank \d+, )*${who}(, stage "\w+" rank \d+)* died first is not known\))( \(MPICH's messages: \S+\))?$`;

/**
 * SIGTERM to a started CLI and every process below it at once, as scancel and a time limit
 * send it; resolves with its end, the processes it had, and its `commloop:` lines.
 */
export async function terminateAll(run) {
  const pids = descendants(run.child.pid);
  for (const p of [run.child.pid, ...pids]) {
    try {
      process.kill(p, 'SIGTERM');
    } catch {} // gone already
  }
  const r = await run.exit;
  return { r, pids, lines: r.stderr.split('\n').filter((l) => l.startsWith('commloop:')) };
}

/** The one line of a run stopped by SIGTERM to all its processes (terminateAll) of `iterations`. */
export const STOPPED_BY_TERM = (iterations) => new RegExp(String.raw`^commloop: stopped by signal( after \d+ of ${iterations} iterations|; the run's processes were signalled too \(.+\))$`);
