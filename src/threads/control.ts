/**
 * The control block shared by the hub and its worker threads: a few Int32 slots in
 * a SharedArrayBuffer, handed off with Atomics (piscina's atomicsWaitLoop idea).
 * Slots that different threads write sit on different cache lines.
 */
export const GO = 0; // hub bumps it to publish a dispatch (or a stop)
export const CMD = 1; // CMD_RUN, CMD_STOP, CMD_SAVE or CMD_LOAD, valid when GO changes
export const STAGE = 2;
export const ITER = 3;
export const NIN = 4;
export const NOUT = 5;
export const DONE = 16; // workers add 1 when their share of the dispatch is done
export const FAILED = 32; // first failing executor index + 1, else 0
// FAILED + 1 + i: rank + 1 that thread i is running now (0 when idle), so a timeout names it.
export const MAX_THREADS = 256;
export const SLOTS = FAILED + 1 + MAX_THREADS;

export const CMD_RUN = 0;
export const CMD_STOP = 1;
/** Each thread posts its ranks' states ({ type: 'states' }), for a checkpoint at iteration ITER. */
export const CMD_SAVE = 2;
/** Each thread takes its ranks' states from its port (receiveMessageOnPort) and loads them. */
export const CMD_LOAD = 3;

export function newControl(): Int32Array {
  return new Int32Array(new SharedArrayBuffer(SLOTS * 4));
}

/**
 * Spin briefly, then sleep, until ctrl[slot] !== value or timeoutMs passes.
 * Spinning pays off only when the other side has a core to itself, which the pool
 * size ensures; the sleep bounds the waste when it does not.
 * Returns the value seen last.
 */
export function waitChange(ctrl: Int32Array, slot: number, value: number, spins: number, timeoutMs: number): number {
  for (let i = 0; i < spins; i++) {
    const v = Atomics.load(ctrl, slot);
    if (v !== value) return v;
  }
  Atomics.wait(ctrl, slot, value, timeoutMs);
  return Atomics.load(ctrl, slot);
}
