// Stage "sampler" of the MCMC example (one rank): W independent random-walk Metropolis
// chains over (a, b). Each iteration it reads the likelihood's verdict on the proposals it
// made the iteration before (`accept`, int32 [W]; `logp`, float64 [W], each walker's current
// log-probability), moves every accepted walker to its proposal, adds the walkers' positions
// to the posterior's running sums once past the burn-in, and proposes the next parameters
// (`theta`, float64 [W, 2]). Iteration 0 proposes the walkers' starting points.
//
// The chain is the stage's state (docs/CHECKPOINTS.md): save() hands it to a checkpoint and
// load() takes it back, so a resumed run goes on to the same chain, bit for bit. Random
// numbers come from a hash of (walker, iteration, parameter): nothing else to keep.
import { BURN_IN, NAMES, REPORT_EVERY, START, STEP, STREAM, TRUE, normal, uniform } from './problem.mjs';

const D = TRUE.length;
// The state of a chain of W walkers, one Float64Array: every walker's current parameters,
// every walker's last proposal, then counts and the running sums of the posterior.
const layout = (W) => {
  const current = 0, proposal = W * D, n = 2 * W * D;
  return { current, proposal, n, accepted: n + 1, sum: n + 2, sumsq: n + 2 + D, length: n + 2 + 2 * D };
};
const chains = new Map(); // by rank (ranks on one worker thread share this module)

/** The posterior's mean and standard deviation per parameter, and the acceptance rate, from a chain's sums. */
export function estimate(chain, W) {
  const L = layout(W);
  const n = chain[L.n];
  const mean = [], std = [];
  for (let d = 0; d < D; d++) {
    const m = chain[L.sum + d] / n;
    mean.push(m);
    std.push(Math.sqrt(Math.max(0, chain[L.sumsq + d] / n - m * m)));
  }
  return { mean, std, acceptance: chain[L.accepted] / n, samples: n };
}

export function transform(input, output, ctx) {
  const [W, nd] = ctx.output.theta.shape;
  if (nd !== D) throw new Error(`theta must be [W, ${D}] (got [${ctx.output.theta.shape}])`);
  const L = layout(W);
  const i = ctx.iteration;
  let s = chains.get(ctx.rank);
  if (i === 0) {
    s = new Float64Array(L.length);
    chains.set(ctx.rank, s);
    for (let w = 0; w < W; w++)
      for (let d = 0; d < D; d++) s[L.current + w * D + d] = START[d][0] + (START[d][1] - START[d][0]) * uniform(STREAM.start, w, 0, d);
  } else {
    if (!s) throw new Error(`no chain at iteration ${i}: a resumed run must load the sampler's state`);
    // The verdict on iteration i - 1's proposals.
    for (let w = 0; w < W; w++) {
      if (input.accept[w] === 1) for (let d = 0; d < D; d++) s[L.current + w * D + d] = s[L.proposal + w * D + d];
    }
    if (i > BURN_IN) {
      for (let w = 0; w < W; w++) {
        s[L.n] += 1;
        s[L.accepted] += input.accept[w];
        for (let d = 0; d < D; d++) {
          const v = s[L.current + w * D + d];
          s[L.sum + d] += v;
          s[L.sumsq + d] += v * v;
        }
      }
    }
    if (i % REPORT_EVERY === 0) {
      if (i <= BURN_IN) console.log(`iteration ${i}: burning in (${BURN_IN} iterations)`);
      else {
        const e = estimate(s, W);
        const parts = NAMES.map((name, d) => `${name} = ${e.mean[d].toFixed(4)} ± ${e.std[d].toFixed(4)} (true ${TRUE[d].toFixed(2)})`);
        console.log(`iteration ${i}: ${parts.join(', ')}, acceptance ${e.acceptance.toFixed(3)}`);
      }
    }
  }
  // Next proposals: at iteration 0 the starting points themselves.
  for (let w = 0; w < W; w++) {
    for (let d = 0; d < D; d++) {
      const k = w * D + d;
      const step = i === 0 ? 0 : STEP[d] * normal(STREAM.propose, w, i, d);
      s[L.proposal + k] = s[L.current + k] + step;
      output.theta[k] = s[L.proposal + k];
    }
  }
}

export function save(ctx) {
  return chains.get(ctx.rank)?.slice();
}

export function load(state, ctx) {
  if (!(state instanceof Float64Array)) throw new Error(`expected the chain as float64, got ${state?.constructor?.name}`);
  chains.set(ctx.rank, state.slice());
}
