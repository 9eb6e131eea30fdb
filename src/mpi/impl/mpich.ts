/**
 * MPICH (4.0.2 here, Debian's mpich beside Open MPI: mpicc.mpich, mpiexec.hydra), and what
 * is built on it (Cray MPICH, Intel MPI, MVAPICH take the same launcher words). Debian
 * builds it with ch4:ucx, whose MPI_Comm_spawn fails ("not supported with ucx netmod"
 * before 4.3): whether a run may spawn is found by trying (spawns), and `--launch auto`
 * picks MPMD, one mpiexec holding the hub and every stage.
 *
 * Hydra, its launcher, needs no flag to run as root, passes the environment to every rank
 * by default, takes a hostfile with -f (`host:N` lines: Open MPI's `host slots=N` is
 * rewritten) and, when a rank dies, prints a box on stdout (`BAD TERMINATION OF ONE OF YOUR
 * APPLICATION PROCESSES`, with the pid and host, not the rank): the supervisor names the
 * rank from the pids the ranks gave at Ready.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { addonPath, distDir } from '../../assets.js';
import { UsageError, type Failure } from '../../errors.js';
import { cacheDir } from '../../pipeline/compile.js';
import type { Wire, WireContext } from '../wire.js';
import type { App, MpiImpl, TextContext } from './mpi-impl.js';
import { signalName } from './openmpi-text.js';

const MPIEXEC = '/usr/bin/mpiexec.hydra';
const LIBMPICH = '/usr/lib/x86_64-linux-gnu/libmpich.so.12';

/**
 * UCX (MPICH's ch4 netmod here) in a Node process: its memory hooks patch mmap while V8's
 * threads run (stage processes died with SIGSEGV at start under Open MPI's UCX, the same
 * library), and its own SIGSEGV handlers would take V8's and print a backtrace on every
 * abort. The same settings as Open MPI's UCX wire (openmpi-wire.ts says why).
 */
const UCX_QUIET: Record<string, string> = { UCX_MEM_EVENTS: 'no', UCX_ERROR_SIGNALS: '', UCX_HANDLE_ERRORS: 'none' };

function environment(_local: boolean, env: NodeJS.ProcessEnv): void {
  for (const [k, v] of Object.entries(UCX_QUIET)) env[k] ??= v;
}

function chooseWire(c: WireContext): Wire {
  if (c.env.UCX_TLS !== undefined) {
    if (c.request !== 'auto') throw new UsageError(`--wire ${c.request}: UCX_TLS=${c.env.UCX_TLS} is set in the environment and chooses the wire; unset it or use --wire auto`);
    return { name: 'user', how: `as the environment says (UCX_TLS=${c.env.UCX_TLS})`, env: {}, merged: true };
  }
  if (c.request === 'tcp') return { name: 'tcp', how: 'TCP (MPICH ch4:ucx, UCX_TLS=tcp,self)', env: { UCX_TLS: 'tcp,self' }, merged: true };
  return { name: 'shm', how: c.local ? 'UCX shared memory (MPICH ch4:ucx, one job)' : 'UCX shared memory within a host, its TCP between hosts (MPICH ch4:ucx)', env: {}, merged: true };
}

/**
 * Open MPI's hostfile (`host slots=N`, `#` comments) as Hydra's (`host:N`), in a file of its
 * own, after the hub's slot on this host (HUB_SLOT).
 */
function hydraHostfile(file: string): string {
  const lines: string[] = [HUB_SLOT()];
  for (const raw of readFileSync(file, 'utf8').split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    if (!line) continue;
    const [host, ...rest] = line.split(/\s+/);
    const slots = /slots=(\d+)/.exec(rest.join(' '))?.[1] ?? /^[^:]+:(\d+)$/.exec(host)?.[1];
    lines.push(slots ? `${host.split(':')[0]}:${slots}` : host);
  }
  const out = join(cacheDir(), `hydra-hosts-${process.pid}-${Date.now()}`);
  mkdirSync(cacheDir(), { recursive: true });
  writeFileSync(out, lines.join('\n') + '\n');
  return out;
}

/**
 * The first slot Hydra fills, this host's: the hub (rank 0, the first app) runs here, beside
 * the named pipes it talks on, wherever the stages' ranks go (Hydra fills its hosts in order
 * by slots, launching on this host without ssh). Hydra wraps around to it once the listed
 * slots are full.
 */
const HUB_SLOT = () => `${hostname()}:1`;

/** mpiexec.hydra's arguments: `[-f F] [-hosts H] -n N1 [-wdir D] app1 : -n N2 app2 ...` (the environment passes by default). */
function mpmdArgs(apps: App[], spawnInfo: Record<string, string>, _passEnv: string[]): string[] {
  // Hydra's auto-cleanup stays on: with -disable-auto-cleanup it still SIGKILLs the job when a
  // rank dies by a signal (strace), and it leaves the ranks running when the hub exits on its
  // own (its caller gone): the cleanup is what ends them then.
  const args: string[] = [];
  if (spawnInfo.hostfile) args.push('-f', hydraHostfile(spawnInfo.hostfile));
  if (spawnInfo.host) args.push('-hosts', `${HUB_SLOT()},${spawnInfo.host}`);
  apps.forEach((app, k) => {
    if (k) args.push(':');
    args.push('-n', String(app.np), ...(app.cwd ? ['-wdir', app.cwd] : []), app.cmd, ...app.args);
  });
  return args;
}

/**
 * Whether MPI_Comm_spawn works with this MPICH: a singleton process (as a spawn-mode hub is)
 * spawns one native C stage and says whether the call came back; remembered per library
 * build and host, as Open MPI's UCX probe is.
 */
function spawns(): boolean {
  let key: string;
  try {
    key = [hostname(), statSync(LIBMPICH).mtimeMs, statSync(addonPath(mpich.addon)).mtimeMs].join(':');
  } catch {
    return false;
  }
  const file = join(cacheDir(), 'mpich-spawn-probe.json');
  try {
    const seen = JSON.parse(readFileSync(file, 'utf8')) as { key: string; spawns: boolean };
    if (seen.key === key) return seen.spawns;
  } catch {
    // no probe yet
  }
  const worker = join(distDir, mpich.cWorker);
  const code = `const a = require(${JSON.stringify(addonPath(mpich.addon))}); a.setErrorClass(Error); a.init(); a.setTimeout(10000);
try { a.spawn(${JSON.stringify(worker)}, ['halffirst'], 1); process.stdout.write('spawned'); } catch (e) { process.stdout.write('refused'); }
process.exit(0);`;
  const env = { ...process.env, ...UCX_QUIET };
  const r = spawnSync(process.execPath, ['-e', code], { env, encoding: 'utf8', timeout: 20_000, killSignal: 'SIGKILL' });
  const ok = r.stdout === 'spawned';
  try {
    mkdirSync(cacheDir(), { recursive: true });
    const tmp = `${file}.tmp-${process.pid}`;
    writeFileSync(tmp, JSON.stringify({ key, spawns: ok }) + '\n');
    renameSync(tmp, file);
  } catch {
    // an unwritable cache: probe again next time
  }
  return ok;
}

/** Hydra's and MPICH's own lines: its boxes, its proxies' and mpiexec's notices, MPI_Abort's echo. */
function ownLines(): (line: string) => boolean {
  return (line) =>
    /^={20,}$/.test(line.trim()) ||
    /^=\s/.test(line) || // inside Hydra's box
    /^\[(proxy|mpiexec)[:@][^\]]*\]/.test(line) ||
    /^Abort\(\d+\) on node \d+/.test(line) ||
    /^(YOU CAN IGNORE|BAD TERMINATION)/.test(line);
}

/** Hydra's box: `BAD TERMINATION ... PID P RUNNING AT H ... KILLED BY SIGNAL: N (Name)` or `EXIT CODE: C`. */
function failureFromText(lines: string[], c: TextContext): Failure | undefined {
  const text = lines.join('\n');
  if (!/BAD TERMINATION OF ONE OF YOUR APPLICATION PROCESSES/.test(text)) return undefined;
  const at = /PID (\d+) RUNNING AT (\S+)/.exec(text);
  if (!at) return undefined;
  const signal = /KILLED BY SIGNAL: (\d+)/.exec(text);
  const code = /EXIT CODE: (\d+)/.exec(text);
  const place = c.rankOfPid(Number(at[1]), at[2]);
  if (!place) return undefined;
  const who = { stage: c.plan.stages[place.stage].name, rank: place.rank, host: at[2] };
  if (signal) return { ...who, reason: 'killed', detail: `was killed by ${signalName(Number(signal[1]))} (reported by MPICH)` };
  // A rank on another host: the proxy Hydra started there passes a rank's death by a signal
  // on as an exit code of the signal's number (a kill -9 on h2 arrived as `EXIT CODE: 9`).
  if (!code || at[2] === hostname()) return undefined;
  const n = Number(code[1]);
  const as = n > 0 && n < 32 ? `; from another host a signal arrives as its number: ${signalName(n)}` : '';
  return { ...who, reason: 'exited', detail: `ended with code ${n} (reported by MPICH${as})` };
}

export const mpich: MpiImpl = {
  name: 'mpich',
  title: 'MPICH',
  addon: 'commloop_mpi_mpich',
  cWorker: 'commloop_c_worker_mpich',
  mpmdChannel: 'fifo',
  mpicc: 'mpicc.mpich',
  packages: 'mpich libmpich-dev',
  launcher: () => (existsSync(MPIEXEC) ? MPIEXEC : 'mpiexec.hydra'),
  installed: () => existsSync(MPIEXEC) && existsSync(LIBMPICH),
  environment,
  chooseWire,
  mpmdArgs,
  spawns,
  ownLines,
  failureFromText,
  lostHost: () => undefined,
  runMark: () => undefined,
  removeLeftovers: () => [],
};
