/**
 * The start of a supervised MPI run (supervisor.ts): the hub's environment, its command
 * (node dist/hub.js, or mpirun under MPMD) and its process, the wire chosen for the run,
 * and the supervisor's side of the channel to it (channel.ts). Also what the supervisor
 * reads of a launch on other hosts: the hosts asked for, the ssh still starting a daemon,
 * ssh's own words. Apart from supervision.ts so that the run's state starts from one value,
 * the launched hub, and nothing there spawns or parses a command line.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, createReadStream, createWriteStream, mkdtempSync, openSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { distDir } from '../../assets.js';
import type { CBackend, RingPlan } from '../../pipeline/model.js';
import { HUB_FDS_ENV, HUB_FIFOS_ENV, MARK, type FromHub, type ToHub } from '../channel.js';
import { mpmdCommand } from './mpmd.js';
import { STEP_TIMEOUT_ENV, hostHash } from '../protocol.js';
import type { Wire, WireRequest } from '../wire.js';
import { placementOf } from './placement.js';
import { MPI_ENV, mpiImpl, type MpiImpl, type MpiName } from '../impl/index.js';

/** A started hub: its process, the run's wire, its hosts, and the channel to it. */
export interface LaunchedHub {
  child: ChildProcess;
  /** The command started: mpirun (MPMD), or node for dist/hub.js (spawn mode). */
  cmd: string;
  /** `cmd` is the MPI's launcher (mpirun, mpiexec): what a failure calls it; undefined in spawn mode. */
  launcherName?: string;
  /** The run's MPI. */
  mpi: MpiImpl;
  wire: Wire;
  /** The run has hosts of its own (--host, --hostfile, a Slurm allocation of several nodes). */
  remote: boolean;
  /** The spawn keys the run uses: the caller's, with map_by=node inside an allocation of several nodes. */
  spawnInfo: Record<string, string>;
  /** The hosts of --host and the hostfile, by name, in order (listedHosts). */
  launchHosts: string[];
  /** Host-name hashes the run can name (knownHosts). */
  hostNames: Map<number, string>;
  /**
   * Resolves once the hub's side of the channel has closed: with named pipes the hub's last
   * words may come after the launcher has exited (its teardown is quicker than the hub's
   * report of which rank died). At once where the channel is the launcher's own stdout.
   */
  channelClosed: Promise<void>;
  /** Writes one message to the hub, while its end of the channel is open. */
  tell(m: ToHub): void;
  /**
   * Hands each message of the hub to `on`; any other line on the channel's stream (a stage's
   * stray output, the launcher's own text: Hydra prints its box on stdout) to `other`.
   */
  listen(on: (m: FromHub) => void, other: (line: string) => void): void;
}

/** What launching the hub needs to know of a run (the supervisor's options hold these). */
export interface LaunchOptions {
  cBackend: CBackend;
  /** The MPI the run uses (impl/index.ts chooseMpi). */
  mpi: MpiName;
  launch: 'spawn' | 'mpmd';
  wire: WireRequest;
  spawnInfo: Record<string, string>;
  timeoutMs: number;
}

export function launchHub(plan: RingPlan, opts: LaunchOptions): LaunchedHub {
  const env: NodeJS.ProcessEnv = { ...process.env };
  const { remote, spawnInfo, listed: launchHosts, alloc } = placementOf(opts.spawnInfo, env);
  const mpi = mpiImpl(opts.mpi);
  mpi.environment(!remote, env);
  // Every process of the run (the hub, each stage) loads the addon of this MPI and starts its C worker.
  env[MPI_ENV] = mpi.name;
  const wire = mpi.chooseWire({ launch: opts.launch, local: !remote, request: opts.wire, env });
  for (const [k, v] of Object.entries(wire.env)) env[k] ??= v; // what the user set stays
  const hub = join(distDir, 'hub.js');
  const launcher = mpi.launcher();
  const [cmd, args] =
    opts.launch === 'mpmd' ? [launcher, mpmdCommand(plan, opts.cBackend, spawnInfo, mpi)] : [process.execPath, [hub]];
  // Its own process group: a terminal's Ctrl-C reaches the caller, who asks for a clean stop.
  const spawnMode = opts.launch === 'spawn';
  if (spawnMode) env[HUB_FDS_ENV] = '3,4';
  // Where the launcher's forwarding of rank 0's stdio cannot be the channel: two named pipes.
  const fifos = !spawnMode && mpi.mpmdChannel === 'fifo' ? makeFifos() : undefined;
  if (fifos) env[HUB_FIFOS_ENV] = `${fifos.in},${fifos.out}`;
  env[STEP_TIMEOUT_ENV] = String(opts.timeoutMs);
  const child = spawn(cmd, args, { stdio: spawnMode ? ['ignore', 'pipe', 'pipe', 'pipe', 'pipe'] : ['pipe', 'pipe', 'pipe'], detached: true, env });
  const toHub = (spawnMode ? child.stdio[3] : fifos ? createWriteStream(fifos.in) : child.stdin) as Writable;
  const fromHub = (spawnMode ? child.stdio[4] : fifos ? createReadStream(fifos.out) : child.stdout) as Readable;
  const channelClosed = fifos ? new Promise<void>((resolve) => fromHub.once('close', () => resolve())) : Promise.resolve();
  if (fifos) {
    // The launcher's own stdout (Hydra's box) still reaches the classifier, through listen's `other`.
    child.once('close', () => {
      // A hub that never opened its ends leaves our opens waiting (and the process alive):
      // opening each pipe for both reading and writing never blocks, and completes them.
      for (const f of [fifos.in, fifos.out]) {
        try {
          closeSync(openSync(f, 'r+'));
        } catch {
          // gone already
        }
      }
      rmSync(fifos.dir, { recursive: true, force: true });
    });
    fromHub.on('error', () => {});
  }
  toHub.on('error', () => {}); // the hub may be gone; its exit says why
  return {
    child,
    cmd,
    launcherName: cmd === launcher ? basename(launcher).replace(/\.(openmpi|mpich|hydra)$/, '') : undefined,
    mpi,
    wire,
    remote,
    spawnInfo,
    launchHosts,
    hostNames: knownHosts([...launchHosts, ...(alloc?.nodes ?? [])]),
    channelClosed,
    tell(m) {
      if (toHub.writable) toHub.write(JSON.stringify(m) + '\n');
    },
    listen(on, other) {
      // Spawn mode: whatever reaches the hub's stdout is a stage's (they should use stderr);
      // with named pipes, the launcher's stdout carries its own text and the ranks' output.
      if (spawnMode || fifos) createInterface({ input: child.stdout!, crlfDelay: Infinity }).on('line', other);
      createInterface({ input: fromHub, crlfDelay: Infinity }).on('line', (line) => {
        if (!line.startsWith(MARK)) {
          other(line); // not ours: a stage wrote to the hub's stdout, or the launcher did
          return;
        }
        on(JSON.parse(line.slice(MARK.length)) as FromHub);
      });
    },
  };
}

/** Two named pipes in a fresh folder: the hub's channel in and out (HUB_FIFOS_ENV). */
function makeFifos(): { dir: string; in: string; out: string } {
  const dir = mkdtempSync(join(tmpdir(), 'commloop-hub-'));
  const fifos = { dir, in: join(dir, 'in'), out: join(dir, 'out') };
  const r = spawnSync('mkfifo', ['-m', '600', fifos.in, fifos.out]);
  if (r.status !== 0) throw new Error(`mkfifo in ${dir} failed: ${r.stderr?.toString().trim() || r.error?.message}`);
  return fifos;
}

/** Host-name hashes we can name: this host, and the run's hosts (listedHosts). */
function knownHosts(listed: string[]): Map<number, string> {
  return new Map([hostname(), 'localhost', ...listed].map((n) => [hostHash(n), n]));
}
