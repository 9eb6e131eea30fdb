/**
 * What a ring is: its stages, in order, and the sizes each iteration uses.
 * Pure data and arithmetic; transports and the scheduler read a RingPlan.
 */
import { UsageError } from './errors.js';

export type StageKind = 'ts' | 'c';

export interface StageSpec {
  name: string;
  kind: StageKind;
  ranks: number;
  /** ts: a built-in transform name; c: a built-in kernel name (see kernels.ts). */
  fn: string;
}

export interface RingPlan {
  stages: StageSpec[];
  /** schedule[e][s]: output elements per rank of stage s in iterations i with i % schedule.length === e. */
  schedule: number[][];
  /** Every element of Array1 at iteration 0. */
  initialValue: number;
  /** Elements in Array1 at iteration 0: the last stage's output under schedule[0]. */
  initialLength: number;
  /** Largest input, in elements, that stage s ever receives; sizes its buffer. */
  maxInput: number[];
}

/** One stage's shape within one iteration. */
export interface StageStep {
  stage: number;
  iteration: number;
  /** Input and output elements per rank. */
  nIn: number;
  nOut: number;
}

/** The original CommLoop ring: ts1 -> c -> ts2, each with `procs` ranks; sizes are n1,n2,n3. */
export function demoStages(procs: number): StageSpec[] {
  return [
    { name: 'ts1', kind: 'ts', ranks: procs, fn: 'halfmean' },
    { name: 'c', kind: 'c', ranks: procs, fn: 'halffirst' },
    { name: 'ts2', kind: 'ts', ranks: procs, fn: 'halfmean' },
  ];
}

/** `--sizes n1,n2,n3` names Array1/4, Array2, Array3; as stage outputs that is [n2, n3, n1]. */
export function demoSchedule(sizes: number[][]): number[][] {
  return sizes.map(([n1, n2, n3]) => [n2, n3, n1]);
}

export function makePlan(stages: StageSpec[], schedule: number[][], initialValue = 1): RingPlan {
  const S = stages.length;
  const last = stages[S - 1];
  const total = (s: number, e: number) => stages[s].ranks * schedule[e][s];
  const initialLength = total(S - 1, 0);
  const maxInput = stages.map(() => 0);
  const take = (s: number, elems: number, from: string) => {
    if (elems % stages[s].ranks !== 0) {
      throw new UsageError(
        `sizes do not chain: stage "${stages[s].name}" gets ${elems} elements from ${from}, ` +
          `not divisible by its ${stages[s].ranks} ranks`,
      );
    }
    maxInput[s] = Math.max(maxInput[s], elems);
  };
  take(0, initialLength, 'the initial array');
  schedule.forEach((_, e) => {
    const prev = (e + schedule.length - 1) % schedule.length;
    take(0, total(S - 1, prev), `stage "${last.name}"`);
    for (let s = 1; s < S; s++) take(s, total(s - 1, e), `stage "${stages[s - 1].name}"`);
  });
  return { stages, schedule, initialValue, initialLength, maxInput };
}

/**
 * The shapes of iteration i, given how many elements Array1 holds now. Inputs are
 * derived from what the previous stage produced, so a schedule may change sizes
 * between iterations.
 */
export function iterationSteps(plan: RingPlan, iteration: number, array1Length: number): StageStep[] {
  const outs = plan.schedule[iteration % plan.schedule.length];
  let elems = array1Length;
  return plan.stages.map((st, s) => {
    const step = { stage: s, iteration, nIn: elems / st.ranks, nOut: outs[s] };
    elems = st.ranks * outs[s];
    return step;
  });
}
