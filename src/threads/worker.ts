/** A worker thread of the threads transport: runs its executor's share of each dispatch. */
import { parentPort, receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { CMD, CMD_LOAD, CMD_SAVE, CMD_STOP, DONE, FAILED, GO, ITER, NIN, NOUT, STAGE, waitChange } from './control.js';
import { RunError } from '../errors.js';
import { Executor, type ExecutorInit, type OwnedState } from '../stage/executor.js';
import { stdoutToStderr } from '../stage/stdout.js';
import type { ThreadMessage } from './transport.js';

interface ThreadData {
  init: ExecutorInit;
  ctrl: Int32Array;
  spins: number;
  /** Where CMD_LOAD's states come from, read synchronously (this thread never runs its event loop). */
  states: MessagePort;
}

const { init, ctrl, spins, states } = workerData as ThreadData;
const port = parentPort!;
const post = (m: ThreadMessage) => port.postMessage(m);
const executor = await Executor.create(init);
stdoutToStderr(() => executor.printing);
const all = init.executors;
const runningSlot = FAILED + 1 + init.index;
const running = (rank: number) => Atomics.store(ctrl, runningSlot, rank + 1);
// Read before saying ready: the hub may publish the first dispatch the moment it hears.
let seen = Atomics.load(ctrl, GO);
post({ type: 'ready' });

for (;;) {
  let go = seen;
  while (go === seen) go = waitChange(ctrl, GO, seen, spins, Infinity);
  seen = go;
  const cmd = Atomics.load(ctrl, CMD);
  if (cmd === CMD_STOP) break;
  const step = {
    stage: Atomics.load(ctrl, STAGE),
    iteration: Atomics.load(ctrl, ITER),
    nIn: Atomics.load(ctrl, NIN),
    nOut: Atomics.load(ctrl, NOUT),
  };
  try {
    if (cmd === CMD_SAVE) post({ type: 'states', states: executor.saveStates(step.iteration) });
    else if (cmd === CMD_LOAD) executor.loadStates(step.iteration, (receiveMessageOnPort(states)?.message ?? []) as OwnedState[]);
    else executor.runShare(step, running);
  } catch (err) {
    Atomics.compareExchange(ctrl, FAILED, 0, init.index + 1);
    const e = err instanceof RunError ? err : new RunError({ reason: 'user-code', detail: (err as Error).message });
    post({ type: 'error', failure: { stage: e.stage, rank: e.rank, reason: e.reason, detail: e.detail } });
  }
  Atomics.store(ctrl, runningSlot, 0);
  if (Atomics.add(ctrl, DONE, 1) + 1 === all) Atomics.notify(ctrl, DONE);
}
