// The threads transport through the library API: any pool size gives the reference's
// bits, and the loop stops when asked.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { runRing } from '../dist/index.js';
import { referenceRing, sameBits } from './reference.mjs';

const base = { transport: 'threads', cBackend: 'wasm', iterations: 4 };

const pool = suite('threads pool');

for (const [procs, threads] of [[1, 1], [3, 1], [3, 2], [3, 3], [5, 2], [4, 4]]) {
  pool(`${procs} ranks on ${threads} threads: final array equals the reference bit for bit`, async () => {
    const sizes = [[7, 33, 129]];
    const r = await runRing({ ...base, procs, threads, sizes });
    const ref = referenceRing(procs, sizes, 4);
    assert.is(r.threads, threads);
    assert.is(r.final.length, procs * 7);
    assert.ok(sameBits(r.final, ref.final));
    assert.is(r.checksum, ref.checksum);
  });
}

pool('native and wasm C backends give the same bits', async () => {
  const sizes = [[10, 1000, 4096]];
  const a = await runRing({ ...base, procs: 3, sizes, cBackend: 'wasm' });
  const b = await runRing({ ...base, procs: 3, sizes, cBackend: 'native' });
  assert.ok(sameBits(a.final, b.final));
  assert.is(a.checksum, referenceRing(3, sizes, 4).checksum);
});

pool.run();

const stopping = suite('stopping early');

stopping('onIteration returning false stops after that iteration', async () => {
  const seen = [];
  const r = await runRing({
    ...base,
    procs: 2,
    sizes: [[10, 100, 100]],
    iterations: 50,
    onIteration: (i, a) => {
      seen.push([i, a.length]);
      return i < 2;
    },
  });
  assert.equal(seen, [[0, 20], [1, 20], [2, 20]]);
  assert.is(r.iterations, 3);
  assert.is(r.stopped, true);
  assert.is(r.checksum, referenceRing(2, [[10, 100, 100]], 3).checksum);
});

stopping('an aborted signal ends the loop before the next iteration', async () => {
  const stop = new AbortController();
  const r = await runRing({
    ...base,
    procs: 2,
    sizes: [[10, 10, 10]],
    iterations: 1000,
    signal: stop.signal,
    onIteration: (i) => {
      if (i === 4) stop.abort();
    },
  });
  assert.is(r.iterations, 5);
  assert.is(r.stopped, true);
});

stopping.run();
