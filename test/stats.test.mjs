// IterStats (src/trace/stats.ts): iteration times in constant memory. Against an exact sort
// of the same times (fixed seeds, several distributions): count, first, last, min and max
// exact, the mean within 1e-12, the median and p95 within the stated relative error; the
// JSON form round-trips, merge equals adding everything, out-of-range times clamp, and the
// JSON stays small however many times went in.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { IterStats } from '../dist/internal.js';

const EPS = IterStats.RELATIVE_ERROR;
/** The stated bound, plus room for the ulps of the s <-> ns conversion. */
const BOUND = EPS * (1 + 1e-9);

/** mulberry32: a fixed seed gives the same times on every machine. */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

const DISTRIBUTIONS = {
  'log-uniform 1e-7..10 s': (r) => 1e-7 * 1e8 ** r(),
  'uniform 1.5..3 µs': (r) => 1.5e-6 + 1.5e-6 * r(),
  'constant 2.5 µs': () => 2.5e-6,
  'bimodal 1.7 µs and 3% at 40 ms': (r) => (r() < 0.03 ? 0.04 : 1.7e-6) * (1 + 0.01 * r()),
  'pareto from 1 ms, alpha 1.2': (r) => 1e-3 / (1 - r()) ** (1 / 1.2),
  'normal-ish 1 ms ± 0.1 ms': (r) => 1e-3 + 1e-4 * (r() + r() + r() + r() - 2),
};

function sample(name, n, seed) {
  const r = rng(seed);
  return Float64Array.from({ length: n }, () => DISTRIBUTIONS[name](r));
}

/** Shewchuk's exact partials (Python's math.fsum): the reference sum. */
function fsum(xs) {
  const partials = [];
  for (let x of xs) {
    let i = 0;
    for (let y of partials) {
      if (Math.abs(x) < Math.abs(y)) [x, y] = [y, x];
      const hi = x + y;
      const lo = y - (hi - x);
      if (lo) partials[i++] = lo;
      x = hi;
    }
    partials.length = i;
    partials.push(x);
  }
  return partials.reduce((a, b) => a + b, 0);
}

/** What summary() approximates, by sorting every time. */
function exact(times) {
  const n = times.length;
  const s = Float64Array.from(times).sort();
  return {
    count: n,
    firstS: times[0],
    lastS: times[n - 1],
    meanS: fsum(times) / n,
    minS: s[0],
    maxS: s[n - 1],
    medianS: (s[(n - 1) >> 1] + s[n >> 1]) / 2,
    p95S: s[Math.ceil((n * 95) / 100) - 1],
  };
}

function statsOf(times) {
  const st = new IterStats();
  for (const t of times) st.add(t);
  return st;
}

const rel = (got, want) => (want === 0 ? Math.abs(got) : Math.abs(got - want) / Math.abs(want));

function assertClose(got, want, what) {
  assert.is(got.count, want.count, `${what}: count`);
  for (const k of ['firstS', 'lastS', 'minS', 'maxS']) assert.is(got[k], want[k], `${what}: ${k}`);
  assert.ok(rel(got.meanS, want.meanS) <= 1e-12, `${what}: mean ${got.meanS} vs ${want.meanS}`);
  for (const k of ['medianS', 'p95S']) {
    assert.ok(rel(got[k], want[k]) <= BOUND, `${what}: ${k} ${got[k]} vs ${want[k]} (relative ${rel(got[k], want[k])} > ${EPS})`);
  }
}

const accuracy = suite('IterStats against an exact sort');

accuracy('states its precision: 2^-11 relative, 42 octaves of 1024 buckets from 1 ns', () => {
  assert.is(EPS, 2 ** -11);
  assert.is(IterStats.BUCKETS, 42 * 1024 + 2, 'and one bucket each for below 1 ns and above 73 min');
});

for (const name of Object.keys(DISTRIBUTIONS)) {
  for (const [n, seed] of [[4, 1], [5, 2], [10, 3], [101, 4], [1000, 5], [100_000, 6]]) {
    accuracy(`${name}, ${n} times: exact count/first/last/min/max, mean to 1e-12, median and p95 within 2^-11`, () => {
      const times = sample(name, n, seed);
      assertClose(statsOf(times).summary(), exact(times), `${name} n=${n}`);
    });
  }
}

accuracy('a constant gives its value exactly, everywhere', () => {
  const s = statsOf(new Float64Array(1000).fill(2.5e-6)).summary();
  assert.equal(s, { count: 1000, firstS: 2.5e-6, lastS: 2.5e-6, meanS: 2.5e-6, minS: 2.5e-6, maxS: 2.5e-6, medianS: 2.5e-6, p95S: 2.5e-6 });
});

accuracy('one or two times give an exact median; three give it within 2^-11', () => {
  assert.equal(statsOf([3.3e-6]).summary(), { count: 1, firstS: 3.3e-6, lastS: 3.3e-6, meanS: 3.3e-6, minS: 3.3e-6, maxS: 3.3e-6, medianS: 3.3e-6, p95S: 3.3e-6 });
  const two = statsOf([5e-3, 1e-6]).summary();
  assert.is(two.medianS, (5e-3 + 1e-6) / 2);
  assert.is(two.p95S, 5e-3);
  const three = [2e-6, 7.77e-4, 1e-6];
  const s = statsOf(three).summary();
  assert.ok(rel(s.medianS, 2e-6) <= BOUND, `median ${s.medianS}`);
  assert.is(s.p95S, 7.77e-4);
  assertClose(s, exact(three), 'three');
});

accuracy('every time from 1 ns to 73 min comes back within 2^-11, bucket edges included', () => {
  const r = rng(7);
  const values = [];
  for (let e = 0; e < 42; e++) {
    for (const m of [0, 1, 511, 512, 1023]) {
      const edge = 2 ** e * (1 + m / 1024) * 1e-9;
      values.push(edge, edge * (1 - 2 ** -52), edge * (1 + 2 ** -52));
    }
    for (let k = 0; k < 50; k++) values.push(2 ** (e + r()) * 1e-9);
  }
  for (const v of values.filter((v) => v >= 1e-9 && v < 2 ** 42 * 1e-9)) {
    // Anchors below and above, so v is neither min nor max: the histogram alone answers.
    const s = statsOf([0, v, 1e9]).summary();
    assert.ok(rel(s.medianS, v) <= BOUND, `${v} s came back as ${s.medianS} (relative ${rel(s.medianS, v)})`);
  }
});

accuracy('the mean stays exact over 1e7 times, where a plain sum drifts', () => {
  const st = new IterStats();
  let plain = 0;
  for (let i = 0; i < 1e7; i++) {
    st.add(0.1);
    plain += 0.1;
  }
  assert.ok(rel(plain / 1e7, 0.1) > 1e-12, 'the plain sum should have drifted');
  assert.ok(rel(st.summary().meanS, 0.1) <= 1e-15, `mean ${st.summary().meanS}`);
});

const edges = suite('IterStats edge cases');

edges('empty: everything is 0', () => {
  const st = new IterStats();
  assert.is(st.count, 0);
  assert.equal(st.summary(), { count: 0, firstS: 0, lastS: 0, meanS: 0, minS: 0, maxS: 0, medianS: 0, p95S: 0 });
  assert.equal(st.toJSON(), { v: 1, sub: 10, count: 0, firstS: 0, lastS: 0, sumS: 0, compS: 0, minS: 0, maxS: 0, buckets: [] });
});

edges('count follows add', () => {
  const st = new IterStats();
  for (let i = 1; i <= 5; i++) {
    st.add(i * 1e-6);
    assert.is(st.count, i);
  }
});

edges('0, negative and NaN times count as 0', () => {
  const s = statsOf([-1, 0, NaN, -1e-3]).summary();
  assert.equal(s, { count: 4, firstS: 0, lastS: 0, meanS: 0, minS: 0, maxS: 0, medianS: 0, p95S: 0 });
  const mixed = statsOf([-5, 2e-6]).summary();
  assert.is(mixed.minS, 0);
  assert.is(mixed.firstS, 0);
  assert.is(mixed.meanS, 1e-6);
});

edges('times below 1 ns share the bucket below the range: min stays exact, the median is off by under 1 ns', () => {
  const s = statsOf([0, 1e-12, 3e-10, 5e-6]).summary();
  assert.is(s.minS, 0);
  assert.is(s.maxS, 5e-6);
  assert.ok(Math.abs(s.medianS - (1e-12 + 3e-10) / 2) < 1e-9, `median ${s.medianS}`);
  assert.is(statsOf([0, 0, 1e-6]).summary().medianS, 0, 'equal values below the range: the median is min, exactly');
  assert.is(statsOf([1e-6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).summary().p95S, 0);
});

edges('times beyond 73 min share the bucket above the range: max stays exact', () => {
  for (const huge of [5000, 1e6, 1e300]) {
    const one = statsOf([huge]).summary();
    assert.is(one.medianS, huge);
    assert.is(one.maxS, huge);
    const st = statsOf([1e-6, huge, huge]);
    assert.is(st.summary().maxS, huge);
    assert.is(st.summary().medianS, huge, 'equal values above the range: the median is max, exactly');
    const b = st.toJSON().buckets;
    assert.is(b[0] + b[2], IterStats.BUCKETS - 1, 'the huge times are in the bucket above the range');
    assert.is(b[3], 2);
  }
});

edges('+Infinity counts as Number.MAX_VALUE, so the JSON stays finite', () => {
  const st = statsOf([Infinity]);
  assert.is(st.summary().maxS, Number.MAX_VALUE);
  assert.is(JSON.parse(JSON.stringify(st)).maxS, Number.MAX_VALUE);
});

const wire = suite('IterStats toJSON / fromJSON / merge');

wire('a JSON round trip gives the same summary, the same JSON, and keeps counting alike', () => {
  for (const name of Object.keys(DISTRIBUTIONS)) {
    const st = statsOf(sample(name, 10_000, 11));
    const back = IterStats.fromJSON(JSON.parse(JSON.stringify(st)));
    assert.equal(back.summary(), st.summary(), name);
    assert.equal(back.toJSON(), st.toJSON(), name);
    for (const t of sample(name, 1000, 12)) {
      st.add(t);
      back.add(t);
    }
    assert.equal(back.summary(), st.summary(), `${name}, after more adds`);
  }
  const empty = IterStats.fromJSON(JSON.parse(JSON.stringify(new IterStats())));
  assert.is(empty.count, 0);
  empty.add(4e-6);
  assert.is(empty.summary().minS, 4e-6, 'an empty one read back has no min of 0 left over');
});

wire('merge of parts equals adding everything to one', () => {
  const times = sample('log-uniform 1e-7..10 s', 30_000, 21);
  const whole = statsOf(times);
  const merged = new IterStats();
  for (const [a, b] of [[0, 10_000], [10_000, 10_001], [10_001, 30_000]]) merged.merge(statsOf(times.subarray(a, b)));
  const w = whole.summary();
  const m = merged.summary();
  assert.ok(rel(m.meanS, w.meanS) <= 1e-15, `mean ${m.meanS} vs ${w.meanS}`);
  assert.equal({ ...m, meanS: 0 }, { ...w, meanS: 0 });
  assert.equal(merged.toJSON().buckets, whole.toJSON().buckets);
  assertClose(m, exact(times), 'merged');
});

wire('merge with an empty one, either way round', () => {
  const st = statsOf([1e-6, 2e-6, 3e-6]);
  const before = st.summary();
  st.merge(new IterStats());
  assert.equal(st.summary(), before);
  const empty = new IterStats();
  empty.merge(st);
  assert.equal(empty.summary(), before);
});

wire('fromJSON refuses what toJSON cannot have written, naming the field', () => {
  const good = statsOf([1e-6, 2e-6]).toJSON();
  const bad = (patch) => () => IterStats.fromJSON({ ...good, ...patch });
  assert.throws(() => IterStats.fromJSON(null), (e) => e instanceof TypeError && e.message === 'iteration stats must be an object (got null)');
  assert.throws(bad({ v: 2 }), (e) => e instanceof RangeError && e.message === 'iteration stats: version must be 1 (got 2)');
  assert.throws(bad({ sub: 7 }), (e) => e instanceof RangeError && e.message === 'iteration stats: sub must be 10 (got 7)');
  assert.throws(bad({ maxS: null }), (e) => e instanceof TypeError && e.message === 'iteration stats: maxS must be a finite number (got null)');
  assert.throws(bad({ count: 3 }), (e) => e instanceof RangeError && e.message === 'iteration stats: buckets hold 2 times, count says 3');
  assert.throws(bad({ buckets: [1, 1, 0, 1] }), (e) => e instanceof RangeError && e.message === 'iteration stats: bucket index 1 out of order or out of range (0..43009)');
  assert.throws(bad({ buckets: [43010, 2] }), (e) => e instanceof RangeError && e.message === 'iteration stats: bucket index 43010 out of order or out of range (0..43009)');
  assert.throws(bad({ buckets: [5, 1.5] }), (e) => e instanceof RangeError && e.message === 'iteration stats: bucket 5 count must be a positive integer (got 1.5)');
  assert.throws(bad({ buckets: [5] }), (e) => e instanceof TypeError && e.message === 'iteration stats: buckets must be an array of (index, count) pairs');
});

const memory = suite('IterStats memory');

memory('1e6 times of a narrow distribution: a JSON of a few kB, the same size as after 1e5', () => {
  const st = new IterStats();
  const r = rng(31);
  const sizes = [];
  for (let i = 1; i <= 1e6; i++) {
    st.add(1.5e-6 + 1.5e-6 * r());
    if (i === 1e5 || i === 1e6) sizes.push(JSON.stringify(st).length);
  }
  const buckets = st.toJSON().buckets.length / 2;
  assert.ok(buckets <= 1024 + 1, `${buckets} buckets for one octave`);
  assert.ok(sizes[1] < 16_000, `JSON of ${sizes[1]} bytes`);
  assert.ok(sizes[1] - sizes[0] <= 2 * buckets, `grew from ${sizes[0]} to ${sizes[1]} bytes: more than a digit per bucket`);
});

memory('1e6 times over 27 octaves: no more buckets than the octaves hold, a JSON under 300 kB', () => {
  const st = statsOf(sample('log-uniform 1e-7..10 s', 1e6, 32));
  const { buckets } = st.toJSON();
  assert.ok(buckets.length / 2 <= 28 * 1024, `${buckets.length / 2} buckets`);
  const size = JSON.stringify(st).length;
  assert.ok(size < 300_000, `JSON of ${size} bytes`);
  assert.is(buckets.filter((_, j) => j % 2 === 1).reduce((a, b) => a + b, 0), 1e6);
});

accuracy.run();
edges.run();
wire.run();
memory.run();
