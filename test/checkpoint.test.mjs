// Checkpoints and --resume on the threads transport (the MPI transports and SIGKILL moments
// are in resume.test.mjs): the format on disk, bit-exact resumes of a stateful ring, the
// fallback past a damaged checkpoint, refusals, state hooks that fail, the signals, and a
// writer killed mid-write.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cli, cliJson, exists, pipelineFiles, root, startCli, unstatus, until } from './helpers.mjs';
import { listCheckpoints, newestCheckpoint, readCheckpoint } from '../dist/internal.js';
import { runPipeline } from '../dist/index.js';

const fixtures = join(root, 'test', 'fixtures', 'checkpoint');
const { dir, file } = pipelineFiles('checkpoint');
const ACC = { name: 'acc', kind: 'ts', ranks: 2, size: 6, module: join(fixtures, 'ts_state.mjs') };
const C = { name: 'c', kind: 'c', ranks: 2, size: 5, source: 'builtin:halfmean' };
const ring = file('ring', { stages: [ACC, C], initial: 1.5 });
const badRing = file('bad', { stages: [{ ...ACC, module: join(fixtures, 'ts_bad_state.mjs') }, C], initial: 1.5 });
const THREADS = ['--transport', 'threads'];
let n = 0;
const freshDir = () => join(dir, `cp${++n}`);
const run = (args) => cliJson(['--pipeline', ring, ...THREADS, ...args]);
/** The uninterrupted run's checksum for K iterations (and for the cycled sizes when given). */
const refs = new Map();
const reference = (k, extra = []) => {
  const key = `${k} ${extra.join(' ')}`;
  if (!refs.has(key)) refs.set(key, run(['-i', String(k), ...extra]).checksum);
  return refs.get(key);
};

const format = suite('checkpoint format');

format('a folder per checkpoint, named by its iterations, with a manifest that checksums every file', () => {
  const cp = freshDir();
  const r = run(['-i', '20', '--checkpoint', cp, '--checkpoint-every', '5', '--checkpoint-keep', '10']);
  assert.is(r.checksum, reference(20));
  assert.is(r.resumedFrom, 0);
  assert.is(r.checkpoints.last.iterations, 20);
  const names = readdirSync(cp).sort();
  assert.ok(names.includes('checkpoint-000000000005') && names.includes('checkpoint-000000000020'), names.join(' '));
  assert.ok(names.every((n) => /^checkpoint-\d{12}$/.test(n)), names.join(' '));
  const path = join(cp, 'checkpoint-000000000020');
  const m = JSON.parse(readFileSync(join(path, 'manifest.json'), 'utf8'));
  assert.is(m.format, 'commloop-checkpoint');
  assert.is(m.version, 1);
  assert.is(m.iterations, 20);
  assert.equal(m.identity.stages, [
    { name: 'acc', kind: 'ts', ranks: 2, code: 'ts_state.mjs:transform' },
    { name: 'c', kind: 'c', ranks: 2, code: 'builtin:halfmean' },
  ]);
  assert.equal(m.taken, { transport: 'threads', launch: 'spawn', cBackend: 'wasm' });
  assert.equal(m.states.map((s) => [s.stage, s.rank, s.format, s.file]), [
    [0, 0, 'npy', 'state/0-acc.0.npy'],
    [0, 1, 'npy', 'state/0-acc.1.npy'],
  ]);
  assert.equal(Object.keys(m.files).sort(), ['array1.npy', 'state/0-acc.0.npy', 'state/0-acc.1.npy']);
  for (const [name, f] of Object.entries(m.files)) {
    const b = readFileSync(join(path, name));
    assert.is(b.length, f.bytes, name);
    assert.is(createHash('sha256').update(b).digest('hex'), f.sha256, name);
  }
  // Open: NumPy reads Array1 and the states as they are.
  const py = spawnSync('/usr/bin/python3', ['-c', `import numpy, sys
a = numpy.load(sys.argv[1] + '/array1.npy'); s = numpy.load(sys.argv[1] + '/state/0-acc.1.npy')
print(a.dtype, a.shape, repr(float(a.sum())), s.dtype, s.shape)`, path], { encoding: 'utf8' });
  assert.is(py.stderr, '');
  const cpt = readCheckpoint(path);
  assert.is(py.stdout, `float64 (${cpt.array1.length},) ${cpt.array1.reduce((x, y) => x + y, 0)} float64 (4,)\n`);
});

format('the newest keep are kept; with the default 2, only two folders remain', () => {
  const cp = freshDir();
  run(['-i', '30', '--checkpoint', cp, '--checkpoint-every', '3']);
  const names = readdirSync(cp);
  assert.is(names.length, 2, names.join(' '));
  assert.is(names.sort()[1], 'checkpoint-000000000030');
});

format.run();

const resume = suite('resume on threads');

resume('a run stopped at iteration 10 and resumed to 25 gives the uninterrupted checksum, and says where it started', () => {
  const cp = freshDir();
  assert.is(run(['-i', '10', '--checkpoint', cp]).iterations, 10);
  const r = cli(['--pipeline', ring, ...THREADS, '-i', '25', '--checkpoint', cp, '--resume']);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /^resumed   from iteration 10: 15 iterations run now$/m);
  const j = run(['-i', '25', '--checkpoint', cp, '--resume']);
  // The run above finished at 25: this one has nothing left.
  assert.is(j.iterations, 25);
  assert.is(j.resumedFrom, 25);
  assert.is(j.checksum, reference(25));
});

resume('what was possible before (Array1 written, read back as "initial") gives other bits: ctx.iteration and the state restart', () => {
  const cp = freshDir();
  run(['-i', '10', '--checkpoint', cp]);
  const a1 = join(cp, 'checkpoint-000000000010', 'array1.npy');
  const fromArray = cliJson(['--pipeline', file('from-a1', { stages: [ACC, C], initial: a1 }), ...THREADS, '-i', '15']);
  assert.is.not(fromArray.checksum, reference(25));
});

resume('the size cycle, ctx.iteration, output.every files and onIteration go on from the checkpoint', async () => {
  const sizes = ['--sizes', '5,6/3,9/4,4'];
  const outRing = (o) => file(`out-${o}`, { stages: [ACC, C], initial: 1.5, output: { file: join(dir, `${o}.npy`), every: 4 } });
  const ref = cliJson(['--pipeline', outRing('out-ref'), ...THREADS, '-i', '23', ...sizes]);
  const cp = freshDir();
  cliJson(['--pipeline', outRing('out-res'), ...THREADS, '-i', '7', ...sizes, '--checkpoint', cp]);
  const seen = [];
  const r = await runPipeline(outRing('out-res'), {
    transport: 'threads',
    iterations: 23,
    sizes: [[5, 6], [3, 9], [4, 4]],
    checkpoint: { dir: cp },
    resume: true,
    onIteration: (i) => void seen.push(i),
  });
  assert.is(r.checksum, ref.checksum);
  assert.is(r.resumedFrom, 7);
  assert.is(r.iterations, 23);
  assert.equal(seen, Array.from({ length: 16 }, (_, k) => 7 + k));
  for (const k of [4, 8, 12, 16, 20]) {
    assert.ok(readFileSync(join(dir, `out-res.${k}.npy`)).equals(readFileSync(join(dir, `out-ref.${k}.npy`))), `every-4 file ${k}`);
  }
  assert.ok(readFileSync(join(dir, 'out-res.npy')).equals(readFileSync(join(dir, 'out-ref.npy'))), 'the final output');
});

resume('--resume-if-any starts from iteration 0 in an empty folder, then goes on from what it left', () => {
  const cp = freshDir();
  const first = run(['-i', '12', '--checkpoint', cp, '--resume-if-any']);
  assert.is(first.resumedFrom, 0);
  const second = run(['-i', '20', '--checkpoint', cp, '--resume-if-any']);
  assert.is(second.resumedFrom, 12);
  assert.is(second.checksum, reference(20));
});

resume('a finished run resumed runs nothing and says so', () => {
  const cp = freshDir();
  run(['-i', '8', '--checkpoint', cp]);
  const r = cli(['--pipeline', ring, ...THREADS, '-i', '8', '--checkpoint', cp, '--resume', '--json']);
  assert.is(r.status, 0, r.stderr);
  assert.is(r.stderr, `note: ${join(cp, 'checkpoint-000000000008')} is at iteration 8: nothing is left to run for 8 iterations\n`);
  const j = JSON.parse(r.stdout);
  assert.equal([j.iterations, j.resumedFrom, j.checksum, j.meanIterS], [8, 8, reference(8), 0]);
});

resume.run();

const damaged = suite('a damaged newest checkpoint');

for (const [what, spoil] of [
  ['a truncated file', (p) => truncateSync(join(p, 'state', '0-acc.1.npy'), 100)],
  ['a flipped byte', (p) => {
    const f = join(p, 'array1.npy');
    const b = readFileSync(f);
    b[b.length - 3] ^= 0x10;
    writeFileSync(f, b);
  }],
  ['a missing manifest', (p) => rmSync(join(p, 'manifest.json'))],
]) {
  damaged(`${what}: named in one note, and the one before it is used`, () => {
    const cp = freshDir();
    run(['-i', '6', '--checkpoint', cp]);
    run(['-i', '9', '--checkpoint', cp, '--resume']);
    const newest = join(cp, 'checkpoint-000000000009');
    spoil(newest);
    const r = cli(['--pipeline', ring, ...THREADS, '-i', '14', '--checkpoint', cp, '--resume', '--json']);
    assert.is(r.status, 0, r.stderr);
    const why = {
      'a truncated file': 'state/0-acc.1.npy has 100 bytes where the manifest says 160',
      'a flipped byte': 'array1.npy does not match its sha256 in the manifest',
      'a missing manifest': 'no manifest.json',
    }[what];
    assert.is(r.stderr, `note: checkpoint ${newest} is damaged (${why}): using the one before it\n`);
    const j = JSON.parse(r.stdout);
    assert.is(j.resumedFrom, 6);
    assert.is(j.checksum, reference(14));
  });
}

damaged.run();

const refused = suite('resume refused (exit 2)');

refused('nothing to resume from', () => {
  const cp = freshDir();
  const r = cli(['--pipeline', ring, ...THREADS, '-i', '5', '--checkpoint', cp, '--resume']);
  assert.is(r.status, 2);
  assert.is(r.stderr, `commloop: nothing to resume: no checkpoint in ${cp}\n`);
});

for (const [what, args, diff] of [
  ['more ranks', ['-p', '3'], 'stage "acc" has 2 ranks there and 3 here'],
  ['other sizes', ['--sizes', '5,7'], 'the sizes are 5,6 there and 5,7 here'],
]) {
  refused(`a checkpoint of another run: ${what}`, () => {
    const cp = freshDir();
    run(['-i', '4', '--checkpoint', cp]);
    const r = cli(['--pipeline', ring, ...THREADS, '-i', '8', '--checkpoint', cp, '--resume', ...args]);
    assert.is(r.status, 2, r.stderr);
    assert.is(r.stderr, `commloop: cannot resume from ${join(cp, 'checkpoint-000000000004')}: it is a checkpoint of another run (${diff})\n`);
  });
}

refused('a checkpoint of another pipeline', () => {
  const cp = freshDir();
  run(['-i', '4', '--checkpoint', cp]);
  const other = file('other', { stages: [ACC, { ...C, name: 'k' }], initial: 1.5 });
  const r = cli(['--pipeline', other, ...THREADS, '-i', '8', '--checkpoint', cp, '--resume']);
  assert.is(r.status, 2);
  assert.is(r.stderr, `commloop: cannot resume from ${join(cp, 'checkpoint-000000000004')}: it is a checkpoint of another run (the stages are acc, c there and acc, k here)\n`);
});

for (const [args, message] of [
  [['--checkpoint-every', '5'], '--checkpoint-every needs --checkpoint DIR'],
  [['--resume'], '--resume needs --checkpoint DIR'],
  [['--checkpoint', 'x', '--resume', '--resume-if-any'], '--resume and --resume-if-any exclude each other: give one'],
  [['--checkpoint', 'x', '--checkpoint-every', '0'], '--checkpoint-every must be a positive integer (got "0")'],
  [['--checkpoint', 'x', '--checkpoint-interval', 'soon'], '--checkpoint-interval must be a positive number of seconds (got "soon")'],
  [['--checkpoint', '/proc/commloop'], '--checkpoint folder /proc/commloop cannot be written (ENOENT)'],
]) {
  refused(`bad flags: ${args.join(' ')}`, () => {
    const r = cli(['--pipeline', ring, ...THREADS, '-i', '5', ...args]);
    assert.is(r.status, 2, r.stderr);
    assert.is(r.stderr, `commloop: ${message}\n`);
  });
}

refused('the library: bad checkpoint options are a UsageError naming the field', async () => {
  for (const [opts, message] of [
    [{ checkpoint: { dir: '' } }, 'checkpoint.dir must be a folder name (got "")'],
    [{ checkpoint: { dir: 'x', every: 1.5 } }, 'checkpoint.every must be a positive integer (got 1.5)'],
    [{ checkpoint: { dir: 'x', keep: 0 } }, 'checkpoint.keep must be a positive integer (got 0)'],
    [{ resume: true }, 'resume needs checkpoint.dir: the folder to resume from'],
    [{ checkpoint: { dir: 'x' }, resume: 'yes' }, `resume must be true, false or 'if-any' (got "yes")`],
  ]) {
    await runPipeline(ring, { transport: 'threads', iterations: 2, ...opts }).then(
      () => assert.unreachable('resolved'),
      (err) => {
        assert.is(err.name, 'UsageError');
        assert.is(err.message, message);
      },
    );
  }
});

refused.run();

const hooks = suite('state hooks that fail');

hooks('a save that throws fails the run naming the stage and rank; the checkpoint before stays and the line says where to resume', () => {
  const cp = freshDir();
  const r = cli(['--pipeline', badRing, ...THREADS, '-i', '20', '--checkpoint', cp, '--checkpoint-every', '5']);
  assert.is(r.status, 1, r.stderr);
  const last = newestCheckpoint(cp);
  assert.equal(last.notes, []);
  const at = last.checkpoint.iterations;
  assert.ok(at >= 5 && at < 10, String(at));
  // The one at 10 or 15 may have been skipped while the one before was being written.
  assert.match(r.stderr, new RegExp(`^commloop: stage "acc" rank 1 on \\S+: save\\(\\) failed: no room for rank 1's state at iteration (10|15|20); resume from iteration ${at} with --resume\\n$`));
});

hooks('a load that throws fails the run naming the stage and rank', () => {
  const cp = freshDir();
  cliJson(['--pipeline', badRing, ...THREADS, '-i', '6', '--checkpoint', cp]);
  const r = cli(['--pipeline', badRing, ...THREADS, '-i', '9', '--checkpoint', cp, '--resume'], { env: { ...process.env, COMMLOOP_TEST_BAD_LOAD: '1' } });
  assert.is(r.status, 1, r.stderr);
  assert.match(r.stderr, /^commloop: stage "acc" rank 0 on \S+: load\(\) failed: the state of rank 0 is from another model; resume from iteration 6 with --resume\n$/);
});

hooks.run();

const signals = suite('signals on threads');

const slow = ['-i', '100000000', '--sizes', '2000,2000'];

signals('SIGUSR1: a checkpoint at the next boundary, and the run goes on', async () => {
  const cp = freshDir();
  const { child, exit, done } = startCli(['--pipeline', ring, ...THREADS, ...slow, '--checkpoint', cp, '--status-every', '0.1']);
  assert.ok(await done(1), 'the ring did not run');
  assert.is(listCheckpoints(cp).length, 0);
  child.kill('SIGUSR1');
  assert.ok(await until(() => listCheckpoints(cp).length === 1, 5000), 'no checkpoint within 5 s of SIGUSR1');
  assert.ok(exists(child.pid), 'the run went on');
  child.kill('SIGTERM');
  const e = await exit;
  assert.is(e.code, 130, e.stderr);
  const last = newestCheckpoint(cp).checkpoint.iterations;
  assert.is(unstatus(e.stderr), `commloop: stopped by signal after ${last} of 100000000 iterations; checkpoint at iteration ${last} in ${join(cp, `checkpoint-${String(last).padStart(12, '0')}`)}: resume with --resume\n`);
  assert.is(listCheckpoints(cp).length, 2);
});

signals('SIGTERM with --checkpoint: the step in flight ends, a checkpoint, exit 130; a resume goes on to the same bits', async () => {
  const cp = freshDir();
  const sizes = ['--sizes', '20000,20000'];
  const { child, exit, done } = startCli(['--pipeline', ring, ...THREADS, '-i', '100000000', ...sizes, '--checkpoint', cp, '--status-every', '0.1']);
  assert.ok(await done(1), 'the ring did not run');
  const t = Date.now();
  child.kill('SIGTERM');
  const e = await exit;
  assert.ok(Date.now() - t < 3000, `took ${Date.now() - t} ms to stop`);
  assert.is(e.code, 130, e.stderr);
  const at = newestCheckpoint(cp).checkpoint.iterations;
  assert.match(unstatus(e.stderr), new RegExp(`^commloop: stopped by signal after ${at} of 100000000 iterations; checkpoint at iteration ${at} in `));
  const r = cliJson(['--pipeline', ring, ...THREADS, '-i', String(at + 20), ...sizes, '--checkpoint', cp, '--resume']);
  assert.is(r.resumedFrom, at);
  assert.is(r.checksum, reference(at + 20, sizes));
});

signals.run();

const crash = suite('a writer killed mid-write');

crash('SIGKILL at 12 random moments of back-to-back writes: the newest folder always verifies, the one before too', async () => {
  const seed = Number(process.env.COMMLOOP_PROPERTY_SEED ?? Date.now() % 100000);
  let x = seed;
  const rand = () => ((x = (x * 1103515245 + 12345) % 2147483648) / 2147483648);
  const cp = freshDir();
  let midWrite = 0;
  for (let k = 0, next = 1; k < 12; k++) {
    const child = spawn(process.execPath, [join(fixtures, 'writer-loop.mjs'), cp, String(next)]);
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    const gone = new Promise((r) => child.on('exit', r));
    await until(() => out.length > 0, 10_000);
    await new Promise((r) => setTimeout(r, 5 + rand() * 60));
    child.kill('SIGKILL');
    await gone;
    if (readdirSync(cp).some((n) => n.startsWith('.tmp-'))) midWrite++;
    const printed = out.trim().split('\n').map(Number).pop();
    const found = newestCheckpoint(cp);
    assert.equal(found.notes, [], `seed ${seed}, kill ${k}`);
    // The newest is the last one it said it wrote, or the one after if the kill fell between its rename and the print.
    assert.ok(found.checkpoint.iterations === printed || found.checkpoint.iterations === printed + 1, `seed ${seed}: ${found.checkpoint.iterations} vs ${printed}`);
    assert.is(found.checkpoint.array1[0], found.checkpoint.iterations + 0.5);
    for (const p of listCheckpoints(cp)) readCheckpoint(p); // every complete folder verifies
    next = found.checkpoint.iterations + 1;
  }
  console.log(`  writer killed 12 times (seed ${seed}), ${midWrite} of them mid-write (a temporary folder left)`);
  assert.ok(midWrite >= 1, `seed ${seed}: no kill fell in a write`);
  assert.is(listCheckpoints(cp).length, 2);
});

crash.run();
