/** A worker thread of the threads transport: runs its executor's share of each dispatch. */
import { parentPort, workerData } from 'node:worker_threads';
import { CMD, CMD_STOP, DONE, FAILED, GO, ITER, NIN, NOUT, STAGE, waitChange } from './control.js';
import { Executor, type ExecutorInit } from '../stage/executor.js';
import { stdoutToStderr } from '../stage/stdout.js';

interface ThreadData {
  init: ExecutorInit;
  ctrl: Int32Array;
  spins: number;
}

const { init, ctrl, spins } = workerData as ThreadData;
const port = parentPort!;
const executor = await Executor.create(init);
stdoutToStderr(() => executor.printing);
const others = init.executors - 1;
// Read before saying ready: the hub may publish the first dispatch the moment it hears.
let seen = Atomics.load(ctrl, GO);
port.postMessage({ type: 'ready' });

for (;;) {
  let go = seen;
  while (go === seen) go = waitChange(ctrl, GO, seen, spins, Infinity);
  seen = go;
  if (Atomics.load(ctrl, CMD) === CMD_STOP) break;
  const step = {
    stage: Atomics.load(ctrl, STAGE),
    iteration: Atomics.load(ctrl, ITER),
    nIn: Atomics.load(ctrl, NIN),
    nOut: Atomics.load(ctrl, NOUT),
  };
  try {
    executor.runShare(step);
  } catch (err) {
    Atomics.compareExchange(ctrl, FAILED, 0, init.index + 1);
    port.postMessage({ type: 'error', message: (err as Error).message });
  }
  if (Atomics.add(ctrl, DONE, 1) + 1 === others) Atomics.notify(ctrl, DONE);
}
