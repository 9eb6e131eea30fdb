// The problem the MCMC example solves, shared by its two TypeScript stages (sampler.mjs and
// likelihood.mjs): the line's true parameters, the grid, the noise, the sampler's settings, and
// counter-based random numbers (a hash of stream, walker, iteration and index, so no stage
// keeps a generator and every run draws the same numbers on every transport).
//
// The model (model.c) is a Lorentzian line on G points x_g = 10 g / G:
//     flux(x) = a / (1 + (x - b)^2)
// W walkers (the shapes in mcmc.json set W and G) each explore the two parameters (a, b).

/** The parameters the synthetic data are made from, in the order of a walker's theta. */
export const TRUE = [2.0, 4.5];
export const NAMES = ['a', 'b'];
/** Standard deviation of the data's Gaussian noise. */
export const SIGMA = 0.05;

/** Walkers start uniformly in this box, [low, high) per parameter. */
export const START = [
  [1.0, 3.0],
  [3.5, 5.5],
];
/** Standard deviation of the Gaussian proposal per parameter (about 1.5 posterior sigmas). */
export const STEP = [0.03, 0.02];
/** Iterations dropped before the posterior's running sums start. */
export const BURN_IN = 1000;
/** The sampler prints its estimate every this many iterations. */
export const REPORT_EVERY = 500;

/** Streams of random numbers: one per use, so no two uses draw the same number. */
export const STREAM = { start: 1, propose: 2, accept: 3, noise: 4 };

/** Grid point g of G, the same double as model.c computes (one multiply, one divide). */
export const gridX = (g, G) => (10 * g) / G;

/** The model in JavaScript, operation for operation as model.c computes it. */
export const lorentzian = (a, b, x) => a / (1 + (x - b) * (x - b));

// lowbias32 (C. Wellons): a 32-bit integer hash with good avalanche.
function mix(h) {
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b);
  h ^= h >>> 16;
  return h >>> 0;
}
const SEED = 0x5eed2027;

/** A uniform double in (0, 1) with 53 random bits, from (stream, i, j, k): integers below 2^32. */
export function uniform(stream, i, j, k) {
  const h = mix(mix(mix(mix(SEED ^ stream) ^ i) ^ j) ^ k);
  const hi = h >>> 5; // 27 bits
  const lo = mix(h ^ 0x9e3779b9) >>> 6; // 26 bits
  return (hi * 67108864 + lo + 0.5) / 9007199254740992;
}

/** A standard normal from (stream, i, j, k), by Box-Muller on two uniforms. */
export function normal(stream, i, j, k) {
  const u1 = uniform(stream, i, j, 2 * k);
  const u2 = uniform(stream, i, j, 2 * k + 1);
  return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
}
