/**
 * The TypeScript side of the ring's arithmetic. It mirrors wasm/commloop_kernel.c
 * operation for operation (same order, same rounding), so every backend gives the
 * same bits; test/kernel.test.mjs holds them to it.
 */

export interface StageContext {
  rank: number;
  nranks: number;
  iteration: number;
}

export type Transform = (input: Float64Array, output: Float64Array, ctx: StageContext) => void;

/** Left-to-right sum: the order is part of the contract. */
export function sum(x: Float64Array): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i];
  return s;
}

/** The TS stages: y[j] = sum(x) / m / 2 + (rank*k + j). */
export const halfmean: Transform = (input, output, ctx) => {
  const half = sum(input) / input.length / 2;
  const base = ctx.rank * output.length;
  for (let j = 0; j < output.length; j++) output[j] = half + (base + j);
};

/** The C stage's formula in TS, for reference and tests: y[j] = x[0] / 2 + (rank*k + j). */
export const halffirst: Transform = (input, output, ctx) => {
  const half = input[0] / 2;
  const base = ctx.rank * output.length;
  for (let j = 0; j < output.length; j++) output[j] = half + (base + j);
};

/** The run's checksum: the final array summed left to right. */
export const checksum = sum;

/** The ts stages' built-ins, by the name after "builtin:". */
export const TS_TRANSFORMS: Record<string, Transform> = { halfmean };
