/**
 * The wire protocol between the hub and a stage process (docs/PROTOCOL.md): its
 * constants, how a stage finds its master in either launch mode, and the host hash
 * the Ready message carries.
 */
import { hostname } from 'node:os';
import type { MpiAddon } from './addon.js';

export const MAGIC = 0x434c4f50;
export const VERSION = 1;
export const CMD_STOP = 0;
export const CMD_RUN = 1;

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
