/**
 * A run's step times as a Chrome Trace Event file (the JSON object format), which Perfetto
 * (ui.perfetto.dev) and chrome://tracing open: process 0 is the hub, process s+1 stage s,
 * one thread per rank; complete events for every kept step, an instant at each iteration's
 * start, and flow arrows from each step's gather to the next step's scatter, so the ring
 * reads as a chain. Timestamps are µs from the first kept step, on the hub's clock.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { REC, type StepTimes } from './log.js';

export interface TraceMeta {
  /** Each stage, with the bytes of a rank's input and output in a step (the first group of sizes). */
  stages: { name: string; kind: string; bytes?: { in: number; out: number } }[];
  /** Host hash -> name, as far as the caller knows them. */
  hostName: (hash: number) => string;
  /** Extra fields for the file's otherData (version, command, transport...). */
  about: Record<string, unknown>;
}

/** Boundaries rounded to the nanosecond, so an event's end and the next one's start compare exactly. */
const ns = (us: number) => Math.round(us * 1000) / 1000;

export function writeChromeTrace(file: string, t: StepTimes, meta: TraceMeta): { events: number } {
  const S = t.hub.length;
  const n = t.kept;
  const origin = n ? t.hub[0][1] : 0;
  const at = (us: number) => ns(us - origin);
  const fd = openSync(file, 'w');
  let events = 0;
  let chunk: string[] = [];
  const emit = (e: object) => {
    chunk.push((events++ ? ',\n' : '') + JSON.stringify(e));
    if (chunk.length >= 4096) flush();
  };
  const flush = () => {
    writeSync(fd, chunk.join(''));
    chunk = [];
  };
  const slice = (pid: number, tid: number, name: string, start: number, end: number, iteration: number, bytes?: number) => {
    const ts = at(start);
    emit({ name, cat: 'step', ph: 'X', ts, dur: Math.max(0, ns(at(end) - ts)), pid, tid, args: bytes === undefined ? { iteration } : { iteration, bytes } });
  };
  try {
    writeSync(fd, '{"traceEvents":[\n');
    const hubHost = meta.hostName(t.hubHost);
    emit({ name: 'process_name', ph: 'M', ts: 0, pid: 0, tid: 0, args: { name: `hub (${hubHost})` } });
    emit({ name: 'process_sort_index', ph: 'M', ts: 0, pid: 0, tid: 0, args: { sort_index: 0 } });
    emit({ name: 'thread_name', ph: 'M', ts: 0, pid: 0, tid: 0, args: { name: `hub @ ${hubHost}` } });
    meta.stages.forEach((st, s) => {
      const pid = s + 1;
      emit({ name: 'process_name', ph: 'M', ts: 0, pid, tid: 0, args: { name: `stage ${st.name} (${st.kind})` } });
      emit({ name: 'process_sort_index', ph: 'M', ts: 0, pid, tid: 0, args: { sort_index: pid } });
      t.hosts[s].forEach((host, r) => {
        emit({ name: 'thread_name', ph: 'M', ts: 0, pid, tid: r, args: { name: `rank ${r} @ ${meta.hostName(host)}` } });
        emit({ name: 'thread_sort_index', ph: 'M', ts: 0, pid, tid: r, args: { sort_index: r } });
      });
    });
    let flow = 0;
    // Where each step's arrow leaves: the gather of the rank that finished computing last, the one the
    // hub waited for (or the hub's gather, for a stage without times).
    let from: { pid: number; tid: number; ts: number; iteration: number } | undefined;
    for (let j = 0; j < n; j++) {
      const k = j * REC;
      const iteration = t.hub[0][k];
      emit({ name: `iteration ${iteration}`, cat: 'iteration', ph: 'i', s: 'g', ts: at(t.hub[0][k + 1]), pid: 0, tid: 0 });
      for (let s = 0; s < S; s++) {
        const h = t.hub[s];
        // The hub's scatter and gather carry every rank's bytes.
        const b = meta.stages[s].bytes;
        const ranksOf = t.ranks[s]?.length ?? 1;
        slice(0, 0, `scatter ${meta.stages[s].name}`, h[k + 1], h[k + 2], iteration, b && b.in * ranksOf);
        slice(0, 0, `gather ${meta.stages[s].name}`, h[k + 2], h[k + 3], iteration, b && b.out * ranksOf);
        const ranks = t.ranks[s];
        let to: { pid: number; tid: number; ts: number } = { pid: 0, tid: 0, ts: at((h[k + 1] + h[k + 2]) / 2) };
        let next = { pid: 0, tid: 0, ts: at((h[k + 2] + h[k + 3]) / 2), iteration };
        if (ranks) {
          let slow = 0;
          ranks.forEach((rec, r) => {
            slice(s + 1, r, 'scatter-wait', rec[k + 1], rec[k + 2], iteration, b?.in);
            slice(s + 1, r, 'compute', rec[k + 2], rec[k + 3], iteration);
            slice(s + 1, r, 'gather', rec[k + 3], rec[k + 4], iteration, b?.out);
            if (rec[k + 3] > ranks[slow][k + 3]) slow = r;
          });
          // Arrive just before rank 0's input is in (inside its scatter-wait); leave from the middle of the last rank's gather.
          const r0 = ranks[0];
          to = { pid: s + 1, tid: 0, ts: ns(at(r0[k + 2]) - Math.min(0.001, (r0[k + 2] - r0[k + 1]) / 2)) };
          next = { pid: s + 1, tid: slow, ts: at((ranks[slow][k + 3] + ranks[slow][k + 4]) / 2), iteration };
        }
        // Steps are consecutive within an iteration, and across iterations only when every one is kept.
        if (from && (s > 0 || t.spec.every === 1) && (s > 0 ? from.iteration === iteration : from.iteration === iteration - 1)) {
          const id = flow++;
          emit({ name: 'ring', cat: 'ring', ph: 's', id, pid: from.pid, tid: from.tid, ts: from.ts });
          emit({ name: 'ring', cat: 'ring', ph: 'f', bp: 'e', id, pid: to.pid, tid: to.tid, ts: to.ts });
        }
        from = next;
      }
    }
    if (chunk.length) flush();
    const other = {
      ...meta.about,
      clock: 'CLOCK_MONOTONIC of each host, in µs from the first kept step, put on the hub\'s clock by an offset per host measured at start-up',
      hubHost,
      hostOffsets: t.offsets.map((o) => ({ host: meta.hostName(o.host), offsetUs: o.offsetUs, rttUs: o.rttUs })),
      every: t.spec.every,
      cap: t.spec.cap,
      iterations: t.iterations,
      keptIterations: t.kept,
      droppedIterations: t.dropped,
    };
    writeSync(fd, `\n],\n"displayTimeUnit":"ns",\n"otherData":${JSON.stringify(other)}}\n`);
  } finally {
    closeSync(fd);
  }
  return { events };
}
