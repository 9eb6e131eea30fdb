// Stage "likelihood" of the MCMC example: for each of this rank's walkers, the
// log-probability of its proposal's spectrum (`flux`, float64 [n, G]) given the synthetic
// data, and the Metropolis decision: accept when log u < logp(proposal) - logp(current), with
// u from the hash of (walker, iteration). It returns each walker's current log-probability
// (`logp`, float64 [n]) and the decision (`accept`, int32 [n]); iteration 0 accepts every
// walker's starting point.
//
// log p = -chi^2 / 2 with chi^2 = sum_g ((flux_g - data_g) / SIGMA)^2 (the prior is flat, up
// to a constant), -infinity where the model says the parameters are outside the prior
// (`status` 1); `status` 2 (the fields' shapes do not fit the model) stops the run. The data: the model at the true parameters plus Gaussian noise of SIGMA,
// drawn from the hash of the grid point, so every rank and every run sees the same data.
//
// Each walker's current log-probability is the stage's state (save/load, docs/CHECKPOINTS.md).
import { SIGMA, STREAM, TRUE, gridX, lorentzian, normal, uniform } from './problem.mjs';

/** The synthetic data on a grid of G points. */
export function syntheticData(G) {
  const data = new Float64Array(G);
  for (let g = 0; g < G; g++) data[g] = lorentzian(TRUE[0], TRUE[1], gridX(g, G)) + SIGMA * normal(STREAM.noise, g, 0, 0);
  return data;
}

const datasets = new Map(); // by G
const currents = new Map(); // by rank: each of its walkers' current log-probability

export function transform(input, output, ctx) {
  const [n, G] = ctx.input.flux.shape;
  if (!datasets.has(G)) datasets.set(G, syntheticData(G));
  const data = datasets.get(G);
  const i = ctx.iteration;
  let cur = currents.get(ctx.rank);
  if (i === 0) currents.set(ctx.rank, (cur = new Float64Array(n)));
  else if (!cur) throw new Error(`no log-probabilities at iteration ${i}: a resumed run must load the likelihood's state`);
  const { flux, status } = input;
  for (let j = 0; j < n; j++) {
    if (status[j] > 1) throw new Error(`model status ${status[j]}: theta [n, 2], flux [n, G] and status [n] must agree on n (see mcmc.json)`);
    let chi2 = 0;
    for (let g = 0; g < G; g++) {
      const r = (flux[j * G + g] - data[g]) / SIGMA;
      chi2 += r * r;
    }
    const lp = status[j] === 0 ? -0.5 * chi2 : -Infinity;
    const w = ctx.rank * n + j; // the walker's index in the sampler's theta
    const accept = i === 0 || Math.log(uniform(STREAM.accept, w, i, 0)) < lp - cur[j];
    if (accept) cur[j] = lp;
    output.logp[j] = cur[j];
    output.accept[j] = accept ? 1 : 0;
  }
}

export function save(ctx) {
  return currents.get(ctx.rank)?.slice();
}

export function load(state, ctx) {
  if (!(state instanceof Float64Array)) throw new Error(`expected log-probabilities as float64, got ${state?.constructor?.name}`);
  currents.set(ctx.rank, state.slice());
}
