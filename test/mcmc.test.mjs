// The MCMC example (examples/mcmc, issue 27): a sampler (ts, one rank, its chain as state), a
// Lorentzian model in C (4 ranks) and a likelihood (ts, 2 ranks, each walker's log-probability
// as state), as a ring of fields. On synthetic data from known parameters it recovers them
// within their posterior's spread, as a least-squares fit to the same data does, with the same
// bits on threads (C as WebAssembly) and over MPI (native C); a run resumed from a checkpoint
// taken halfway through ends on the same bytes and prints the same estimates as the run that
// was never interrupted.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { cpSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readArray } from '../dist/index.js';
import { syntheticData } from '../examples/mcmc/likelihood.mjs';
import { SIGMA, TRUE } from '../examples/mcmc/problem.mjs';
import { estimate } from '../examples/mcmc/sampler.mjs';
import { MPI_MISSING, cli, haveMpi, pipelineFiles, root } from './helpers.mjs';

if (!haveMpi()) throw new Error(MPI_MISSING);

const PIPELINE = join(root, 'examples', 'mcmc', 'mcmc.json');
const N = 3001; // the sampler reads iteration i's verdict at iteration i + 1: 3001 iterations print the chain after 3000
const HALF = 1500;
const W = 32;
const { dir } = pipelineFiles('mcmc');

// What examples/mcmc/README.md shows: the checksum of Array1 (logp, accept) and the sampler's lines.
const CHECKSUM = -551.1227233192076;
const PRINTED = [
  '[sampler 0] iteration 500: burning in (1000 iterations)',
  '[sampler 0] iteration 1000: burning in (1000 iterations)',
  '[sampler 0] iteration 1500: a = 1.9745 ± 0.0200 (true 2.00), b = 4.5061 ± 0.0145 (true 4.50), acceptance 0.416',
  '[sampler 0] iteration 2000: a = 1.9740 ± 0.0198 (true 2.00), b = 4.5061 ± 0.0143 (true 4.50), acceptance 0.415',
  '[sampler 0] iteration 2500: a = 1.9740 ± 0.0197 (true 2.00), b = 4.5062 ± 0.0143 (true 4.50), acceptance 0.412',
  '[sampler 0] iteration 3000: a = 1.9738 ± 0.0199 (true 2.00), b = 4.5062 ± 0.0144 (true 4.50), acceptance 0.411',
];

/** Runs the example for N iterations with --json: the result and the sampler's printed lines. */
function run(args) {
  const r = cli(['--pipeline', PIPELINE, '-i', String(N), '--json', ...args]);
  assert.is(r.status, 0, r.stderr);
  return { result: JSON.parse(r.stdout), lines: r.stderr.split('\n').filter((l) => l.startsWith('[sampler 0] ')) };
}
/**
 * The independent reference: the least-squares fit of the line to the same data (Gauss-Newton
 * from the truth), and its parameters' standard deviations from the inverse of J^T J. The
 * model is close to linear near the fit, so the posterior's mean and spread are these.
 */
function leastSquares(G) {
  const y = syntheticData(G);
  let [a, b] = TRUE;
  let cov;
  for (let it = 0; it < 20; it++) {
    const H = [0, 0, 0];
    const g = [0, 0];
    for (let k = 0; k < G; k++) {
      const d = (10 * k) / G - b;
      const q = 1 + d * d;
      const r = y[k] - a / q;
      const J = [1 / q, (2 * a * d) / (q * q)];
      H[0] += J[0] * J[0];
      H[1] += J[0] * J[1];
      H[2] += J[1] * J[1];
      g[0] += J[0] * r;
      g[1] += J[1] * r;
    }
    const det = H[0] * H[2] - H[1] * H[1];
    a += (H[2] * g[0] - H[1] * g[1]) / det;
    b += (H[0] * g[1] - H[1] * g[0]) / det;
    cov = [H[2] / det, H[0] / det];
  }
  return { mean: [a, b], std: cov.map((v) => SIGMA * Math.sqrt(v)) };
}

const checkpoint = (ck, iterations) => join(ck, `checkpoint-${String(iterations).padStart(12, '0')}`);
const manifest = (folder) => JSON.parse(readFileSync(join(folder, 'manifest.json'), 'utf8'));

// The uninterrupted run, on threads, keeping its checkpoints at 1500, 3000 and the end (3001).
const ckU = join(dir, 'uninterrupted');
let uninterrupted;
const U = () => (uninterrupted ??= run(['--transport', 'threads', '--checkpoint', ckU, '--checkpoint-every', String(HALF), '--checkpoint-keep', '3']));

const mcmc = suite('examples/mcmc: a sampler, a C model and a likelihood as a ring of fields');

mcmc('recovers a and b within 3 posterior sigmas, as a least-squares fit does, with the same bits on threads (C as WebAssembly) and over MPI (native C)', () => {
  const u = U();
  const m = run(['--transport', 'mpi', '--launch', 'mpmd']);
  assert.equal([u.result.cBackend, m.result.cBackend], ['wasm', 'native']);
  assert.is(u.result.checksum, CHECKSUM);
  assert.is(m.result.checksum, CHECKSUM);
  assert.equal(m.result.fields, u.result.fields);
  assert.equal(Object.keys(u.result.fields), ['logp', 'accept']);
  assert.equal(u.lines, PRINTED);
  assert.equal(m.lines, PRINTED);
  // The estimate from the chain itself: the sampler's state in the final checkpoint.
  const e = estimate(readArray(join(checkpoint(ckU, N), 'state', '0-sampler.0.npy')), W);
  assert.is(e.samples, W * (N - 1 - 1000)); // every walker at every iteration after the burn-in
  const fit = leastSquares(40);
  TRUE.forEach((t, d) => {
    assert.ok(Math.abs(e.mean[d] - t) < 3 * e.std[d], `parameter ${d}: ${e.mean[d]} ± ${e.std[d]}, true ${t}`);
    // The chain agrees with the fit: its mean within a tenth of a sigma, its spread within 5%.
    assert.ok(Math.abs(e.mean[d] - fit.mean[d]) < 0.1 * fit.std[d], `parameter ${d}: mean ${e.mean[d]}, least squares ${fit.mean[d]} ± ${fit.std[d]}`);
    assert.ok(Math.abs(e.std[d] / fit.std[d] - 1) < 0.05, `parameter ${d}: sigma ${e.std[d]}, least squares ${fit.std[d]}`);
  });
  assert.ok(PRINTED[5].includes(`a = ${e.mean[0].toFixed(4)} ± ${e.std[0].toFixed(4)}`));
});

mcmc('resumed from the checkpoint at iteration 1500 (taken on threads, resumed over MPI): the same bytes and the same printed estimates', () => {
  const u = U();
  const ckR = join(dir, 'resumed');
  // The uninterrupted run's checkpoint at 1500, taken in the middle of the run, as a killed run would leave it.
  cpSync(checkpoint(ckU, HALF), checkpoint(ckR, HALF), { recursive: true });
  const r = run(['--transport', 'mpi', '--launch', 'mpmd', '--checkpoint', ckR, '--resume']);
  assert.is(r.result.resumedFrom, HALF);
  assert.is(r.result.checksum, CHECKSUM);
  assert.equal(r.result.fields, u.result.fields);
  // The resumed sampler's first iteration is 1500: it prints from there on, the same lines.
  assert.equal(r.lines, PRINTED.slice(2));
  // Final Array1 (logp, accept) and every stage's state (the chain, the log-probabilities), byte for byte.
  const [want, got] = [manifest(checkpoint(ckU, N)), manifest(checkpoint(ckR, N))];
  assert.equal(Object.keys(got.files), ['array1.logp.npy', 'array1.accept.npy', 'state/0-sampler.0.npy', 'state/2-likelihood.0.npy', 'state/2-likelihood.1.npy']);
  assert.equal(got.files, want.files);
  assert.equal([want.taken.transport, got.taken.transport], ['threads', 'mpi']);
});

mcmc.run();
