/**
 * One MPI run, supervised from the caller's process: the hub runs in a child process
 * (spawn mode: `node dist/hub.js`; MPMD: rank 0 of an mpirun), so Open MPI's one-init-per-
 * process limit, its aborts and its exit codes never reach the caller, and any number
 * of runs can follow one another. This side only supervises: it enforces deadlines,
 * ends exactly the run's own processes, turns what happened into one RunError, keeps
 * Open MPI's banners in a log, and forwards onIteration.
 *
 * This file wires one run's events to its parts: the launch and the channel
 * (hub-launch.ts), the run's options, its state and what each event does to it
 * (supervision.ts), the deadlines (deadlines.ts), the ranking of failures (blame.ts). A new
 * source of events (a signal, a timer) is one more line here.
 */
import { createInterface } from 'node:readline';
import type { RingPlan } from '../../pipeline/model.js';
import type { RingOutcome } from '../../loop.js';
import { encodeArray, statesToWire, toWire } from '../channel.js';
import { WATCH_MS } from './deadlines.js';
import { launchHub, type LaunchedHub } from '../launch/hub-launch.js';
import { RunError } from '../../errors.js';
import { STARTUP_LOOK_MS } from './startup-watch.js';
import { Supervision, type SuperviseHooks, type SuperviseOptions } from './supervision.js';

/**
 * Open MPI 4.1's MPI_Comm_spawn across daemons hangs now and then at start-up (1 start in 10
 * to 1 in 4 across two Slurm nodes here; docs/CLUSTERS.md): a spawn-mode run across hosts
 * whose stages did not start, with no host to blame, is started once more in a new hub
 * process, and said. Nothing has run yet, so nothing is lost; the bound doubles. (With
 * --hostfile the supervisor's own start deadline names the hosts, none of them to blame: the
 * same hang, seen in a test run on the hosts bed.) --launch auto runs such a ring under MPMD.
 */
const START_HANG = /^(did not answer its spawn|the stages did not start) within \d+ ms( on .+ \(is every host reachable, by ssh too\?\))?$/;

export type { SuperviseHooks, SuperviseOptions } from './supervision.js';

/** How long a run waits, after its launcher exited, for the hub's side of a named-pipe channel to close. */
const CHANNEL_GRACE_MS = 2000;

export async function superviseMpiRun(plan: RingPlan, opts: SuperviseOptions, hooks: SuperviseHooks): Promise<RingOutcome> {
  const hub = launchHub(plan, opts);
  try {
    return await supervise(plan, opts, hooks, hub);
  } catch (err) {
    const hung = err instanceof RunError && err.reason === 'start' && START_HANG.test(err.detail) && err.host === undefined;
    if (!hung || !hub.remote || opts.launch !== 'spawn' || hooks.signal?.aborted) throw err;
    hooks.onNote?.(`${err.message}: Open MPI's spawn across hosts hangs at start-up now and then; starting once more`);
    return supervise(plan, opts, hooks, launchHub(plan, opts));
  }
}

function supervise(plan: RingPlan, opts: SuperviseOptions, hooks: SuperviseHooks, hub: LaunchedHub): Promise<RingOutcome> {
  return new Promise<RingOutcome>((resolve, reject) => {
    const run = new Supervision(plan, opts, hooks, hub);
    const { wire: _request, checkpoints: cps, ...hubOpts } = opts;
    const from = cps?.resume;
    hub.tell({
      t: 'run',
      plan: toWire(plan),
      opts: {
        ...hubOpts,
        spawnInfo: hub.spawnInfo,
        merged: hub.wire.merged,
        lockstep: Boolean(hooks.onIteration),
        state: cps !== undefined,
        ...(cps ? { checkpoint: { every: cps.every, intervalMs: cps.intervalMs } } : {}),
        ...(from ? { resume: { iterations: from.iterations, array1: encodeArray(from.array1), states: statesToWire(from.states) } } : {}),
      },
    });
    // A checkpoint asked for here (SIGUSR1) is the hub's to take, at its next boundary.
    if (cps) cps.forward = () => hub.tell({ t: 'checkpoint' });
    hub.listen((m) => run.onHubMessage(m), (line) => run.onStderrLine(line));
    createInterface({ input: hub.child.stderr!, crlfDelay: Infinity }).on('line', (line) => run.onStderrLine(line));

    const onAbort = () => run.stop();
    hooks.signal?.addEventListener('abort', onAbort);
    if (hooks.signal?.aborted) onAbort();

    const startupLooks =
      run.startup &&
      setInterval(() => {
        if (!run.lookAtStartup(Date.now())) clearInterval(startupLooks);
      }, STARTUP_LOOK_MS);
    const watch = setInterval(() => run.tick(Date.now()), WATCH_MS);

    hub.child.on('error', (err) => run.onSpawnError(err));
    hub.child.on('close', (code, signal) => {
      clearInterval(startupLooks);
      // The hub's last words may still be on their way (named pipes: launch/hub-launch.ts).
      let grace: NodeJS.Timeout | undefined;
      void Promise.race([hub.channelClosed, new Promise((r) => (grace = setTimeout(r, CHANNEL_GRACE_MS)))]).then(() => {
        clearTimeout(grace);
        clearInterval(watch);
        hooks.signal?.removeEventListener('abort', onAbort);
        if (cps) cps.forward = undefined;
        const end = run.settle(code, signal);
        if ('outcome' in end) resolve(end.outcome);
        else reject(end.error);
      });
    });
  });
}
