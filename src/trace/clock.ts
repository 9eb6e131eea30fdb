/**
 * One clock for every process of a run on one host: CLOCK_MONOTONIC in microseconds, which
 * Node's process.hrtime, C's clock_gettime(CLOCK_MONOTONIC) and Python's time.monotonic_ns
 * all read. performance.now() reads the same clock from a per-thread origin and costs less
 * than hrtime.bigint(), so the origin is measured once per thread and added back: bracketed
 * by two performance.now() reads, the tightest of a few tries (the first hrtime call alone
 * took 0.6 ms here, which a single read would have put into every timestamp).
 */
function measureBase(): number {
  let best = Infinity;
  let base = 0;
  for (let k = 0; k < 20; k++) {
    const a = performance.now();
    const h = Number(process.hrtime.bigint()) / 1e3;
    const b = performance.now();
    if (b - a < best) [best, base] = [b - a, h - ((a + b) / 2) * 1e3];
  }
  return base;
}
const base = measureBase();

/** CLOCK_MONOTONIC, µs. */
export const monoUs = (): number => performance.now() * 1e3 + base;
