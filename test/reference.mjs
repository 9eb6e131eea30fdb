// An independent, deliberately plain reference of the ring: one array per stage,
// no shared memory, no threads, no WASM. Tests compare every backend against it.
export function referenceRing(procs, schedule, iterations) {
  const S = 3;
  let a = new Float64Array(procs * schedule[0][0]).fill(1);
  const stage = (input, p, k, kind) => {
    const m = input.length / p;
    const out = new Float64Array(p * k);
    for (let r = 0; r < p; r++) {
      let v;
      if (kind === 'ts') {
        let s = 0;
        for (let i = 0; i < m; i++) s += input[r * m + i];
        v = s / m / 2;
      } else {
        v = input[r * m] / 2;
      }
      for (let j = 0; j < k; j++) out[r * k + j] = v + (r * k + j);
    }
    return out;
  };
  for (let i = 0; i < iterations; i++) {
    const [n1, n2, n3] = schedule[i % schedule.length];
    a = stage(stage(stage(a, procs, n2, 'ts'), procs, n3, 'c'), procs, n1, 'ts');
  }
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i];
  return { checksum: s, final: a, stages: S };
}

/** Full-mantissa test data: no two neighbours share an exponent pattern, sums round. */
export function fullMantissa(n) {
  const x = new Float64Array(n);
  for (let i = 0; i < n; i++) x[i] = 1e9 / (i + 0.5) - 0.3;
  return x;
}

/** Bitwise equality of two Float64Arrays (NaN-safe, -0-safe). */
export function sameBits(a, b) {
  if (a.length !== b.length) return false;
  const x = new BigUint64Array(a.buffer, a.byteOffset, a.length);
  const y = new BigUint64Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

/**
 * A plain reference for any ring: stages [{ ranks, size, f(x, k, rank, nranks, iteration) -> Float64Array(k) }],
 * Array1 filled with `initial` (length = last stage's ranks * size).
 */
export function referencePipeline(stages, initial, iterations) {
  const last = stages[stages.length - 1];
  let a = new Float64Array(last.ranks * last.size).fill(initial);
  for (let it = 0; it < iterations; it++) {
    for (const st of stages) {
      const m = a.length / st.ranks;
      const out = new Float64Array(st.ranks * st.size);
      for (let r = 0; r < st.ranks; r++) out.set(st.f(a.subarray(r * m, (r + 1) * m), st.size, r, st.ranks, it), r * st.size);
      a = out;
    }
  }
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i];
  return { checksum: s, final: a };
}

/** The fixtures' kernels (test/fixtures/pipeline and exec_stage), written again from their formulas. */
export const FIXTURE_KERNELS = {
  shift: (x, k, r, n, it) => Float64Array.from({ length: k }, (_, j) => x[(j + 1) % x.length] / 2 + it + r),
  third: (x, k, r, n) => Float64Array.from({ length: k }, (_, j) => x[j % x.length] / 3 + (n - r)),
  quarter: (x, k, r) => Float64Array.from({ length: k }, (_, j) => x[j % x.length] / 4 + (r + 1)),
};

/**
 * referencePipeline with a size schedule, as `--sizes g1/g2/...` cycles its groups: stages
 * [{ ranks, f }] as there, sizes[g][s] = the output elements per rank of stage s in group g,
 * iteration i uses group i % G. Array1 of iteration 0 is ranks[S-1] * sizes[0][S-1] elements of
 * `initial` (sized by the first group's a1, docs/PIPELINES.md "Sizes").
 */
export function referenceSchedule(stages, sizes, initial, iterations) {
  const S = stages.length;
  let a = new Float64Array(stages[S - 1].ranks * sizes[0][S - 1]).fill(initial);
  for (let it = 0; it < iterations; it++) {
    const group = sizes[it % sizes.length];
    for (const [s, st] of stages.entries()) {
      const k = group[s];
      const m = a.length / st.ranks;
      if (!Number.isInteger(m)) throw new Error(`referenceSchedule: stage ${s} gets ${a.length} elements, not divisible by its ${st.ranks} ranks`);
      const out = new Float64Array(st.ranks * k);
      for (let r = 0; r < st.ranks; r++) out.set(st.f(a.subarray(r * m, (r + 1) * m), k, r, st.ranks, it), r * k);
      a = out;
    }
  }
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i];
  return { checksum: s, final: a };
}

/**
 * A plain reference for a ring of fields: stages [{ ranks, fields: [{ name, dtype, shape, to }],
 * f(input, output, ctx) }], where f is the stage's formula written again on plain typed arrays.
 * Each field is concatenated over its producer's ranks and split over the next stage's along
 * its first axis, or given whole ("to": "all"): arrays, no blocks, no offsets. `initial` holds
 * Array1's fields whole. Returns the last stage's fields whole.
 */
export function referenceFields(stages, initial, iterations) {
  const CTOR = { float64: Float64Array, float32: Float32Array, int64: BigInt64Array, int32: Int32Array, int16: Int16Array, int8: Int8Array, uint64: BigUint64Array, uint32: Uint32Array, uint16: Uint16Array, uint8: Uint8Array, complex128: Float64Array, complex64: Float32Array };
  const lanes = (d) => (d.startsWith('complex') ? 2 : 1);
  const count = (f) => f.shape.reduce((a, b) => a * b, 1) * lanes(f.dtype);
  let whole = initial;
  let producer = stages[stages.length - 1];
  for (let it = 0; it < iterations; it++) {
    for (const st of stages) {
      const out = {};
      for (const f of st.fields) out[f.name] = new CTOR[f.dtype](count(f) * st.ranks);
      for (let r = 0; r < st.ranks; r++) {
        const input = {};
        for (const f of producer.fields) {
          const all = whole[f.name];
          const per = all.length / st.ranks;
          input[f.name] = f.to === 'all' ? all.slice() : all.slice(r * per, (r + 1) * per);
        }
        const output = {};
        for (const f of st.fields) output[f.name] = new CTOR[f.dtype](count(f));
        st.f(input, output, { rank: r, nranks: st.ranks, iteration: it });
        for (const f of st.fields) out[f.name].set(output[f.name], r * count(f));
      }
      whole = out;
      producer = st;
    }
  }
  return whole;
}

/** The fields fixtures' formulas (test/fixtures/fields), written again. */
export const FIELD_KERNELS = {
  sample(input, output, { rank, iteration }) {
    let s = 0;
    for (const v of input.x) s += v;
    for (const v of input.n) s += v;
    let g = 0;
    for (const v of input.g) g += v;
    s += g * 0.5;
    for (let j = 0; j < output.p.length; j++) output.p[j] = s / 4 + rank + j;
    for (let j = 0; j < output.k.length; j++) output.k[j] = BigInt(iteration * 10 + rank + j);
    for (let j = 0; j < output.z.length; j += 2) [output.z[j], output.z[j + 1]] = [s + j, -rank];
  },
  model(input, output, { rank, iteration }) {
    let s = 0;
    for (const v of input.p) s += v;
    for (const v of input.k) s += Number(v);
    input.z.forEach((v, i) => (s += v * (i + 1)));
    for (let j = 0; j < output.x.length; j++) output.x[j] = s / 8 + j;
    for (let j = 0; j < output.n.length; j++) output.n[j] = ((iteration + rank + j) % 7) - 3;
    for (let j = 0; j < output.g.length; j++) output.g[j] = (rank + iteration + j) & 255;
  },
};

/** Bitwise equality of two typed arrays of any type. */
export function sameBytes(a, b) {
  if (a.constructor !== b.constructor || a.length !== b.length) return false;
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/**
 * The formula of test/fixtures/property/fields.* (read it in fields.c), written again for
 * referenceFields: a stage whose output fields are `outFields` ([{ dtype }], in order). It
 * tells integers from floats by the arrays' types (BigInt and integer arrays against
 * Float64Array / Float32Array) and complex outputs by their dtype; h is kept as a BigInt.
 */
export function propertyFieldsKernel(outFields) {
  const isFloat = (a) => a instanceof Float64Array || a instanceof Float32Array;
  return (input, output, { rank, iteration }) => {
    let s = 0;
    let h = 0n;
    for (const a of Object.values(input)) {
      for (const v of a) {
        if (isFloat(a)) {
          s += v;
          if (v > 0) h += 1n;
        } else {
          s += Number(v);
          h += BigInt(v);
        }
      }
    }
    outFields.forEach((f, k) => {
      const a = output[Object.keys(output)[k]];
      const lanes = f.dtype.startsWith('complex') ? 2 : 1;
      for (let j = 0; j < a.length / lanes; j++) {
        let m = (BigInt(rank * 7 + iteration * 5 + j * 3 + k * 11) + h) % 100n;
        if (m < 0n) m += 100n;
        const c = Number(m) - 50;
        const re = s / 256 + c;
        if (a instanceof BigInt64Array) a[j] = m - 50n;
        else if (a instanceof BigUint64Array) a[j] = m;
        else if (!isFloat(a)) a[j] = f.dtype.startsWith('u') ? Number(m) : c;
        else if (lanes === 1) a[j] = a instanceof Float32Array ? Math.fround(re) : re;
        else {
          const im = c - s / 256;
          a[2 * j] = a instanceof Float32Array ? Math.fround(re) : re;
          a[2 * j + 1] = a instanceof Float32Array ? Math.fround(im) : im;
        }
      }
    });
  };
}
