/** The checkpoint writer's thread (writer.ts): writes one checkpoint at a time, off the loop's thread. */
import { parentPort } from 'node:worker_threads';
import { writeCheckpoint, type Checkpoint } from './store.js';

parentPort!.on('message', (m: { dir: string; keep: number; cp: Checkpoint }) => {
  const t0 = performance.now();
  try {
    const { path, bytes } = writeCheckpoint(m.dir, m.cp, m.keep);
    parentPort!.postMessage({ ok: true, path, bytes, ms: performance.now() - t0 });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    parentPort!.postMessage({ ok: false, error: e.code ? `${e.code}: ${e.message}` : e.message });
  }
});
