/**
 * The wire protocol between the hub and a stage process (docs/PROTOCOL.md): its
 * constants, how a stage finds its master in either launch mode, and the host hash
 * the Ready message carries.
 */
import { DTYPES, blockOf, type Block, type BlockField, type Dtype, type RingFields } from '../pipeline/fields.js';
import { hostname } from 'node:os';
import type { MpiAddon } from './addon.js';
import { array1LengthAfter, iterationSteps, type RingPlan } from '../pipeline/model.js';

export const MAGIC = 0x434c4f50;
// v1: a header before every step. v2: the sizes once in the hello, a header per epoch of steps.
export const CMD_STOP = 0;
/** v1: run one step {CMD_RUN, iteration, n_in, n_out}. */
export const CMD_RUN = 1;
/** v2: run `count` steps {CMD_EPOCH, first iteration, count, 0}, sizes from the step table. */
export const CMD_EPOCH = 2;
/** v2 with FLAG_STATE, between epochs: every rank sends its state {CMD_SAVE, iteration, 0, 0} (docs/PROTOCOL.md section 5). */
export const CMD_SAVE = 3;
/** v2 with FLAG_STATE, once before the first epoch of a resumed run: every rank gets its state back. */
export const CMD_LOAD = 4;
/** The tag of a state's bytes, rank to hub (save) and hub to rank (load). */
export const TAG_STATE = 7;
/** v2 step-table flag: keep step times and ship them at the stop (docs/PROTOCOL.md, "Step times"). */
export const FLAG_TIMES = 1;
/**
 * v2 step-table flag, MPMD only: steps run on the intercommunicator merged into one
 * intracommunicator (hub rank 0), with Scatterv/Gatherv: 1.6-3x faster than the
 * intercommunicator's collectives over Open MPI's shared memory (bench c-floor-mpmd*).
 */
export const FLAG_MERGED = 2;
/** v2 step-table flag: the stage may be asked for its state, and handed it back (CMD_SAVE, CMD_LOAD). */
export const FLAG_STATE = 4;
/**
 * Set for every process of a run (docs/PROTOCOL.md, "A rank that never returns"): the
 * step deadline in ms. A stage whose compute outlasts it reports itself, naming its rank,
 * before the hub's deadline (which waits 400 ms longer) ends the run naming only the stage.
 */
export const STEP_TIMEOUT_ENV = 'COMMLOOP_STEP_TIMEOUT_MS';

/**
 * v2's step table for stage s: iteration i takes n_in = table[2*(i % P)] and n_out =
 * table[2*(i % P) + 1], except iteration 0 whose n_in is `first` (stage 0 then reads the
 * initial array, not the last stage's output of a previous iteration): iterationSteps's
 * sizes, which the hub steps by, so the two cannot disagree.
 */
export function stepTable(plan: RingPlan, s: number): { first: number; table: Int32Array } {
  const P = plan.schedule.length;
  const table = new Int32Array(2 * P);
  for (let e = 0; e < P; e++) {
    // Group e in steady state: Array1 is what the iteration before (group e-1, mod P) left.
    const step = iterationSteps(plan, e, array1LengthAfter(plan, e + P - 1))[s];
    table[2 * e] = step.nIn;
    table[2 * e + 1] = step.nOut;
  }
  return { first: iterationSteps(plan, 0, plan.initialLength)[s].nIn, table };
}

/**
 * v3's field table for stage s (docs/PROTOCOL.md, "Version 3: fields"): one line per field,
 * `in NAME DTYPE SHAPE` for its input block's fields, then `out ...` for its output's, in
 * packed order; SHAPE is the per-rank shape joined by "x".
 */
export function fieldTableText(fields: RingFields, s: number): Uint8Array {
  const line = (side: string, f: BlockField) => `${side} ${f.name} ${f.dtype} ${f.shape.join('x')}\n`;
  const text = fields.in[s].fields.map((f) => line('in', f)).join('') + fields.out[s].fields.map((f) => line('out', f)).join('');
  return new TextEncoder().encode(text);
}

/**
 * A stage's reading of v3's field table: its input and output blocks. Throws an Error
 * naming the line that is not a field, or blocks that do not fill `nIn` and `nOut` words.
 */
export function parseFieldTable(text: string, nIn: number, nOut: number): { input: Block; output: Block } {
  const sides: Record<'in' | 'out', { name: string; dtype: Dtype; shape: number[] }[]> = { in: [], out: [] };
  for (const line of text.split('\n').slice(0, -1)) {
    const [side, name, dtype, shape, ...rest] = line.split(' ');
    const dims = (shape ?? '').split('x').map(Number);
    if ((side !== 'in' && side !== 'out') || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(name ?? '') || !(dtype in DTYPES) || rest.length || !dims.every((d) => Number.isInteger(d) && d >= 1)) {
      throw new Error(`field table line "${line}" is not "in|out NAME DTYPE SHAPE"`);
    }
    sides[side].push({ name, dtype: dtype as Dtype, shape: dims });
  }
  const input = blockOf(sides.in);
  const output = blockOf(sides.out);
  if (input.words !== nIn || output.words !== nOut) {
    throw new Error(`field table packs ${input.words} words in and ${output.words} out; the step table says ${nIn} and ${nOut}`);
  }
  return { input, output };
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

/** A host hash as a name: `names`' own, else `host #` and its hex (a host the caller cannot name). */
export function hostLabel(hash: number, names: ReadonlyMap<number, string>): string {
  return names.get(hash) ?? `host #${(hash >>> 0).toString(16)}`;
}
