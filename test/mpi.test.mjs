// The MPI transport: the addon's argument checks, the ring over spawned jobs for both
// C backends, a rank killed mid-run, Ctrl-C, and the run under mpirun -np 1.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { MPI_MISSING, STOPPED_BY_TERM, cliJson, cmdline, descendants, exists, haveMpi, root, startCli, terminateAll, until } from './helpers.mjs';
import { referenceRing } from './reference.mjs';
import { ucxSelectable } from '../dist/internal.js';

if (!haveMpi()) throw new Error(MPI_MISSING);

const addon = suite('MPI addon argument checks');

const checks = (() => {
  let cached;
  return () => {
    if (!cached) {
      const r = spawnSync(
        process.execPath,
        [join(root, 'test/fixtures/addon-checks.mjs'), join(root, 'build/Release/commloop_mpi.node'), join(root, 'dist/commloop_c_worker')],
        { encoding: 'utf8', timeout: 60_000 },
      );
      if (r.status !== 0) throw new Error(`addon-checks exited ${r.status}: ${r.stderr}`);
      cached = JSON.parse(r.stdout);
    }
    return cached;
  };
})();

const EXPECTED = {
  'before init': ['Error', 'MPI is not initialized: call init() first'],
  'comm not a number': ['TypeError', 'comm must be a number'],
  'comm out of range': ['RangeError', 'comm 99 is not a communicator handle'],
  'comm negative': ['RangeError', 'comm must be an integer from 0 to 2147483647'],
  'buffer a plain array': ['TypeError', 'buffer must be a Float64Array, an Int32Array or a Uint8Array'],
  'buffer a Uint16Array': ['TypeError', 'buffer must be a Float64Array, an Int32Array or a Uint8Array'],
  'buffer a bare SharedArrayBuffer': ['TypeError', 'buffer must be a Float64Array, an Int32Array or a Uint8Array'],
  'root beyond the comm': ['RangeError', 'root must be a rank below 1'],
  'root not an integer': ['RangeError', 'root must be an integer from -4 to 2147483647'],
  'scatter count too large': ['RangeError', 'send holds 32 bytes; count 5 x 1 ranks needs 40'],
  'gather recv too short': ['RangeError', 'recv holds 24 bytes; count 4 x 1 ranks needs 32'],
  'gather without recv at root': ['TypeError', 'recv must be a Float64Array, an Int32Array or a Uint8Array at the root'],
  'mixed element types': ['TypeError', 'send and recv must have the same element type'],
  'spawn args not strings': ['TypeError', 'args must be an array of strings'],
  'spawn maxprocs 0': ['RangeError', 'maxprocs must be an integer from 1 to 65536'],
  'spawn info not strings': ['TypeError', 'info must be an object of strings'],
  'watch pids not Int32Array': ['TypeError', 'pids must be an Int32Array'],
  'send to a rank outside the comm': ['MpiError', 'MPI_Send: MPI_ERR_RANK: invalid rank'],
  'disconnect world': ['RangeError', 'comm 0 is MPI_COMM_WORLD and cannot be disconnected'],
  'abort code out of range': ['RangeError', 'code must be an integer from 0 to 255'],
  'scatter from a SharedArrayBuffer view': ['no error'],
  'intercomm scatter needs ROOT-sized send': ['RangeError', 'send holds 8 bytes; count 2 x 1 ranks needs 16'],
  'bcast on a disconnected handle': ['Error', 'comm 1 is disconnected'],
  'disconnect twice': ['Error', 'comm 1 is disconnected'],
  'after finalize': ['Error', 'MPI is finalized'],
  'init after finalize': ['Error', 'MPI is finalized: MPI cannot start again in this process'],
};

for (const [name, expected] of Object.entries(EXPECTED)) {
  addon(`${name}: ${expected.join(': ')}`, () => {
    assert.equal(checks()[name], expected);
  });
}

addon('init reports Open MPI 4, a thread level and a singleton world', () => {
  assert.equal(checks().init, ['string', true, true, 1]);
});

addon('MPI errors carry code and class', () => {
  assert.equal(checks()['MpiError fields'], [true, 'number', 'number', true]);
});

addon('one protocol step through a spawned C worker, from a SharedArrayBuffer view', () => {
  assert.equal(checks().ready, [true]);
  assert.equal(checks().step, [1.5, 2.5]);
});

addon.run();

const ring = suite('ring over MPI');

const PUBLISHED = [
  [['-p', '2', '--sizes', '10,1000,1000', '-i', '3'], 14468.8671875],
  [['-p', '2', '--sizes', '10,1000,1000000', '-i', '5'], 11431291.134835951],
  [['-p', '10', '--sizes', '10,1000,1000000', '-i', '2'], 281382104.6875],
];

// -p 10 (30 ranks on this machine's 2 cores, 10 s a run) with the native C worker only: the
// WebAssembly worker's part of it is a rank's, the same at -p 2.
for (const backend of ['native', 'wasm']) {
  for (const [args, expected] of backend === 'wasm' ? PUBLISHED.slice(0, 2) : PUBLISHED) {
    ring(`${args.join(' ')} --c-backend ${backend} -> ${expected}`, () => {
      const r = cliJson([...args, '--transport', 'mpi', '--c-backend', backend]);
      assert.is(r.transport, 'mpi');
      assert.is(r.cBackend, backend);
      assert.is(r.checksum, expected);
    });
  }
}

ring('mpi is the default transport, with the native C worker', () => {
  const r = cliJson(['-p', '2', '--sizes', '10,1000,1000', '-i', '3']);
  assert.is(r.transport, 'mpi');
  assert.is(r.cBackend, 'native');
  assert.is(r.checksum, 14468.8671875);
});

ring('sizes that change every iteration travel in the header', () => {
  const schedule = [[1, 1, 1], [10, 10, 10], [100, 100, 100], [1000, 1000, 1000], [10000, 10000, 10000]];
  const r = cliJson(['-p', '2', '--sizes', schedule.map((t) => t.join(',')).join('/'), '-i', '7', '--c-backend', 'wasm']);
  assert.is(r.checksum, referenceRing(2, schedule, 7).checksum);
});

ring('runs under mpirun -np 1 with the same checksum', async () => {
  const run = startCli(['-p', '2', '--sizes', '10,1000,1000000', '-i', '5', '--json'], ['mpirun', '--oversubscribe', '-np', '1'], {
    OMPI_ALLOW_RUN_AS_ROOT: '1',
    OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1',
  });
  const r = await run.exit;
  assert.is(r.code, 0, r.stderr);
  assert.is(JSON.parse(r.stdout).checksum, 11431291.134835951);
});

ring.run();

const failures = suite('failures and signals');
/** The wires this machine offers: shm only where Open MPI can select UCX (wire.ts probes it). */
const WIRES = ucxSelectable() ? ['shm', 'tcp'] : ['tcp'];
if (WIRES.length === 1) console.log('mpi.test.mjs: failures run on --wire tcp only: Open MPI cannot select UCX here (--wire shm is refused)');

/** A stage rank's command line (not mpirun's, which names the stage programs as arguments). */
const isRank = (cmd) => /^\S*commloop_c_worker /.test(cmd) || /^\S*node \S*worker\.js /.test(cmd);

/** Starts a long run and waits until all its 3*2 stage ranks are up. */
async function longRun(extra = []) {
  const run = startCli(['-p', '2', '--sizes', '10,10,10', '-i', '2000000000', ...extra]);
  const up = await until(() => descendants(run.child.pid).map(cmdline).filter(isRank).length === 6, 30_000);
  if (!up) {
    for (const p of descendants(run.child.pid)) process.kill(p, 'SIGKILL');
    run.child.kill('SIGKILL');
  }
  assert.ok(up, 'the six stage ranks did not start');
  return run;
}

/** SIGKILLs the first stage rank whose command line includes `what`; waits for the run to end. */
async function killRank(run, what) {
  const pids = descendants(run.child.pid);
  const victim = pids.find((p) => isRank(cmdline(p)) && cmdline(p).includes(what));
  process.kill(victim, 'SIGKILL');
  const killedAt = Date.now();
  const r = await run.exit;
  return { r, pids, victim, ms: Date.now() - killedAt };
}

/** Every process of the run is gone (zombies count as present: ps shows them). */
async function assertNoneLeft(pids) {
  await until(() => pids.filter(exists).length === 0, 3000);
  assert.equal(pids.filter(exists).map(cmdline), [], 'processes of the run are left');
}

/**
 * The whole of stderr of a run whose rank `victim` of `stage` was SIGKILLed: one line,
 * Open MPI's banners in the log it names (how it ended is known if we saw it a zombie).
 */
const killedLine = (stage, victim) =>
  new RegExp(
    `^commloop: stage "${stage}" rank [01] on ${hostname()}: (died|was killed by SIGKILL)( during start-up)? \\((pid ${victim}|reported by Open MPI|before its pid was seen)\\)( \\(Open MPI's messages: \\S+\\.log\\))?\\n$`,
  );

// Every failure on every wire this machine offers (src/mpi/impl/openmpi-wire.ts): a peer that dies over
// shared memory closes no socket, so each must still end bounded with the same line.
for (const wire of WIRES) {
  const W = ['--wire', wire];
  failures(`a killed C rank ends the run within 10 s, exit 1, one line naming the stage, rank and host, no process left [wire ${wire}]`, async () => {
    const { r, pids, victim, ms } = await killRank(await longRun(W), 'commloop_c_worker');
    assert.ok(ms < 10_000, `took ${ms} ms`);
    assert.is(r.code, 1);
    assert.match(r.stderr, killedLine('c', victim), r.stderr);
    await assertNoneLeft(pids);
  });

  failures(`a killed TypeScript rank names its stage [wire ${wire}]`, async () => {
    const { r, pids, victim } = await killRank(await longRun(['--c-backend', 'wasm', ...W]), 'worker.js ts');
    assert.is(r.code, 1);
    assert.match(r.stderr, killedLine('ts[12]', victim), r.stderr);
    await assertNoneLeft(pids);
  });

  failures(`SIGINT stops cleanly: result so far, exit 130, every rank gone [wire ${wire}]`, async () => {
    const run = await longRun(['--json', ...W]);
    const pids = descendants(run.child.pid);
    run.child.kill('SIGINT');
    const r = await run.exit;
    assert.is(r.code, 130, r.stderr);
    const o = JSON.parse(r.stdout);
    assert.is(o.stopped, true);
    assert.is(o.wire, wire);
    assert.is(o.checksum, referenceRing(2, [[10, 10, 10]], o.iterations).checksum);
    assert.is(r.stderr, `commloop: stopped by signal after ${o.iterations} of 2000000000 iterations\n`);
    // A clean stop reaps everything before the master exits: no grace period here.
    assert.equal(pids.filter(exists).map(cmdline), []);
  });

  failures(`--launch mpmd: SIGINT to the CLI stops the inner master cleanly, exit 130, every rank gone [wire ${wire}]`, async () => {
    const run = await longRun(['--json', '--launch', 'mpmd', ...W]);
    const pids = descendants(run.child.pid);
    run.child.kill('SIGINT');
    const r = await run.exit;
    assert.is(r.code, 130, r.stderr);
    const o = JSON.parse(r.stdout);
    assert.is(o.launch, 'mpmd');
    assert.is(o.stopped, true);
    assert.is(o.checksum, referenceRing(2, [[10, 10, 10]], o.iterations).checksum);
    assert.ok(r.stderr.startsWith(`commloop: stopped by signal after ${o.iterations} of 2000000000 iterations\n`));
    await assertNoneLeft(pids);
  });

  failures(`--launch mpmd: a killed rank takes the whole job down within 10 s, exit 1, one line naming it [wire ${wire}]`, async () => {
    const { r, pids, victim, ms } = await killRank(await longRun(['--launch', 'mpmd', ...W]), 'commloop_c_worker');
    assert.ok(ms < 10_000, `took ${ms} ms`);
    assert.is(r.code, 1);
    assert.match(r.stderr, killedLine('c', victim), r.stderr);
    await assertNoneLeft(pids);
  });
}

/**
 * SIGKILLs the C stage's rank 0 the moment it exists, `rounds` times: killed before Open MPI
 * registers it, mpirun may print no rank and exit 137 or (rarely) keep the job waiting, and
 * in spawn mode the hub sees only the ranks Open MPI tears down after it. The supervisor's
 * start-up watch names it in every case.
 */
async function killAtStart(extra, rounds) {
  for (let round = 0; round < rounds; round++) {
    const run = startCli(['-p', '2', '--sizes', '10,10,10', '-i', '2000000000', ...extra]);
    let victim;
    const seen = await until(() => (victim = descendants(run.child.pid).find((p) => /^\S*commloop_c_worker /.test(cmdline(p)))), 30_000);
    assert.ok(seen, 'the C stage never started');
    const pids = descendants(run.child.pid);
    process.kill(victim, 'SIGKILL');
    const killedAt = Date.now();
    const r = await run.exit;
    assert.ok(Date.now() - killedAt < 5_000, `round ${round} took ${Date.now() - killedAt} ms`);
    assert.is(r.code, 1);
    assert.match(r.stderr, killedLine('c', victim), r.stderr);
    await assertNoneLeft(pids);
  }
}

// scancel and a time limit send SIGTERM to every process of a job at once. Whichever end is
// seen first (a clean stop, or the hub or a rank dead of the signal), the run says it was
// stopped, not that a rank failed, and exits 130.
for (const launch of ['spawn', 'mpmd']) {
  failures(`--launch ${launch}: SIGTERM to every process of the run at once (as scancel sends it): exit 130, one "stopped by signal" line, nothing left`, async () => {
    const { r, pids, lines } = await terminateAll(await longRun(['--launch', launch]));
    assert.equal([r.code, lines.length], [130, 1], r.stderr);
    assert.match(lines[0], STOPPED_BY_TERM(2000000000), lines[0]);
    console.log(`mpi.test.mjs: ${launch}: SIGTERM to all: ${lines[0]}`);
    await assertNoneLeft(pids);
  });
}

// mpirun crashed with SIGSEGV as a scancel took the job down (issue 26, the Slurm bed): a crash
// is said as one, and one that comes with the CLI's own stop signal is part of the stop.
failures('--launch mpmd: mpirun crashing is said as a crash (exit 1); crashing as the stop signal arrives, as part of the stop (exit 130)', async () => {
  for (const stop of [false, true]) {
    const run = await longRun(['--launch', 'mpmd']);
    const pids = descendants(run.child.pid);
    const mpirun = pids.find((p) => /^\S*mpirun/.test(cmdline(p)));
    process.kill(mpirun, 'SIGSEGV');
    if (stop) process.kill(run.child.pid, 'SIGTERM');
    const r = await run.exit;
    const lines = r.stderr.split('\n').filter((l) => l.startsWith('commloop:'));
    assert.equal([r.code, lines.length], [stop ? 130 : 1, 1], r.stderr);
    const crash = String.raw`mpirun crashed \(SIGSEGV\) before the run ended`;
    const log = String.raw`( \(Open MPI's messages: \S+\))?`;
    assert.match(lines[0], new RegExp(stop ? String.raw`^commloop: stopped by signal; the run's processes were signalled too \(${crash}\)${log}$` : `^commloop: ${crash}${log}$`), lines[0]);
    await assertNoneLeft(pids);
  }
});

for (const wire of WIRES) {
  failures(`a rank killed as it starts is named within 5 s, not a rank torn down after it [wire ${wire}]`, () => killAtStart(['--wire', wire], 1));
}

failures('--launch mpmd: a rank killed as it starts is named within 5 s (mpirun may say nothing, or not end the job)', () =>
  killAtStart(['--launch', 'mpmd'], 2));

failures.run();
