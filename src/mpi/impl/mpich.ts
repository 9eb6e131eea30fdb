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
import { slurmAllocation, thisNode } from '../launch/slurm.js';

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
 * Open MPI's hostfile (`host slots=N`, `#` comments) as Hydra's `host:N` lines.
 */
function hydraLines(file: string): string[] {
  const lines: string[] = [];
  for (const raw of readFileSync(file, 'utf8').split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    if (!line) continue;
    const [host, ...rest] = line.split(/\s+/);
    const slots = /slots=(\d+)/.exec(rest.join(' '))?.[1] ?? /^[^:]+:(\d+)$/.exec(host)?.[1];
    lines.push(slots ? `${host.split(':')[0]}:${slots}` : host);
  }
  return lines;
}

/** A hostfile for Hydra (`lines`, the first slot the hub's: mpmdArgs) in a file of its own. */
function hydraHostfile(lines: string[]): string {
  const out = join(cacheDir(), `hydra-hosts-${process.pid}-${Date.now()}`);
  mkdirSync(cacheDir(), { recursive: true });
  writeFileSync(out, lines.join('\n') + '\n');
  return out;
}

/** mpiexec.hydra's arguments: `[-f F] [-hosts H] -n N1 [-wdir D] app1 : -n N2 app2 ...` (the environment passes by default). */
function mpmdArgs(apps: App[], spawnInfo: Record<string, string>, _passEnv: string[]): string[] {
  // Hydra's auto-cleanup stays on: with -disable-auto-cleanup it still SIGKILLs the job when a
  // rank dies by a signal (strace), and it leaves the ranks running when the hub exits on its
  // own (its caller gone): the cleanup is what ends them then.
  // -print-all-exitcodes: every rank's wait status, per host (fromExitCodes): Hydra's box names
  // the first rank in its order whose status is not 0, not the first to fail.
  const args: string[] = ['-print-all-exitcodes'];
  // The first slot Hydra fills is this host's: the hub (rank 0, the first app) runs here, beside
  // the named pipes it talks on, wherever the stages' ranks go (Hydra fills its hosts in order
  // by slots, launching on this host without ssh, and wraps around to it once the listed slots
  // are full). In a Slurm allocation this host goes by its node name, which Hydra's Slurm
  // launcher hands srun.
  const alloc = slurmAllocation();
  const here = thisNode(alloc);
  const hubSlot = `${here ?? hostname()}:1`;
  if (spawnInfo.hostfile) args.push('-f', hydraHostfile([hubSlot, ...hydraLines(spawnInfo.hostfile)]));
  if (spawnInfo.host) args.push('-hosts', `${hubSlot},${spawnInfo.host}`);
  // Inside a Slurm allocation with no hosts given: its nodes a slot each, this one first (run.ts
  // has made sure it is one of them), so every stage's ranks go round the nodes (as Open MPI's
  // map_by=node does); Hydra launches its proxies through srun.
  if (!spawnInfo.hostfile && !spawnInfo.host && alloc && here && alloc.nodes.length > 1) {
    args.push('-f', hydraHostfile([here, ...alloc.nodes.filter((n) => n !== here)].map((n) => `${n}:1`)));
  }
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

/** Hydra's and MPICH's own lines: its boxes, its proxies' and mpiexec's notices, MPI_Abort's echo, the exit codes. */
function ownLines(): (line: string) => boolean {
  // -print-all-exitcodes puts a host's statuses on a line of their own after the first ("[h2] 0,9").
  let inCodes = false;
  return (line) => {
    inCodes = /\] Exit codes: /.test(line) || (inCodes && /^\[[^\]@\s]+\] [\d,]+\s*$/.test(line));
    return (
      inCodes ||
      /^={20,}$/.test(line.trim()) ||
      /^=\s/.test(line) || // inside Hydra's box
      /^\[(proxy|mpiexec)[:@][^\]]*\]/.test(line) ||
      /^Abort\(\d+\) on node \d+/.test(line) ||
      /^(YOU CAN IGNORE|BAD TERMINATION)/.test(line) ||
      // After the box, when a rank died by a signal:
      /^(YOUR APPLICATION TERMINATED WITH THE EXIT STRING: |This typically refers to a problem with your application\.$|Please see the FAQ page for debugging suggestions$)/.test(line)
    );
  };
}

/** A rank of the run on a host, with the wait status Hydra gives it (signal in the low 7 bits, else code << 8). */
type Ended = { stage: number; rank: number; host: string; status: number; detail?: string };
const SIGKILL = 9;

/**
 * Which rank failed first, of those Hydra says ended badly. Hydra's cleanup ends every other
 * rank by SIGKILL: the one whose status is anything else failed first, and so did the only
 * one killed. When several were killed by SIGKILL on one host nothing says which died first:
 * the line names the host and them all. (A rank on this host is named by the hub's watchdog,
 * from its pidfd, before any of this is read, when the hub outlives Hydra's cleanup.)
 */
function firstOf(ended: Ended[], c: TextContext): Failure | undefined {
  const name = (e: Ended) => `stage "${c.plan.stages[e.stage].name}" rank ${e.rank}`;
  const first = ended.find((e) => e.status !== SIGKILL) ?? (ended.length === 1 ? ended[0] : undefined);
  if (first) {
    const killed = (first.status & 0x7f) !== 0;
    const how = killed ? `was killed by ${signalName(first.status & 0x7f)}` : `exited with code ${first.status >> 8}`;
    return { stage: c.plan.stages[first.stage].name, rank: first.rank, host: first.host, reason: killed ? 'killed' : 'exited', detail: first.detail ?? `${how} (reported by MPICH)` };
  }
  const hosts = [...new Set(ended.map((e) => e.host))];
  if (hosts.length !== 1) return undefined;
  return { host: hosts[0], reason: 'killed', detail: `a rank on ${hosts[0]} was killed by SIGKILL (reported by MPICH, whose cleanup ends the others there by the same signal, so which of ${ended.map(name).join(', ')} died first is not known)` };
}

/**
 * The ranks that ended badly, from Hydra's `Exit codes: [h1] 0,9` and `[h2] 0,11,9` lines
 * (-print-all-exitcodes): each host's wait statuses in world-rank order, the hub first on its
 * host. Hydra prints them when its proxies report back, which a proxy that lost its ranks
 * first does not always do; undefined without them.
 */
function fromExitCodes(text: string, c: TextContext): Ended[] | undefined {
  const at = /Exit codes: (.*(?:\n\[[^\]@\s]+\] [\d,]+\s*)*)/.exec(text);
  if (!at) return undefined;
  const ended: Ended[] = [];
  for (const [, host, list] of at[1].matchAll(/\[([^\]@\s]+)\] ([\d,]+)/g)) {
    const ranks = c.ranksOn(host);
    const statuses = list.split(',').map(Number);
    if (statuses.length === ranks.length + 1 && host === hostname()) statuses.shift(); // the hub, world rank 0
    if (statuses.length !== ranks.length) continue;
    statuses.forEach((status, k) => status !== 0 && ended.push({ ...ranks[k], host, status }));
  }
  return ended;
}

/**
 * The ranks that ended badly, from Hydra's box: `BAD TERMINATION ... PID P RUNNING AT H ...
 * KILLED BY SIGNAL: N` or `EXIT CODE: C`. It names the first rank in Hydra's order on H whose
 * status was not 0, not the first to fail: one killed by SIGKILL on another host (whose proxy
 * passes the signal on as the code 9) may be Hydra's cleanup, so every later rank of the run
 * there may be the one that failed first.
 */
function fromBox(text: string, c: TextContext): Ended[] | undefined {
  if (!/BAD TERMINATION OF ONE OF YOUR APPLICATION PROCESSES/.test(text)) return undefined;
  const at = /PID (\d+) RUNNING AT (\S+)/.exec(text);
  const place = at && c.rankOfPid(Number(at[1]), at[2]);
  if (!at || !place) return undefined;
  const signal = /KILLED BY SIGNAL: (\d+)/.exec(text);
  const code = /EXIT CODE: (\d+)/.exec(text);
  if (signal) return [{ ...place, host: at[2], status: Number(signal[1]) }];
  if (!code || at[2] === hostname()) return undefined;
  const n = Number(code[1]);
  if (n !== SIGKILL) {
    // The code of a rank's exit, or the number of the signal that killed it: the box does not say which.
    const as = n > 0 && n < 32 ? `; from another host a signal arrives as its number: ${signalName(n)}` : '';
    return [{ ...place, host: at[2], status: n << 8, detail: `ended with code ${n} (reported by MPICH${as})` }];
  }
  const ranks = c.ranksOn(at[2]);
  const from = ranks.findIndex((r) => r.stage === place.stage && r.rank === place.rank);
  if (from < 0) return undefined; // not where Ready put it: nothing to read the order from
  return ranks.slice(from).map((r) => ({ ...r, host: at[2], status: SIGKILL }));
}

function failureFromText(lines: string[], c: TextContext): Failure | undefined {
  const text = lines.join('\n');
  const ended = fromExitCodes(text, c) ?? fromBox(text, c);
  return ended && firstOf(ended, c);
}

export const mpich: MpiImpl = {
  name: 'mpich',
  title: 'MPICH',
  addon: 'commloop_mpi_mpich',
  cWorker: 'commloop_c_worker_mpich',
  mpmdChannel: 'fifo',
  worldRankEnv: 'PMI_RANK',
  rankParent: /(^|\/)hydra_pmi_proxy$/,
  killsAllAtOnce: true,
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
