/**
 * The hub of an MPI run, in a process of its own: `node dist/hub.js`, started by a
 * supervisor (supervisor.ts) directly (spawn mode) or as rank 0 of its mpirun (MPMD).
 * It reads the plan from stdin, drives the ring, and reports on stdout (channel.ts).
 * It may fail in any way Open MPI fails: the supervisor, not this process, is what the
 * caller waits on. If the supervisor goes away (stdin closes), the run stops.
 */
import { openSync, writeSync } from 'node:fs';
import { Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { makeArena } from '../../arena.js';
import { RunError } from '../../errors.js';
import { driveRing, type CheckpointHooks } from '../../loop.js';
import { HUB_FDS_ENV, HUB_FIFOS_ENV, MARK, decodeArray, encodeArray, fromWire, statesFromWire, statesToWire, stepTimesToWire, type FromHub, type ToHub } from '../channel.js';
import { mpi } from '../addon.js';
import { MpiTransport } from './transport.js';

// Spawn mode: fds 3 (in) and 4 (out) from the supervisor, because the singleton's orted
// shares this process's stdin and stdout. MPMD: stdin and stdout, which mpirun forwards, or
// (HUB_FIFOS_ENV) two named pipes the supervisor made, opened in its order: in, then out.
const fifos = process.env[HUB_FIFOS_ENV]?.split(',');
const [inFd, outFd] = fifos ? [openSync(fifos[0], 'r'), openSync(fifos[1], 'w')] : (process.env[HUB_FDS_ENV] ?? '0,1').split(',').map(Number);
// Through the addon once it reports on outFd: its watchdog writes there too (failures, and
// a pulse every 500 ms that tells the supervisor this host is still reachable).
let reporting = false;
const send = (m: FromHub) => {
  const line = MARK + JSON.stringify(m) + '\n';
  if (reporting) mpi().report(line);
  else writeSync(outFd, line);
};

const lines = createInterface({ input: inFd === 0 ? process.stdin : new Socket({ fd: inFd, readable: true, writable: false }), crlfDelay: Infinity });
const stop = new AbortController();
let run: Extract<ToHub, { t: 'run' }> | undefined;
let gotRun: () => void;
const started = new Promise<void>((resolve) => (gotRun = resolve));
let reply: ((go: boolean) => void) | undefined;
/** Checkpoints: one sent and not yet written; one asked for; who waits for the write. */
let writing = false;
let wanted = false;
let written: (() => void)[] = [];

// mpirun forwards SIGUSR1 and SIGUSR2 to every rank, this one too: the caller's supervisor
// handles them (a checkpoint) and says so on the channel; Node would open its inspector.
for (const sig of ['SIGUSR1', 'SIGUSR2'] as const) process.on(sig, () => {});

lines.on('line', (line) => {
  const m = JSON.parse(line) as ToHub;
  if (m.t === 'run') {
    run = m;
    gotRun();
  } else if (m.t === 'stop') stop.abort();
  else if (m.t === 'go' || m.t === 'halt') reply?.(m.t === 'go');
  else if (m.t === 'checkpoint') wanted = true;
  else if (m.t === 'written') {
    writing = false;
    for (const w of written.splice(0)) w();
  }
});
// The lifeline: whoever started the run is gone, so nobody waits for its result.
lines.on('close', () => {
  stop.abort();
  reply?.(false);
  if (!run) process.exit(1);
});

await started;
const { plan: wire, opts } = run!;
const plan = fromWire(wire);
const arena = makeArena(plan, 0);
const transport = new MpiTransport(plan, { arena, timeoutMs: opts.timeoutMs, timing: opts.timing }, opts);
// The supervisor writes the checkpoints (on the caller's host, wherever this hub runs).
const checkpoint: CheckpointHooks | undefined = opts.checkpoint && {
  ...opts.checkpoint,
  busy: () => writing,
  requested: () => {
    const w = wanted;
    wanted = false;
    return w;
  },
  take: (n, a, states, pauseMs) => {
    writing = true;
    const t = performance.now();
    const m = { t: 'checkpoint' as const, n, a: encodeArray(a), states: statesToWire(states), ms: 0 };
    m.ms = pauseMs + performance.now() - t; // the loop's pause includes encoding it for the channel
    send(m);
  },
  idle: () => (writing ? new Promise<void>((resolve) => written.push(resolve)) : Promise.resolve()),
};
try {
  // From the first spawn on, failures the addon's watchdog finds go to the supervisor; in
  // spawn mode this process's parent is the supervisor, its lifeline.
  mpi().reportTo(outFd, opts.launch === 'spawn' ? process.ppid : 0);
  reporting = true;
  const outcome = await driveRing(plan, transport, arena, {
    iterations: opts.iterations,
    signal: stop.signal,
    checkpoint,
    resume: opts.resume && { iterations: opts.resume.iterations, array1: decodeArray(opts.resume.array1), states: statesFromWire(opts.resume.states) },
    onStarted: () => {
      send({ t: 'ready', ranks: transport.ranks.map((r) => [r.stage, r.rank, r.pid, r.host]) });
    },
    onBeat: (i) => send({ t: 'beat', i }),
    onOutput: (i, a) => send({ t: 'out', i, a: encodeArray(a) }),
    onIteration: opts.lockstep
      ? (i, a) => {
          send({ t: 'it', i, a: encodeArray(a) });
          return new Promise<boolean>((resolve) => (reply = resolve));
        }
      : undefined,
  });
  const steps = outcome.steps && stepTimesToWire(outcome.steps);
  send({ t: 'done', startS: outcome.startS, totalS: outcome.totalS, stats: outcome.stats.toJSON(), final: encodeArray(outcome.final), steps });
  process.exit(0); // the channel's socket would otherwise keep this process up
} catch (err) {
  const e = err instanceof RunError ? err : new RunError({ reason: 'protocol', detail: (err as Error).message.split('\n')[0] });
  send({ t: 'fail', stage: e.stage, rank: e.rank, reason: e.reason, detail: e.detail });
  try {
    // MPMD: the whole job must go, and mpirun does that on an abort; spawn: our own ranks.
    if (opts.launch === 'mpmd') mpi().abort(0, 1);
    else mpi().killAll();
  } finally {
    process.exit(1);
  }
}
