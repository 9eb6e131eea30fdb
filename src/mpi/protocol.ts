/**
 * The wire protocol between the hub and a stage process (docs/PROTOCOL.md): its
 * constants, how a stage finds its master in either launch mode, and the host hash
 * the Ready message carries.
 */
import { hostname } from 'node:os';
import type { MpiAddon } from './addon.js';
import type { RingPlan } from '../pipeline/model.js';

export const MAGIC = 0x434c4f50;
/** v1: a header before every step. v2: the sizes once in the hello, a header per epoch of steps. */
export type ProtocolVersion = 1 | 2;
export const CMD_STOP = 0;
/** v1: run one step {CMD_RUN, iteration, n_in, n_out}. */
export const CMD_RUN = 1;
/** v2: run `count` steps {CMD_EPOCH, first iteration, count, 0}, sizes from the step table. */
export const CMD_EPOCH = 2;

/**
 * v2's step table for stage s: iteration i takes n_in = table[2*(i % P)] and n_out =
 * table[2*(i % P) + 1], except iteration 0 whose n_in is `first` (stage 0 then reads the
 * initial array, not the last stage's output of a previous iteration). The same sizes
 * iterationSteps (pipeline/model.ts) derives step by step.
 */
export function stepTable(plan: RingPlan, s: number): { first: number; table: Int32Array } {
  const { stages, schedule } = plan;
  const S = stages.length;
  const P = schedule.length;
  const table = new Int32Array(2 * P);
  for (let e = 0; e < P; e++) {
    const produced = s === 0 ? stages[S - 1].ranks * schedule[(e + P - 1) % P][S - 1] : stages[s - 1].ranks * schedule[e][s - 1];
    table[2 * e] = produced / stages[s].ranks;
    table[2 * e + 1] = schedule[e][s];
  }
  const first = s === 0 ? plan.initialLength / stages[0].ranks : table[0];
  return { first, table };
}

/**
 * A stage process's intercommunicator to the master: the spawn parent, or under one
 * MPMD mpirun, split by MPI_APPNUM and bridged to world rank 0 (docs/PROTOCOL.md).
 */
export function stageComm(m: MpiAddon): { comm: number; local: number | null } {
  const parent = m.getParent();
  if (parent !== null) return { comm: parent, local: null };
  const app = m.appnum();
  const world = m.describe(0);
  if (app === null || app < 1 || world.size < 2) {
    throw new Error('no master: start this from a commloop master (spawn) or as a stage of its MPMD mpirun');
  }
  const local = m.split(0, app, world.rank)!;
  return { comm: m.intercommCreate(local, 0, 0, 0, app), local };
}

/** FNV-1a of the host name, as a signed 32-bit int (docs/PROTOCOL.md, "Ready"). */
export function hostHash(name = hostname()): number {
  let h = 2166136261;
  for (const b of Buffer.from(name)) h = Math.imul(h ^ b, 16777619) >>> 0;
  return h | 0;
}
