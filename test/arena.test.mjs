// The shared arena and the message layout (src/arena.ts, src/message.ts), without a run:
// where each rank's part of a message lives, what a checkpoint's Array1 file holds, and how
// big an arena may be: 4 GiB where WebAssembly kernels address it (threads, --c-backend
// wasm), up to 16 GiB elsewhere (MPI's hub, threads with native C).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ARENA_BASE, lastOfPart, layout, makeArena, makePlan, messageBytes, messageFromBytes, messageView, partIndex, partView, regionBytes, wasmAddressed } from '../dist/internal.js';

const stage = (name, kind, ranks) => ({ name, kind, ranks, protocol: 2, times: true, state: false });
/** The demo ring's three stages at `procs` ranks, with per-rank sizes a1, a2, a3 (Array1..3). */
const demo = (procs, a1, a2, a3) => makePlan([stage('ts1', 'ts', procs), stage('c', 'c', procs), stage('ts2', 'ts', procs)], [[a2, a3, a1]], 1, 'unused.wasm');

test('a rank part starts where the previous rank part ends; a region is cache-line aligned', () => {
  // A message at byte 1 MiB, 3 elements a rank: rank 2's part is elements 6..8 of the message.
  assert.is(partIndex(ARENA_BASE, 3, 2), ARENA_BASE / 8 + 6);
  assert.is(lastOfPart(ARENA_BASE, 3, 2), ARENA_BASE / 8 + 8);
  assert.is(regionBytes(1), 64);
  assert.is(regionBytes(8), 64);
  assert.is(regionBytes(9), 128);
  const f64 = new Float64Array(new SharedArrayBuffer(ARENA_BASE + 64 * 8));
  partView(f64, ARENA_BASE, 3, 1).set([4.5, 5.5, 6.5]);
  assert.equal([...messageView(f64, ARENA_BASE, 9)], [0, 0, 0, 4.5, 5.5, 6.5, 0, 0, 0]);
  // Views share the arena's memory: nothing is copied.
  assert.is(partView(f64, ARENA_BASE, 3, 1).buffer, f64.buffer);
});

test('the demo ring lays out one buffer a stage, in order, each rank part after the last', () => {
  const plan = demo(2, 10, 1000, 1000000);
  const { buffers, outputs } = layout(plan);
  assert.equal(buffers, [ARENA_BASE, ARENA_BASE + regionBytes(20), ARENA_BASE + regionBytes(20) + regionBytes(2000)]);
  assert.equal(outputs, [buffers[1], buffers[2], buffers[0]]);
  const arena = makeArena(plan);
  assert.ok(arena.buffer instanceof SharedArrayBuffer);
  assert.is(arena.memory, undefined);
  assert.is(arena.f64.length, arena.buffer.byteLength / 8);
});

test('a checkpoint Array1 file is a float64 .npy that reads back bit for bit, and refuses another count', () => {
  const m = Float64Array.of(0.1, -2.5e-300, Number.MAX_VALUE, -0, 1 / 3);
  const bytes = messageBytes(m);
  assert.equal(new Uint8Array(messageFromBytes(bytes, 'array1.npy', 5).buffer), new Uint8Array(m.buffer));
  assert.throws(() => messageFromBytes(bytes, 'array1.npy', 4), (e) => e.message === 'array1.npy is not 4 float64 values');
});

test('an arena of more than 4 GiB is laid out where no WebAssembly kernel addresses it, and refused where one does', () => {
  // Array3 = 335544320 doubles a rank, 2 ranks: 5 GiB of stage buffers (laid out, not allocated).
  const plan = demo(2, 10, 1000, 335544320);
  const { pages } = layout(plan, 0, false);
  assert.ok(pages * 65536 > 2 ** 32, `${pages} pages`);
  assert.is(wasmAddressed(plan, 'mpi', 'wasm'), false); // MPI: a WebAssembly stage has a memory of its own
  assert.is(wasmAddressed(plan, 'threads', 'native'), false);
  assert.is(wasmAddressed(plan, 'threads', 'wasm'), true);
  assert.throws(
    () => layout(plan, 0, true),
    (e) => e.message === '--sizes need 5368725312 bytes of stage buffers; with C stages as WebAssembly on threads the shared arena is a wasm32 memory and holds at most 4293918720 (--c-backend native or --transport mpi: up to 17178755072)',
  );
  assert.throws(() => layout(demo(2, 10, 1000, 1100000000), 0, false), (e) => e.message === '--sizes need 17600016192 bytes of stage buffers; the shared arena holds at most 17178755072');
});

test.run();
