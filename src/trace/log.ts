/**
 * Per-step times, kept where they are taken: a preallocated ring per rank (and per stage
 * for the hub) that the hot path writes five doubles into and never grows. Which steps are
 * kept follows from the iteration alone (every `every`-th, the newest `cap`), so the hub
 * knows how many records each rank holds without asking (docs/PROTOCOL.md, "Step times").
 */

/** Doubles per record. A rank's: iteration, scatter start, scatter end (compute starts), compute end, gather end. */
export const REC = 5;
export interface TimingSpec {
  /** Keep iterations 0, every, 2*every, ... */
  every: number;
  /** At most this many records per rank: the newest. */
  cap: number;
}

/** Defaults: every iteration, the newest 10000 (a trace of about 1 MB per rank and stage). */
export const DEFAULT_TIMING: TimingSpec = { every: 1, cap: 10_000 };
export const MAX_CAP = 1_000_000;

/** Where iteration i's record goes in a ring, in doubles; -1 when it is not kept. */
export function slotOf(i: number, spec: TimingSpec): number {
  return i % spec.every === 0 ? ((i / spec.every) % spec.cap) * REC : -1;
}

/**
 * After `iterations` iterations: records kept per rank, how many older ones the cap dropped,
 * and the iteration of the oldest kept one (the kept records are first, first + every, ...).
 */
export function keptCount(iterations: number, spec: TimingSpec): { kept: number; dropped: number; first: number } {
  const taken = Math.ceil(iterations / spec.every);
  const kept = Math.min(taken, spec.cap);
  return { kept, dropped: taken - kept, first: (taken - kept) * spec.every };
}

export function newRing(spec: TimingSpec, buffer?: ArrayBufferLike, offset = 0): Float64Array {
  return buffer ? new Float64Array(buffer, offset, spec.cap * REC) : new Float64Array(spec.cap * REC);
}

/** A ring's kept records, oldest first (what a rank ships at the stop). */
export function chronological(ring: Float64Array, iterations: number, spec: TimingSpec): Float64Array {
  const { kept, first } = keptCount(iterations, spec);
  const out = new Float64Array(kept * REC);
  for (let j = 0; j < kept; j++) {
    const at = slotOf(first + j * spec.every, spec);
    out.set(ring.subarray(at, at + REC), j * REC);
  }
  return out;
}

/**
 * What a run's step times come to, on the hub's clock (µs). `ranks[s]` is null for a stage
 * that reports no times (an exec stage speaking v1, or not marked "trace"): the hub's view
 * of it is all there is.
 */
export interface StepTimes {
  spec: TimingSpec;
  /** Iterations completed; records kept per rank and dropped by the cap. */
  iterations: number;
  kept: number;
  dropped: number;
  /** Per stage: kept records (iteration, scatter start, scatter end, gather end, 0). */
  hub: Float64Array[];
  /** Per stage, per rank: kept records (iteration, t0..t3), already on the hub's clock. */
  ranks: (Float64Array[] | null)[];
  /** Per stage, per rank: host hash (docs/PROTOCOL.md, Ready). */
  hosts: number[][];
  /** The hub's host hash, and per other host the offset added to its times (µs) with the round trip it was measured over. */
  hubHost: number;
  offsets: { host: number; offsetUs: number; rttUs: number }[];
}

/** Clock rounds at start-up (docs/PROTOCOL.md, "Step times"): the best of them is used. */
export const CLOCK_ROUNDS = 8;

/**
 * Per host, the offset that puts its times on the hub's clock, from ping-pong rounds: the
 * hub read t0, broadcast, each rank read its clock on arrival (`got[r]`), the gather came back
 * at t1. The round with the shortest round trip is the tightest bound: offset = (t0 + t1) / 2
 * - got, within ± rtt / 2. Ranks on the hub's host read the same CLOCK_MONOTONIC: offset 0.
 */
export function clockOffsets(
  rounds: { t0: number; t1: number; got: Float64Array }[],
  hosts: number[],
  hubHost: number,
): { perRank: number[]; perHost: { host: number; offsetUs: number; rttUs: number }[] } {
  const best = rounds.reduce((a, b) => (b.t1 - b.t0 < a.t1 - a.t0 ? b : a));
  const perHost: { host: number; offsetUs: number; rttUs: number }[] = [];
  for (const host of new Set(hosts)) {
    if (host === hubHost) continue;
    const offs = hosts.flatMap((h, r) => (h === host ? [(best.t0 + best.t1) / 2 - best.got[r]] : [])).sort((a, b) => a - b);
    perHost.push({ host, offsetUs: offs[offs.length >> 1], rttUs: best.t1 - best.t0 });
  }
  const perRank = hosts.map((h) => (h === hubHost ? 0 : perHost.find((p) => p.host === h)!.offsetUs));
  return { perRank, perHost };
}
