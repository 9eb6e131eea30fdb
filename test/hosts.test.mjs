// Several hosts, on a bed of network namespaces (test/hosts/bed.sh; Open MPI starts its
// daemons there through test/hosts/agent.sh, which behaves as ssh). The supervisor, Open
// MPI's HNP and, in spawn mode, the hub stay in the root namespace, which is not a host of
// the hostfile; under MPMD the hub is rank 0, on the hostfile's first host. In both launch
// modes: ranks land on every host with the one-host checksum; a rank killed on another host,
// a partition and an unreachable host each end the run in time, with exit 1, one line that
// names what failed, and nothing of the run left on any host.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MPI_MISSING, cliJson, cmdline, exists, hasEnv, haveMpi, master, mpichKilled, root, until } from './helpers.mjs';
import { listCheckpoints } from '../dist/internal.js';
import { referenceRing } from './reference.mjs';

const BED = join(root, 'test', 'hosts', 'bed.sh');
const AGENT = join(root, 'test', 'hosts', 'agent.sh');
const RING = join(root, 'test', 'fixtures', 'hosts', 'ring.json');
/** A ring with a stage that keeps state, for the checkpoint tests. */
const STATEFUL = join(root, 'test', 'fixtures', 'hosts', 'stateful.json');
const bed = (...args) => spawnSync('sh', [BED, ...args], { encoding: 'utf8' });

/** Why the bed cannot be made here, or undefined once it is up. */
function prepare() {
  if (process.getuid?.() !== 0) return 'not root: the bed of hosts needs network namespaces (run npm test as root)';
  if (spawnSync('ip', ['-V']).error) return 'no ip command: apt-get install -y iproute2 (bash build.sh --test does)';
  if (!haveMpi()) throw new Error(MPI_MISSING);
  // h3 has an address nothing routes to; h4's link is down from the start (it drops packets).
  const up = bed('up', 'h1', 'h2', 'h3:noroute', 'h4:drop');
  if (up.status !== 0) return `cannot make network namespaces here: ${(up.stderr || up.error?.message || '').trim().split('\n')[0]}`;
  process.on('exit', () => bed('down'));
  return undefined;
}
const why = prepare();
if (why) console.log(`hosts.test.mjs: every test skipped: ${why}`);

const dir = mkdtempSync(join(tmpdir(), 'commloop-hosts-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
const hostfile = (...hosts) => {
  const file = join(dir, `${hosts.join('-')}.hosts`);
  writeFileSync(file, hosts.map((h) => `${h} slots=1\n`).join(''));
  return file;
};
const ENV = {
  ...process.env,
  // Marks every process this file starts (leftovers() looks for it: other test files may run meanwhile).
  COMMLOOP_HOSTS_TEST: String(process.pid),
  OMPI_MCA_plm_rsh_agent: AGENT,
  OMPI_MCA_plm_rsh_no_tree_spawn: '1',
  // Round robin over the hosts, so every host holds ranks of the ring's first stage.
  OMPI_MCA_rmaps_base_mapping_policy: 'node',
  // Open MPI's own traffic stays on the bed's bridge.
  OMPI_MCA_oob_tcp_if_include: '10.77.0.0/24',
  OMPI_MCA_btl_tcp_if_include: '10.77.0.0/24',
  // MPICH's Hydra (the --mpi mpich suite): the same agent as its rsh, and its proxies call
  // mpiexec back on the bridge (from a namespace this host's name leads nowhere).
  HYDRA_LAUNCHER: 'rsh',
  HYDRA_LAUNCHER_EXEC: AGENT,
  HYDRA_IFACE: 'clbr0',
};

/** A run that ended because its start hung twice (commloop starts a hung spawn across hosts once more itself). */
const HUNG_TWICE = /^commloop: (stage "\w+": did not answer its spawn|the stages did not start) within \d+ ms/m;
/**
 * Starts the CLI on the bed; `where` collects the fixture's "where RANK HOST PID" lines.
 * Open MPI 4.1's spawn across the bed's daemons hangs now and then (docs/CLUSTERS.md; in test
 * runs up to twice in a row, which ends commloop's run): such a run is started again, at most
 * three times in all, and said, unless `retryHung` is false. `child`, `stdout`, `stderr` and
 * `where` are the current start's; `exit` resolves with the last one's end.
 */
/**
 * The runs' --timeout, their start's deadline too: a start across the bed takes up to 6 s in
 * spawn mode, and one that hangs (above) costs this much before it is started once more.
 */
const TIMEOUT = '10';
/** How long a test waits for its ring to run: three starts that each hung twice at TIMEOUT fit. */
const START_MS = 90_000;
function run(args, ring = RING, { retryHung = true } = {}) {
  // `ended`: the last start is over; a test waiting for the ring to run stops waiting then.
  const r = { stdout: '', stderr: '', where: [], ended: false };
  let ended;
  r.exit = new Promise((resolve) => (ended = resolve));
  const start = (attempt) => {
    const t0 = Date.now();
    const child = spawn(process.execPath, [master, '--pipeline', ring, ...args], { env: ENV });
    Object.assign(r, { child, stdout: '', stderr: '', where: [] });
    child.stdout.on('data', (d) => (r.stdout += d));
    child.stderr.on('data', (d) => {
      r.stderr += d;
      r.where = [...r.stderr.matchAll(/^where (\d+) (\S+) (\d+)$/gm)].map((m) => ({ rank: Number(m[1]), host: m[2], pid: Number(m[3]) }));
    });
    child.on('close', (code) => {
      const hung = HUNG_TWICE.exec(r.stderr);
      if (retryHung && code === 1 && hung && attempt < 3) {
        console.log(`hosts.test.mjs: ${hung[0]}: started again`);
        start(attempt + 1);
      } else {
        r.ended = true;
        ended({ code, at: Date.now(), ms: Date.now() - t0 });
      }
    });
  };
  start(1);
  return r;
}
/**
 * stderr without the fixture's where lines or status lines, nor the note of a start that hung and was tried
 * again (Open MPI's spawn across hosts, now and then): printed here instead, so it is seen.
 */
const AGAIN = /^note: .*: Open MPI's spawn across hosts hangs at start-up now and then; starting once more$/;
const said = (r) =>
  r.stderr.split('\n').filter((l) => {
    if (AGAIN.test(l)) console.log(`hosts.test.mjs: ${l}`);
    return l && !l.startsWith('where ') && !l.startsWith('status: ') && !AGAIN.test(l);
  });
const LOG = String.raw`(?: \(Open MPI's messages: \S+\))?`;

/** Whether a process carries this file's mark (ENV): started by one of its runs. */
const MARK = `COMMLOOP_HOSTS_TEST=${process.pid}`;
const marked = (pid) => hasEnv(pid, MARK);
/** Processes of the run still there: inside any host of the bed, or this file's own in the root namespace. */
function leftovers() {
  const inBed = bed('pids').stdout.split(/\s+/).filter(Boolean).map(Number);
  const mine = readdirSync('/proc')
    .filter((n) => /^[0-9]+$/.test(n))
    .map(Number)
    .filter((p) => p !== process.pid && [join(root, 'dist'), AGENT, 'hydra'].some((s) => cmdline(p).includes(s)) && marked(p));
  return [...new Set([...inBed, ...mine])].filter(exists).map((p) => `${p} ${cmdline(p).slice(0, 80)}`);
}
async function nothingLeft(ms) {
  await until(() => leftovers().length === 0, ms);
  assert.equal(leftovers(), [], 'processes of the run left');
}

/**
 * Runs a ring whose ranks on h2 hang at iteration 1 with `args` (its hosts among them) and
 * --timeout 3, and asserts the end: exit 1, one line naming a rank (`rank`, a regex source)
 * of stage "hang" on h2, within start-up, the deadline and the teardown; nothing left.
 */
async function hangOnH2(args, rank, log) {
  const ring = join(dir, 'hang-h2.json');
  writeFileSync(ring, JSON.stringify({ stages: [{ name: 'where', kind: 'ts', ranks: 2, size: 4, module: join(root, 'test', 'fixtures', 'hosts', 'where.mjs') }, { name: 'hang', kind: 'ts', ranks: 2, size: 4, module: join(root, 'test', 'fixtures', 'hosts', 'hang-h2.mjs') }] }));
  const r = run([...args, '-i', '3', '--timeout', '3'], ring);
  const { code, ms } = await r.exit;
  assert.is(code, 1, r.stderr);
  const lines = said(r);
  assert.is(lines.length, 1, r.stderr);
  assert.match(lines[0], new RegExp(String.raw`^commloop: stage "hang" rank ${rank} on h2: did not return from its transform within 3000 ms \(iteration 1\)${log}$`), lines[0]);
  assert.ok(ms < 3_000 + 3_000 + 10_000, `took ${ms} ms`); // start-up, the deadline, the teardown
  await nothingLeft(10_000);
}

/**
 * Runs the ring on h1 and h2 with `args`, SIGKILLs a first-stage rank on h2 once it runs, and
 * asserts the end: exit 1 within 10 s, one line matching `line(rank)`, nothing left anywhere.
 */
async function killOnH2(args, line) {
  const r = run([...args, '-p', '2', '--sizes', '10,1000,1000', '-i', '1000000', '--hostfile', hostfile('h1', 'h2'), '--timeout', TIMEOUT]);
  assert.ok(await until(() => r.where.some((w) => w.host === 'h2'), START_MS, r), `no rank on h2: ${r.stderr}`);
  const victim = r.where.find((w) => w.host === 'h2');
  const t = Date.now();
  process.kill(victim.pid, 'SIGKILL');
  const { code, at } = await r.exit;
  assert.is(code, 1);
  assert.ok(at - t < 10_000, `took ${at - t} ms`);
  const lines = said(r);
  assert.is(lines.length, 1, r.stderr);
  assert.match(lines[0], new RegExp(line(victim.rank)), lines[0]);
  await nothingLeft(10_000);
}

for (const launch of ['spawn', 'mpmd']) {
  const test = suite(`several hosts, --launch ${launch}`);
  const it = why ? test.skip : test;
  const MODE = ['--launch', launch];

  it('ranks land on every host and the checksum is the one-host run\'s', async () => {
    const r = run([...MODE, '-p', '2', '--sizes', '10,1000,1000', '-i', '3', '--hostfile', hostfile('h1', 'h2'), '--json', '--timeout', TIMEOUT]);
    const { code } = await r.exit;
    assert.is(code, 0, r.stderr);
    assert.is(JSON.parse(r.stdout).checksum, referenceRing(2, [[10, 1000, 1000]], 3).checksum);
    assert.is(JSON.parse(r.stdout).checksum, 14468.8671875);
    assert.equal([...new Set(r.where.map((w) => w.host))].sort(), ['h1', 'h2']);
    assert.equal(said(r), []);
    await nothingLeft(5_000);
  });

  // Open MPI 4.1's spawn across daemons hangs now and then at start-up (docs/CLUSTERS.md):
  // a spawn-mode run across hosts starts once more when its stages did not start. A stage
  // that is not an MPI program never answers its spawn, so both starts run out.
  if (launch === 'spawn') {
    it('a spawn across hosts that hangs at start-up is started once more and said; then exit 1 at the second timeout, nothing left', async () => {
      const ring = join(dir, 'hang.json');
      const where = join(root, 'test', 'fixtures', 'hosts', 'where.mjs');
      writeFileSync(ring, JSON.stringify({ stages: [{ name: 'where', kind: 'ts', ranks: 2, size: 4, module: where }, { name: 'sleeper', kind: 'exec', ranks: 2, size: 4, command: ['/bin/sleep', '30'] }] }));
      const r = run([...MODE, '-p', '2', '-i', '3', '--hostfile', hostfile('h1', 'h2'), '--timeout', '3'], ring, { retryHung: false });
      const { code, ms } = await r.exit;
      assert.is(code, 1, r.stderr);
      const lines = r.stderr.split('\n').filter(Boolean);
      assert.is(lines.length, 2, r.stderr);
      // The hub's own deadline names the stage; on a loaded machine the first stage's spawn across
      // the bed can take most of the 3 s, and the supervisor's start deadline (3 s + 2 s) then
      // comes first, naming the hosts and blaming none: the same hang, started once more too.
      const hang = String.raw`(stage "sleeper": did not answer its spawn within 3000 ms|the stages did not start within 3000 ms on h1, h2 \(is every host reachable, by ssh too\?\))`;
      assert.match(lines[0], new RegExp(String.raw`^note: ${hang}: Open MPI's spawn across hosts hangs at start-up now and then; starting once more$`), lines[0]);
      assert.match(lines[1], new RegExp(String.raw`^commloop: ${hang}${LOG}$`), lines[1]);
      assert.ok(ms > 6_000 && ms < 20_000, `took ${ms} ms`);
      await nothingLeft(10_000);
    });
  }

  // A rank on another host gets the step deadline too (spawn mode: with its command, env(1)):
  // its own watch names it; before, only the hub's deadline fired, naming the stage alone.
  it('a rank that hangs on another host is named with its rank and host within --timeout + 3 s', () => hangOnH2([...MODE, '--hostfile', hostfile('h1', 'h2')], '[01]', LOG));

  // Spawn mode: the ts2 kill below asserts the same (exit 1 within 10 s, one line naming the
  // stage, rank and host); a spawn-mode start across hosts costs 6 s and, now and then, a
  // hang, so it is not paid twice for one assertion.
  (launch === 'spawn' ? () => {} : it)('a rank killed on another host ends the run in < 10 s: exit 1, one line naming the stage and the host', () =>
    killOnH2(MODE, (rank) => String.raw`^commloop: stage "where" rank ${rank} on h2: was killed by SIGKILL \((?:reported by Open MPI|pid \d+)\)${LOG}$`));

  // The ring's last stage: Open MPI then takes down the first stage's ranks on h1 (SIGTERM)
  // and its daemon gives up (exit 137) before the hub hears of h2; both were named instead.
  it('a ts2 rank killed on h2 is the one named, not a rank or daemon torn down after it', async () => {
    const inH2 = () => spawnSync('ip', ['netns', 'pids', 'commloop-h2'], { encoding: 'utf8' }).stdout.split(/\s+/).filter(Boolean).map(Number);
    const ts2OnH2 = () => inH2().filter((p) => cmdline(p).includes('transform ts2'));
    // The ring must be up before the kill. Open MPI's spawn of the third stage across the bed
    // hung once in about ten runs (`did not answer its spawn within 20000 ms` at --timeout 20, seen in CI): that
    // is not what this test is about, so a ring that does not start is tried once more, and said.
    let r;
    for (let attempt = 1; ; attempt++) {
      r = run([...MODE, '-p', '2', '--sizes', '10,1000,1000', '-i', '1000000', '--hostfile', hostfile('h1', 'h2'), '--timeout', TIMEOUT, '--status-every', '0.2']);
      // Running: a status line counts iterations done (the hub's Ready comes before the first).
      if (await until(() => ts2OnH2().length === 1 && r.where.length === 2 && /^status: [1-9]\d* of /m.test(r.stderr), START_MS, r)) break;
      r.child.kill('SIGINT');
      await r.exit;
      await nothingLeft(10_000);
      if (attempt === 2) assert.unreachable(`no ts2 rank on h2, twice: ${r.stderr}`);
      console.log(`hosts.test.mjs: the ring did not start (${said(r).join(' | ')}); trying once more`);
    }
    const t = Date.now();
    process.kill(ts2OnH2()[0], 'SIGKILL');
    const { code, at } = await r.exit;
    assert.is(code, 1);
    assert.ok(at - t < 10_000, `took ${at - t} ms`);
    const lines = said(r);
    assert.is(lines.length, 1, r.stderr);
    assert.match(lines[0], new RegExp(String.raw`^commloop: stage "ts2" rank 1 on h2: was killed by SIGKILL \((?:reported by Open MPI|pid \d+)\)${LOG}$`), lines[0]);
    await nothingLeft(10_000);
  });

  // MPMD only, the launch mode runs across hosts get by default: in spawn mode a rank killed
  // on h2 is the ts2 test above, and a checkpoint's kill and resume are resume.test.mjs's.
  (launch === 'spawn' ? () => {} : it)('a stateful rank killed on h2 with checkpoints: exit 1 naming it and where to resume; --resume (MPMD) gives the one-host checksum', async () => {
    const cp = join(dir, `cp-${launch}`);
    // Killed at its first checkpoints (every 50): 2000 iterations are enough to be mid-run.
    const common = ['-p', '2', '-i', '2000', '--hostfile', hostfile('h1', 'h2'), '--timeout', TIMEOUT, '--checkpoint', cp, '--checkpoint-every', '50'];
    const args = [...MODE, ...common];
    const inH2 = () => spawnSync('ip', ['netns', 'pids', 'commloop-h2'], { encoding: 'utf8' }).stdout.split(/\s+/).filter(Boolean).map(Number);
    const accOnH2 = () => inH2().filter((p) => /worker\.js ts \S*ts_state\.mjs/.test(cmdline(p)));
    const r = run(args, STATEFUL);
    assert.ok(await until(() => accOnH2().length === 1 && listCheckpoints(cp).length > 0, START_MS, r), `no acc rank on h2 or no checkpoint: ${r.stderr}`);
    const t = Date.now();
    process.kill(accOnH2()[0], 'SIGKILL');
    const { code, at } = await r.exit;
    assert.is(code, 1);
    assert.ok(at - t < 10_000, `took ${at - t} ms`);
    const lines = said(r);
    assert.is(lines.length, 1, r.stderr);
    const from = Number(/; resume from iteration (\d+) with --resume$/.exec(lines[0])?.[1]);
    assert.match(lines[0], new RegExp(String.raw`^commloop: stage "acc" rank \d on h2: was killed by SIGKILL \((?:reported by Open MPI|pid \d+)\)${LOG}; resume from iteration ${from} with --resume$`), lines[0]);
    await nothingLeft(10_000);
    // Resumed under MPMD in both modes (a checkpoint does not hold the launch mode): one
    // spawn-mode start across hosts fewer, the kind that hangs now and then (94 s once, here).
    const again = run(['--launch', 'mpmd', ...common, '--resume', '--json'], STATEFUL);
    assert.is((await again.exit).code, 0, again.stderr);
    const j = JSON.parse(again.stdout);
    assert.is(j.resumedFrom, from);
    assert.is(j.checksum, cliJson(['--pipeline', STATEFUL, '-p', '2', '-i', '2000']).checksum);
    await nothingLeft(10_000);
  });

  // Under MPMD the hub is rank 0, on h1: cutting h1 puts it on the far side. Spawn mode's cut
  // of h2 ended the same way as MPMD's (the hub's step deadline, the same line): not paid for
  // twice, where a spawn-mode start across hosts costs 6 s and now and then a hang.
  // --timeout 8, as measured in the README (with 5, a CI run's cut ended 2.14 s after it).
  const cutS = 8;
  for (const cut of launch === 'mpmd' ? ['h1', 'h2'] : []) {
    it(`a partition (${cut}'s link down) ends the run by --timeout (${cutS} s) + 2 s; 10 s after the link returns nothing is left`, async () => {
      const r = run([...MODE, '-p', '2', '--sizes', '10,1000,1000', '-i', '1000000', '--hostfile', hostfile('h1', 'h2'), '--timeout', String(cutS)]);
      try {
        assert.ok(await until(() => r.where.length === 2, START_MS, r), `the ring did not start: ${r.stderr}`);
        const t = Date.now();
        assert.is(bed('cut', cut).status, 0);
        const { code, at } = await r.exit;
        assert.is(code, 1);
        assert.ok(at - t <= cutS * 1000 + 2_000, `took ${at - t} ms`);
        const lines = said(r);
        assert.is(lines.length, 1, r.stderr);
        const hubSide = launch === 'mpmd' && cut === 'h1';
        const expected = hubSide
          ? String.raw`^commloop: the hub on h1 fell silent for \d+ ms: the host or the network to it is down${LOG}$`
          : String.raw`^commloop: stage "(where|c|ts2)": did not answer a (gather|scatter|bcast) within ${cutS * 1000} ms${LOG}$`;
        assert.match(lines[0], new RegExp(expected));
      } finally {
        bed('mend', cut);
      }
      // Within 10 s of the link's return, not after a fixed 10 s: polled.
      await until(() => leftovers().length === 0, 10_000);
      assert.equal(leftovers(), [], 'processes of the run left 10 s after the link returned');
    });
  }

  const unreachable = [
    ['nosuch', 'an unresolvable name', 'Name or service not known \\(ssh\\)'],
    ['h3', 'no route to it', 'No route to host \\(ssh\\)'],
    ['h4', 'one that drops packets', 'ssh to it did not connect within 5000 ms'],
  ];
  // A host that drops packets costs ssh's 5 s connect wait: under MPMD only (reach.ts reads ssh the same in both modes).
  for (const [host, what, detail] of unreachable.filter(([host]) => launch === 'mpmd' || host !== 'h4')) {
    it(`a hostfile host that cannot be reached (${what}) fails the run within --timeout: exit 1, one line naming it`, async () => {
      const r = run([...MODE, '-p', '2', '--sizes', '10,1000,1000', '-i', '3', '--hostfile', hostfile('h1', host), '--timeout', '5']);
      const { code, ms } = await r.exit;
      assert.is(code, 1);
      assert.ok(ms <= 5_000 + 2_500, `took ${ms} ms`);
      const lines = said(r);
      assert.is(lines.length, 1, r.stderr);
      assert.match(lines[0], new RegExp(String.raw`^commloop: host ${host} cannot be reached: ${detail}${LOG}$`));
      await nothingLeft(10_000);
    });
  }

  test.run();
}

// MPICH (Hydra's rsh launcher through the agent): the hub keeps the first slot, on this host
// beside its named pipes; the stages' ranks go to h1 and h2 and round again.
const mpich = suite('several hosts, --mpi mpich');
const mi = why ? mpich.skip : mpich;
if (!why && spawnSync('mpiexec.hydra', ['--version']).error) throw new Error('mpiexec.hydra is missing: apt-get install -y mpich libmpich-dev (bash build.sh --test does)');
mi('ranks land on h1 and h2 under MPICH, with the one-host checksum', async () => {
  const r = run(['--mpi', 'mpich', '-p', '2', '--sizes', '10,1000,1000', '-i', '3', '--hostfile', hostfile('h1', 'h2'), '--json', '--timeout', TIMEOUT]);
  const { code } = await r.exit;
  assert.is(code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.equal([j.checksum, j.mpi, j.launch], [14468.8671875, 'mpich', 'mpmd']);
  assert.equal([...new Set(r.where.map((w) => w.host))].sort(), ['h1', 'h2']);
  assert.equal(said(r), []);
  await nothingLeft(5_000);
});
// Hydra's cleanup kills the other ranks on h2 by the same signal: the rank is named when it was alone there (impl/mpich.ts).
mi('a rank killed on h2 under MPICH ends the run in < 10 s: exit 1, one line naming the host and the rank', () =>
  killOnH2(['--mpi', 'mpich'], (rank) => mpichKilled(`stage "where" rank ${rank}`, 'h2')));
// With h2 alone in the hostfile the ranks go h2, here, h2, here: stage "hang" rank 0 is on h2.
mi('under MPICH a rank that hangs on h2 is named; SIGINT ends a ring across hosts with exit 130 and kill -9 of commloop ends it too, nothing left on any host', async () => {
  const MPICH_LOG = String.raw`(?: \(MPICH's messages: \S+\))?`;
  await hangOnH2(['--mpi', 'mpich', '--hostfile', hostfile('h2')], '0', MPICH_LOG);
  for (const signal of ['SIGINT', 'SIGKILL']) {
    const r = run(['--mpi', 'mpich', '-p', '2', '--sizes', '10,1000,1000', '-i', '1000000', '--hostfile', hostfile('h1', 'h2'), '--timeout', TIMEOUT, '--json']);
    assert.ok(await until(() => r.where.length === 2, START_MS, r), `the ring did not start: ${r.stderr}`);
    const t = Date.now();
    r.child.kill(signal);
    const { code, at } = await r.exit;
    if (signal === 'SIGINT') {
      assert.equal([code, JSON.parse(r.stdout).stopped, said(r).length], [130, true, 1], r.stderr);
      assert.match(said(r)[0], /^commloop: stopped by signal after \d+ of 1000000 iterations$/);
      assert.ok(at - t < 10_000, `took ${at - t} ms`);
    }
    // kill -9: the hub sees its named pipes close and ends; Hydra's cleanup ends the rest.
    await nothingLeft(10_000);
    console.log(`hosts.test.mjs: mpich: ${signal} of commloop: nothing left ${Date.now() - t} ms after it`);
  }
});
mpich.run();

const auto = suite('several hosts, --launch auto');
(why ? auto.skip : auto)('a hostfile of other hosts makes --launch auto (the default) start one mpirun (MPMD), and says so', async () => {
  const r = run(['-p', '2', '--sizes', '10,1000,1000', '-i', '3', '--hostfile', hostfile('h1', 'h2'), '--json', '--timeout', TIMEOUT]);
  const { code } = await r.exit;
  assert.is(code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.equal([j.launch, j.launchReason, j.checksum], ['mpmd', 'auto: ranks on 2 other hosts', 14468.8671875]);
  assert.equal([...new Set(r.where.map((w) => w.host))].sort(), ['h1', 'h2']);
  await nothingLeft(5_000);
});
auto.run();
