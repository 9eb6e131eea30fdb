/**
 * A run's identity: what a checkpoint must agree with before a run may resume from it (the
 * stages, their code, ranks, the size schedule and the initial array), and only that. The
 * transport, the C backend and the wire are not part of it: the bits are the same on all of
 * them, so a checkpoint taken under threads resumes under MPI and the other way round.
 */
import { createHash } from 'node:crypto';
import { basename } from 'node:path';
import type { RingPlan, RingStage } from '../pipeline/model.js';
import type { FieldSpec } from '../pipeline/fields.js';

export interface Identity {
  stages: { name: string; kind: string; ranks: number; code: string }[];
  schedule: number[][];
  initialLength: number;
  /** The initial value, or the sha256 of the initial array's bytes. */
  initial: number | string;
  /** A ring of fields: each stage's output fields as declared (Array1's are the last stage's). */
  fields?: FieldSpec[][];
}

/**
 * Which code a stage runs, by file name (not path: a project moved to another folder or
 * another machine resumes) and function; a `c` stage by its source only, since the native and
 * WASM builds of one source are the same kernel.
 */
function codeOf(st: RingStage): string {
  const file = st.origin === undefined ? '' : st.origin.startsWith('builtin:') ? st.origin : basename(st.origin);
  if (st.kind === 'ts') return `${file}:${st.export}`;
  if (st.kind === 'python') return `${file}:${st.function}`;
  if (st.kind === 'exec') return [file, ...st.command!.slice(1)].join(' ') + (st.state ? ' (with state)' : '');
  return file;
}

export function identityOf(plan: RingPlan): Identity {
  const initial = typeof plan.initial === 'number' ? plan.initial : sha256(new Uint8Array(plan.initial.buffer, plan.initial.byteOffset, plan.initial.byteLength));
  return {
    stages: plan.stages.map((st) => ({ name: st.name, kind: st.kind, ranks: st.ranks, code: codeOf(st) })),
    schedule: plan.schedule,
    initialLength: plan.initialLength,
    initial,
    ...(plan.fields ? { fields: plan.fields.declared } : {}),
  };
}

export function identityHash(id: Identity): string {
  return sha256(Buffer.from(JSON.stringify(id)));
}

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** What differs between a checkpoint's identity and this run's, in words; undefined when nothing does. */
export function identityDiff(theirs: Identity, ours: Identity): string | undefined {
  const list = (id: Identity) => id.stages.map((s) => s.name).join(', ');
  if (theirs.stages.length !== ours.stages.length || theirs.stages.some((s, i) => s.name !== ours.stages[i].name)) {
    return `the stages are ${list(theirs)} there and ${list(ours)} here`;
  }
  for (let i = 0; i < ours.stages.length; i++) {
    const [a, b] = [theirs.stages[i], ours.stages[i]];
    if (a.kind !== b.kind) return `stage "${b.name}" is of kind ${a.kind} there and ${b.kind} here`;
    if (a.ranks !== b.ranks) return `stage "${b.name}" has ${a.ranks} ranks there and ${b.ranks} here`;
    if (a.code !== b.code) return `stage "${b.name}" runs ${a.code} there and ${b.code} here`;
  }
  const fieldsOf = (id: Identity, s: number) => (id.fields?.[s] ?? []).map((f) => `${f.name} ${f.dtype} [${f.shape.join(', ')}]${f.to === 'all' ? ' to all' : ''}`).join(', ') || 'none';
  for (let s = 0; s < ours.stages.length; s++) {
    if (fieldsOf(theirs, s) !== fieldsOf(ours, s)) return `stage "${ours.stages[s].name}" has fields ${fieldsOf(theirs, s)} there and ${fieldsOf(ours, s)} here`;
  }
  // As --sizes says them: Array1 (the last stage's output) first.
  const sched = (s: number[][]) => s.map((g) => [g[g.length - 1], ...g.slice(0, -1)].join(',')).join('/');
  if (sched(theirs.schedule) !== sched(ours.schedule)) return `the sizes are ${sched(theirs.schedule)} there and ${sched(ours.schedule)} here`;
  if (theirs.initialLength !== ours.initialLength || theirs.initial !== ours.initial) {
    const show = (id: Identity) => (typeof id.initial === 'number' ? `${id.initialLength} x ${id.initial}` : `an array of ${id.initialLength} (sha256 ${id.initial.slice(0, 12)})`);
    return `the initial array is ${show(theirs)} there and ${show(ours)} here`;
  }
  return undefined;
}
