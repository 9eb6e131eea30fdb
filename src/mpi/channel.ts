/**
 * What a supervisor and its hub process say to each other: the hub writes JSON lines
 * prefixed with MARK, the supervisor plain JSON lines. Under MPMD they travel on rank
 * 0's stdout and stdin, which mpirun forwards (to a hub on another host too); in spawn
 * mode on fds 3 and 4, since the singleton's orted shares the hub's stdin and stdout.
 */
import type { FailureReason } from '../errors.js';
import type { RingPlan } from '../pipeline/model.js';
import type { CBackend } from '../stage/kernel.js';
import type { StepTimes, TimingSpec } from '../trace/log.js';
import type { RunStates, StateFormat } from '../checkpoint/state.js';
import type { WireIterStats } from '../trace/stats.js';
import type { Message } from '../message.js';

export const MARK = '@@commloop ';
/** "IN,OUT": the hub's channel fds (spawn mode: 3,4; unset under mpirun: stdin, stdout). */
export const HUB_FDS_ENV = 'COMMLOOP_HUB_FDS';
/**
 * "IN,OUT": the hub's channel as two named pipes the supervisor made, where the MPI's
 * launcher forwards rank 0's stdout too late to be the channel (MPICH's Hydra: its teardown
 * after a rank's death dropped the hub's report of which rank it was). MPMD on this host.
 */
export const HUB_FIFOS_ENV = 'COMMLOOP_HUB_FIFOS';

/** A failure report a stage may print on stderr before it aborts (docs/PROTOCOL.md). */
export const STAGE_FAIL = /^commloop-fail: (\d+) (\d+) (.*)$/;

export interface HubOptions {
  iterations: number;
  cBackend: CBackend;
  launch: 'spawn' | 'mpmd';
  /** The project's stages step on merged intracommunicators (the wire's choice, src/mpi/impl/openmpi-wire.ts). */
  merged: boolean;
  spawnInfo: Record<string, string>;
  timeoutMs: number;
  /** Send each iteration's Array1 and wait for go/halt: the caller has an onIteration. */
  lockstep: boolean;
  /** Keep step times (src/trace/log.ts) and send them with the result. */
  timing?: TimingSpec;
  /** Stages that keep state get FLAG_STATE: the run checkpoints or resumes. */
  state: boolean;
  /** Take checkpoints (the supervisor writes them): by count and by time; 0 for neither. */
  checkpoint?: { every: number; intervalMs: number };
  /** Start from a checkpoint. */
  resume?: { iterations: number; array1: string; states: WireStates };
}

/** RunStates with each rank's bytes as base64. */
export type WireStates = ([format: number, bytes: string][] | null)[];

export function statesToWire(states: RunStates): WireStates {
  return states.map((ranks) => ranks && ranks.map((r) => [r.format, Buffer.from(r.bytes.buffer, r.bytes.byteOffset, r.bytes.byteLength).toString('base64')]));
}

export function statesFromWire(states: WireStates): RunStates {
  return states.map((ranks) => ranks && ranks.map(([format, b]) => ({ format: format as StateFormat, bytes: new Uint8Array(Buffer.from(b, 'base64')) })));
}

/** Supervisor -> hub. */
export type ToHub =
  | { t: 'run'; plan: WirePlan; opts: HubOptions }
  | { t: 'stop' }
  | { t: 'go' }
  | { t: 'halt' }
  /** A checkpoint at the next boundary (SIGUSR1, the caller). */
  | { t: 'checkpoint' }
  /** The last checkpoint sent is on disk: the next may come. */
  | { t: 'written' };

/** Hub -> supervisor. Arrays travel as base64 of their float64 bytes. */
export type FromHub =
  | { t: 'ready'; ranks: [stage: number, rank: number, pid: number, host: number][] }
  | { t: 'beat'; i: number }
  /** From the hub's watchdog thread every 500 ms: the hub and its host are still there. */
  | { t: 'pulse'; host: string }
  | { t: 'it'; i: number; a: string }
  | { t: 'out'; i: number; a: string }
  /** A checkpoint for the supervisor to write: after `n` iterations, Array1 and the states. */
  | { t: 'checkpoint'; n: number; a: string; states: WireStates; ms: number }
  | { t: 'done'; startS: number; totalS: number; stats: WireIterStats; final: string; steps?: WireStepTimes }
  | { t: 'fail'; stage?: string; rank?: number; host?: string; reason: FailureReason; detail: string };

/** A RingPlan that survives JSON: an initial array as base64. */
export type WirePlan = Omit<RingPlan, 'initial'> & { initial: number | string };

export function encodeArray(a: Message): string {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');
}

export function decodeArray(s: string): Message {
  const b = Buffer.from(s, 'base64');
  const out = new Float64Array(b.length / 8);
  new Uint8Array(out.buffer).set(b);
  return out;
}

export function toWire(plan: RingPlan): WirePlan {
  return { ...plan, initial: typeof plan.initial === 'number' ? plan.initial : encodeArray(plan.initial) };
}

export function fromWire(plan: WirePlan): RingPlan {
  return { ...plan, initial: typeof plan.initial === 'number' ? plan.initial : decodeArray(plan.initial) };
}

/** StepTimes with its arrays as base64. */
export type WireStepTimes = Omit<StepTimes, 'hub' | 'ranks'> & { hub: string[]; ranks: (string[] | null)[] };

export function stepTimesToWire(t: StepTimes): WireStepTimes {
  return { ...t, hub: t.hub.map(encodeArray), ranks: t.ranks.map((rs) => rs && rs.map(encodeArray)) };
}

export function stepTimesFromWire(t: WireStepTimes): StepTimes {
  return { ...t, hub: t.hub.map(decodeArray), ranks: t.ranks.map((rs) => rs && rs.map(decodeArray)) };
}
