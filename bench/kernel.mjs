// Kernel micro-benchmark: ns per element of the WASM and the native build of the C
// kernel (halfmean: one read pass and one write pass), on the same data, same process.
// Prints one JSON line per size.
import { ARENA_BASE, instantiateKernel, nativeKernels } from '../dist/internal.js';

function bench(fn, minMs) {
  const times = [];
  const end = performance.now() + minMs;
  do {
    const t = performance.now();
    fn();
    times.push(performance.now() - t);
  } while (performance.now() < end || times.length < 5);
  times.sort((a, b) => a - b);
  return { medianMs: times[times.length >> 1], minMs: times[0], reps: times.length };
}

const minMs = Number(process.argv[2] ?? 400);
for (const n of [1_000, 1_000_000]) {
  const pages = Math.ceil((ARENA_BASE + 2 * n * 8) / 65536);
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  const k = instantiateKernel(memory);
  const f64 = new Float64Array(memory.buffer);
  const inAt = ARENA_BASE / 8;
  const outAt = inAt + n;
  for (let i = 0; i < n; i++) f64[inAt + i] = 1e9 / (i + 0.5) - 0.3;
  const input = f64.subarray(inAt, inAt + n);
  const output = f64.subarray(outAt, outAt + n);
  const native = nativeKernels();
  // Repeat small sizes inside one timing so the clock's resolution does not dominate.
  const inner = Math.max(1, Math.floor(1e6 / n));
  const wasm = bench(() => {
    for (let r = 0; r < inner; r++) k.commloop_halfmean(inAt * 8, n, outAt * 8, n, 0, 1, 0);
  }, minMs);
  const nat = bench(() => {
    for (let r = 0; r < inner; r++) native.run('halfmean', input, output, 0, 1, 0);
  }, minMs);
  const perElem = (ms) => (ms * 1e6) / (n * inner);
  process.stdout.write(
    JSON.stringify({
      kind: 'kernel',
      n,
      wasmNsPerElem: perElem(wasm.medianMs),
      nativeNsPerElem: perElem(nat.medianMs),
      wasmMinNsPerElem: perElem(wasm.minMs),
      nativeMinNsPerElem: perElem(nat.minMs),
      ratio: wasm.medianMs / nat.medianMs,
    }) + '\n',
  );
}
