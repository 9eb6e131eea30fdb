// Runs killed with SIGKILL and resumed (issue 21): a ring of stateful ts, python and C SDK
// stages and a c kernel, killed at random moments (the CLI, the hub, mpirun, a rank of each
// kind; mid-write often, with a checkpoint every 20 iterations) under threads, spawn and
// MPMD, each resumed to the end with the uninterrupted run's checksum and nothing of the
// killed run left. Also: a checkpoint of one transport resumed on another, and SIGUSR1 /
// SIGTERM over MPI. The seed of the kill moments is printed; COMMLOOP_PROPERTY_SEED sets it,
// COMMLOOP_KILL_REPEAT=N kills each process N times (default once).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { MPI_MISSING, cli, cliJson, cmdline, descendants, exists, haveMpi, pipelineFiles, root, startCli, unstatus, until } from './helpers.mjs';
import { listCheckpoints, newestCheckpoint } from '../dist/internal.js';

if (!haveMpi()) throw new Error(MPI_MISSING);
const fixtures = join(root, 'test', 'fixtures', 'checkpoint');
const { dir, file } = pipelineFiles('resume');
const sdk = join(dir, 'sdk_state');
execFileSync('mpicc.openmpi', ['-O2', '-ffp-contract=off', `-I${join(root, 'include')}`, '-o', sdk, join(fixtures, 'sdk_state.c')]);

const ACC = { name: 'acc', kind: 'ts', ranks: 2, size: 6, module: join(fixtures, 'ts_state.mjs') };
const C = { name: 'c', kind: 'c', ranks: 2, size: 5, source: 'builtin:halfmean' };
const PY = { name: 'py', kind: 'python', ranks: 2, size: 7, module: join(fixtures, 'py_state.py') };
const SDK = { name: 'sdk', kind: 'exec', ranks: 2, size: 4, command: [sdk], protocol: 2, state: true };
const full = file('full', { stages: [ACC, C, PY, SDK], initial: 1.5 });
const small = file('small', { stages: [ACC, C], initial: 1.5 });

const seed = Number(process.env.COMMLOOP_PROPERTY_SEED ?? Date.now() % 100000);
let x = seed;
const rand = () => (x = (x * 1103515245 + 12345) % 2147483648) / 2147483648;
console.log(`resume.test.mjs: kill moments from seed ${seed} (COMMLOOP_PROPERTY_SEED=${seed} repeats them)`);

const ITER = 20000;
const EVERY = ['--checkpoint-every', '20'];
/**
 * A resume runs at least AFTER iterations past its checkpoint, to the next multiple of 500,
 * not to the killed run's end (-i is the total, and identity does not hold it): the same bits
 * against an uninterrupted run of as many iterations, without the killed run's thousands of
 * checkpoints (the file took 6 min so).
 */
const AFTER = 200;
/** The uninterrupted run's checksum after k iterations (args: the ring and its transport), each computed once. */
const refs = new Map();
const reference = (args, k) => {
  const key = `${args.join(' ')} -i ${k}`;
  if (!refs.has(key)) refs.set(key, cliJson([...args, '-i', String(k)]).checksum);
  return refs.get(key);
};
/** Where a resume runs to: a few fixed totals, so most cases share one reference run. */
const resumeTo = (from) => Math.ceil((from + AFTER) / 500) * 500;
const T_ARGS = ['--pipeline', small, '--transport', 'threads', '--sizes', '20000,20000'];
const T_ITER = 6000;
let n = 0;
const freshDir = () => join(dir, `cp${++n}`);

/** The process of the run that `target` names, among the CLI's descendants. */
function victim(pid, target) {
  const mark = {
    hub: (c) => c.includes('dist/hub.js'),
    mpirun: (c) => /^\S*mpirun/.test(c),
    acc: (c) => c.includes('ts_state.mjs'),
    py: (c) => c.includes('py_state.py'),
    sdk: (c) => c.startsWith(sdk),
    c: (c) => c.includes('commloop_c_worker'),
  }[target];
  // mpirun's own command line names every stage's program: a rank is anything else that matches.
  const found = descendants(pid).filter((p) => mark(cmdline(p)) && (target === 'mpirun' || !/^\S*mpirun/.test(cmdline(p))));
  return found[Math.floor(rand() * found.length)];
}

/**
 * Starts a checkpointed run, waits for its first checkpoint and a random moment after it,
 * SIGKILLs `target`, and checks the end: the CLI's way out, the resume hint, nothing left.
 * Returns the newest checkpoint's iteration.
 */
async function killRun(args, target, cp) {
  const { child, exit } = startCli([...args, '--checkpoint', cp, ...EVERY]);
  assert.ok(await until(() => listCheckpoints(cp).length > 0, 30_000), `no checkpoint within 30 s`);
  await new Promise((r) => setTimeout(r, rand() * 400));
  const tree = [child.pid, ...descendants(child.pid)];
  const pid = target === 'cli' ? child.pid : victim(child.pid, target);
  assert.ok(pid, `no ${target} process among ${tree.map(cmdline).join(' | ')}`);
  process.kill(pid, 'SIGKILL');
  const t = Date.now();
  const e = await exit;
  assert.ok(Date.now() - t < 10_000, `the run took ${Date.now() - t} ms to end after the kill`);
  assert.ok(await until(() => tree.every((p) => !exists(p)), 10_000), `left: ${tree.filter(exists).map((p) => `${p} ${cmdline(p)}`).join(' | ')}`);
  const at = newestCheckpoint(cp);
  assert.equal(at.notes, []);
  if (target === 'cli') assert.is(e.signal, 'SIGKILL');
  else {
    // A run that finished before the kill landed is no kill moment: the iterations left say so.
    assert.is(e.code, 1, `exit ${e.code}: ${e.stderr}`);
    const line = e.stderr.trim().split('\n').pop();
    assert.match(line, new RegExp(`^commloop: .*; resume from iteration ${at.checkpoint.iterations} with --resume$`), line);
    if (!['hub', 'mpirun'].includes(target)) assert.match(line, new RegExp(`^commloop: stage "${target}" rank \\d`), line);
  }
  assert.ok(at.checkpoint.iterations < ITER, `the run ended before the kill (${at.checkpoint.iterations})`);
  return at.checkpoint.iterations;
}

/** Resumes to the end and checks the uninterrupted checksum and a folder left clean. */
function resumeRun(args, cp, from, ref) {
  const r = cli([...args, '--checkpoint', cp, ...EVERY, '--resume', '--json']);
  assert.is(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.is(j.resumedFrom, from);
  assert.is(j.checksum, ref);
  assert.equal(readdirSync(cp).filter((f) => f.startsWith('.tmp-')), [], 'temporary folders left');
}

const kills = suite('SIGKILL at random moments, then --resume');
// Every process of the run that can be killed, once: the hub in each launch mode (a singleton
// with its orted in spawn mode, rank 0 of mpirun's job under MPMD), mpirun under MPMD, and each
// stage's rank and the CLI in the launch mode the seed draws (8 kill moments and one on threads:
// the default run's size; every target was once killed in both modes, 12 moments, the file's
// slowest part). COMMLOOP_KILL_REPEAT=N kills each N times.
const REPEAT = Number(process.env.COMMLOOP_KILL_REPEAT ?? 1);
if (!(Number.isInteger(REPEAT) && REPEAT >= 1)) throw new Error(`COMMLOOP_KILL_REPEAT must be a positive integer (got "${process.env.COMMLOOP_KILL_REPEAT}")`);
const drawn = (t) => [rand() < 0.5 ? 'spawn' : 'mpmd', t];
const CASES = Array.from({ length: REPEAT }, () => [['spawn', 'hub'], ['mpmd', 'hub'], ['mpmd', 'mpirun'], ...['cli', 'acc', 'py', 'sdk', 'c'].map(drawn)]).flat();
const moments = [];
for (const [launch, target] of CASES) {
  kills(`${launch}: ${target} killed, resumed with the other launch mode`, async () => {
    const cp = freshDir();
    const args = ['--pipeline', full, '-i', String(ITER), '--launch', launch];
    const from = await killRun(args, target, cp);
    moments.push(`${launch}/${target}@${from}`);
    const to = resumeTo(from);
    resumeRun(['--pipeline', full, '-i', String(to), '--launch', launch === 'spawn' ? 'mpmd' : 'spawn'], cp, from, reference(['--pipeline', full], to));
  });
}
for (let k = 0; k < REPEAT; k++) {
  kills('threads: the CLI killed, resumed on threads', async () => {
    const cp = freshDir();
    const args = [...T_ARGS, '-i', String(T_ITER)];
    const { child, exit } = startCli([...args, '--checkpoint', cp, ...EVERY]);
    assert.ok(await until(() => listCheckpoints(cp).length > 0, 30_000), 'no checkpoint within 30 s');
    await new Promise((r) => setTimeout(r, rand() * 400));
    child.kill('SIGKILL');
    assert.is((await exit).signal, 'SIGKILL');
    const from = newestCheckpoint(cp).checkpoint.iterations;
    assert.ok(from < T_ITER, `the run ended before the kill (${from})`);
    moments.push(`threads/cli@${from}`);
    const to = resumeTo(from);
    resumeRun([...T_ARGS, '-i', String(to)], cp, from, reference(T_ARGS, to));
  });
}
kills('the kill moments tried', () => {
  console.log(`  ${moments.length} kills: ${moments.join(' ')}`);
  assert.is(moments.length, CASES.length + REPEAT);
});
kills.run();

const across = suite('a checkpoint resumed on another transport');

across('threads -> mpi spawn, and mpi mpmd -> threads: the same bits', () => {
  const ref = cliJson(['--pipeline', small, '-i', '20']).checksum;
  assert.is(cliJson(['--pipeline', small, '--transport', 'threads', '-i', '20']).checksum, ref);
  const a = freshDir();
  cliJson(['--pipeline', small, '--transport', 'threads', '-i', '9', '--checkpoint', a]);
  const onMpi = cliJson(['--pipeline', small, '-i', '20', '--checkpoint', a, '--resume']);
  assert.equal([onMpi.resumedFrom, onMpi.transport, onMpi.checksum], [9, 'mpi', ref]);
  const b = freshDir();
  cliJson(['--pipeline', small, '--launch', 'mpmd', '-i', '11', '--checkpoint', b]);
  const onThreads = cliJson(['--pipeline', small, '--transport', 'threads', '-i', '20', '--checkpoint', b, '--resume']);
  assert.equal([onThreads.resumedFrom, onThreads.transport, onThreads.checksum], [11, 'threads', ref]);
});

across.run();

const signals = suite('signals over MPI');

// One launch mode a run, drawn by the seed as the kills above are (the CLI's signal handling is
// the same in both; the Slurm bed's batch jobs take SIGUSR1 and SIGTERM in both modes every run).
for (const launch of [rand() < 0.5 ? 'spawn' : 'mpmd']) {
  signals(`${launch}: SIGUSR1 takes a checkpoint and the run goes on; SIGTERM takes one and exits 130; the resume gives the same bits`, async () => {
    const cp = freshDir();
    const args = ['--pipeline', full, '--launch', launch];
    const { child, exit, done } = startCli([...args, '-i', '100000000', '--checkpoint', cp, '--status-every', '0.1']);
    assert.ok(await done(1), 'the ring did not run');
    assert.is(listCheckpoints(cp).length, 0);
    child.kill('SIGUSR1');
    assert.ok(await until(() => listCheckpoints(cp).length === 1, 5000), 'no checkpoint within 5 s of SIGUSR1');
    const first = newestCheckpoint(cp).checkpoint.iterations;
    // The run goes on: iterations beyond the checkpoint's are counted.
    assert.ok(await done(first + 1, 5000), `no iteration after the checkpoint at ${first}`);
    assert.ok(exists(child.pid), 'the run went on');
    const t = Date.now();
    child.kill('SIGTERM');
    const e = await exit;
    assert.ok(Date.now() - t < 5000, `took ${Date.now() - t} ms to stop`);
    assert.is(e.code, 130, e.stderr);
    const at = newestCheckpoint(cp).checkpoint.iterations;
    assert.ok(at > first, `${at} after ${first}`);
    const path = join(cp, `checkpoint-${String(at).padStart(12, '0')}`);
    assert.is(unstatus(e.stderr), `commloop: stopped by signal after ${at} of 100000000 iterations; checkpoint at iteration ${at} in ${path}: resume with --resume\n`);
    const ref = cliJson([...args, '-i', String(at + 10)]).checksum;
    const r = cliJson([...args, '-i', String(at + 10), '--checkpoint', cp, '--resume']);
    assert.equal([r.resumedFrom, r.checksum], [at, ref]);
  });
}

signals.run();
