// A real Slurm cluster on this machine (test/slurm/bed.sh): munged and slurmctld on the
// controller "ctl", one slurmd on each of the nodes n1 n2 n3, each a network namespace on the
// bed's bridge (10.78.0.0/24). The bed comes up once for the file and goes down at its end.
// These tests check the bed itself: srun across the nodes, a batch job, mpirun inside an
// allocation, and scancel ending a job's processes on every node.
//
// Helpers for the tests of this file (exported nowhere):
//   slurm(args, opts)    runs a Slurm client (srun, sbatch, salloc, scancel, scontrol, ...) to
//                        its end in the root namespace with the bed's environment (ENV; opts.env
//                        replaces it, opts.timeout in ms, default 60 s); { status, stdout, stderr, ms }
//   onNode(node, args)   the same inside bed host `node` (ctl, n1, n2, n3; `bed.sh run`)
//   leftovers()          what jobs left: every process in the bed's hosts but its daemons, and every
//                        process in the root namespace started with ENV; [{ pid, node, cmd }]
//   nothingLeft(ms)      waits up to ms for leftovers() to be empty, then asserts it is
//   until(cond, ms)      polls cond every 100 ms until it holds or ms pass; whether it held
//   nodeOf(pid)          the bed host a process runs in ('root' outside the bed)
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cmdline, exists, hasEnv, mpichKilled, root } from './helpers.mjs';
import { expandHostlist, listCheckpoints, newestCheckpoint, slurmAllocation } from '../dist/internal.js';

const BED = join(root, 'test', 'slurm', 'bed.sh');
const NODES = ['n1', 'n2', 'n3'];
const HOSTS = ['ctl', ...NODES];
const SUBNET = '10.78.0.0/24';
const KILL_WAIT_S = 5; // bed.sh's KillWait
const bed = (...args) => spawnSync('sh', [BED, ...args], { encoding: 'utf8' });

/** Why the bed cannot be made here, or undefined once it is up. */
function prepare() {
  if (process.getuid?.() !== 0) return 'not root: the Slurm bed needs network namespaces (run npm test as root)';
  if (spawnSync('ip', ['-V']).error) return 'no ip command: apt-get install -y iproute2 (bash build.sh --test does)';
  const missing = [['slurmctld', 'slurm-wlm'], ['munged', 'munge']].filter(([c]) => spawnSync('sh', ['-c', `command -v ${c}`]).status !== 0).map(([, p]) => p);
  if (missing.length) throw new Error(`missing ${missing.join(' ')}: apt-get install -y ${missing.join(' ')} (bash build.sh --test does)`);
  process.on('exit', () => bed('down'));
  const up = bed('up');
  // 3: this machine cannot make namespaces or bridges; any other failure is the bed's own.
  if (up.status === 3) return up.stderr.trim().split('\n')[0];
  if (up.status !== 0) throw new Error(`sh test/slurm/bed.sh up failed:\n${up.stderr}${up.error?.message ?? ''}`);
  return undefined;
}
const why = prepare();
if (why) console.log(`slurm.test.mjs: every test skipped: ${why}`);

const dir = mkdtempSync(join(tmpdir(), 'commloop-slurm-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

// Marks every process the tests start (and, through srun's --export=ALL, the jobs' tasks).
const MARK = `COMMLOOP_SLURM_TEST=${process.pid}`;
const ENV = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SLURM_')));
for (const line of why ? [] : bed('env').stdout.split('\n')) {
  const m = /^export (\w+)=(.*)$/.exec(line);
  if (m) ENV[m[1]] = m[2];
}
ENV.COMMLOOP_SLURM_TEST = String(process.pid);

function slurm(args, { env = ENV, timeout = 60_000 } = {}) {
  const t0 = Date.now();
  const r = spawnSync(args[0], args.slice(1), { encoding: 'utf8', env, timeout, cwd: dir });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr + (r.error ? String(r.error) : ''), ms: Date.now() - t0 };
}
const onNode = (node, args, opts) => slurm(['sh', BED, 'run', node, ...args], opts);

const netns = () => Object.fromEntries(HOSTS.map((h) => [`net:[${statSync(`/run/netns/clslurm-${h}`, { throwIfNoEntry: false })?.ino}]`, h]));
function nodeOf(pid, ns = netns()) {
  try {
    return ns[readlinkSync(`/proc/${pid}/ns/net`)] ?? 'root';
  } catch {
    return 'gone';
  }
}
const marked = (pid) => hasEnv(pid, MARK);
function leftovers() {
  const inBed = bed('pids').stdout.split(/\s+/).filter(Boolean).map(Number);
  const mine = readdirSync('/proc').filter((n) => /^[0-9]+$/.test(n)).map(Number).filter((p) => p !== process.pid && marked(p));
  const ns = netns();
  return [...new Set([...inBed, ...mine])].filter(exists).map((pid) => ({ pid, node: nodeOf(pid, ns), cmd: cmdline(pid).slice(0, 80) }));
}
/** Polls `cond` every 100 ms (a look at the bed costs a few processes) until it holds or `ms` pass. */
async function until(cond, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return cond();
}
async function nothingLeft(ms) {
  await until(() => leftovers().length === 0, ms);
  assert.equal(leftovers(), [], 'processes of a job left');
}

const test = suite('the Slurm bed');
const it = why ? test.skip : test;

it('srun -N3 hostname runs on the three nodes; srun from a node runs on another', async () => {
  const r = slurm(['srun', '-N3', 'hostname']);
  assert.is(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim().split('\n').sort(), NODES);
  assert.is(r.stderr, '');
  const n2 = onNode('n2', ['srun', '-N1', '-w', 'n3', 'hostname']); // a client on a node, as on a login node
  assert.is(n2.status, 0, n2.stderr);
  assert.is(n2.stdout, 'n3\n');
  await nothingLeft(5_000);
});

it('an sbatch --wait job of 2 nodes sees its node list, runs srun on both and exits 0', async () => {
  const result = join(dir, 'batch.result');
  const script = join(dir, 'batch.sh');
  writeFileSync(script, [
    '#!/bin/sh',
    '#SBATCH -N2',
    `#SBATCH -o ${join(dir, 'batch.out')}`,
    `exec >${result}`,
    'echo "list $SLURM_JOB_NODELIST"',
    'echo "batch $(hostname)"',
    'scontrol show hostnames "$SLURM_JOB_NODELIST"',
    'echo ---',
    'srun hostname | sort',
    '',
  ].join('\n'));
  const r = slurm(['sbatch', '--wait', '--parsable', script]);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /^\d+\n$/);
  const [head, ran] = readFileSync(result, 'utf8').split('---\n');
  const [list, batch, ...nodes] = head.trim().split('\n');
  assert.is(nodes.length, 2, head);
  assert.ok(nodes.every((n) => NODES.includes(n)), head);
  assert.match(list, /^list n(\[\d[-,]\d\]|\d)$/);
  assert.is(batch, `batch ${nodes[0]}`); // the script runs on the job's first node
  assert.equal(ran.trim().split('\n'), nodes);
  assert.is(readFileSync(join(dir, 'batch.out'), 'utf8'), '');
  await nothingLeft(5_000);
});

it('mpirun inside salloc -N2 runs a rank on each node (daemons started through srun)', async () => {
  assert.ok(existsSync('/usr/bin/mpirun'), 'no mpirun: apt-get install -y openmpi-bin (bash build.sh does)');
  const env = {
    ...ENV,
    OMPI_ALLOW_RUN_AS_ROOT: '1',
    OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1',
    OMPI_MCA_btl_tcp_if_include: SUBNET,
    OMPI_MCA_oob_tcp_if_include: SUBNET,
  };
  const py = 'from mpi4py import MPI; import socket; print(MPI.COMM_WORLD.rank, MPI.COMM_WORLD.size, socket.gethostname())';
  const r = slurm(['salloc', '-N2', 'mpirun', '/usr/bin/python3', '-c', py], { env });
  assert.is(r.status, 0, r.stderr);
  const ranks = r.stdout.trim().split('\n').map((l) => l.split(' ')).sort();
  assert.equal(ranks.map(([rank, size]) => `${rank}/${size}`), ['0/2', '1/2'], r.stdout);
  const hosts = ranks.map(([, , host]) => host);
  assert.ok(hosts.every((h) => NODES.includes(h)) && hosts[0] !== hosts[1], `ranks on ${hosts}`);
  // "revoked": salloc, on its way out, sometimes hears slurmctld end the allocation it gave back.
  const said = /^salloc: Granted job allocation (\d+)\nsalloc: Relinquishing job allocation \1\n(?:salloc: Job allocation \1 has been revoked\.\n)?$/;
  assert.ok(said.test(r.stderr), r.stderr);
  await nothingLeft(5_000);
});

it(`scancel ends a job's processes on every node within KillWait (${KILL_WAIT_S} s) + 3 s, even those that ignore SIGTERM`, async () => {
  const script = join(dir, 'cancel.sh');
  // Every task ignores SIGTERM (an ignored signal stays ignored across exec): only SIGKILL, KillWait after, ends it.
  writeFileSync(script, '#!/bin/sh\nsrun sh -c \'trap "" TERM; exec sleep 300\'\n');
  const r = slurm(['sbatch', '--parsable', '-N3', '-o', join(dir, 'cancel.out'), script]);
  assert.is(r.status, 0, r.stderr);
  const id = r.stdout.trim();
  const sleeps = () => leftovers().filter((p) => p.cmd === 'sleep 300').map((p) => p.node).sort();
  let on = [];
  assert.ok(await until(() => (on = sleeps()).length === 3, 15_000), `the job's tasks are on ${on}`);
  assert.equal(on, NODES);
  const t = Date.now();
  const c = slurm(['scancel', id]);
  assert.is(c.status, 0, c.stderr);
  await until(() => leftovers().length === 0, (KILL_WAIT_S + 3) * 1000);
  const ms = Date.now() - t;
  assert.equal(leftovers(), [], 'processes of the job left');
  assert.ok(ms >= (KILL_WAIT_S - 1) * 1000, `ended in ${ms} ms: before KillWait, so SIGTERM was not ignored?`);
  assert.match(slurm(['scontrol', 'show', 'job', id]).stdout, /JobState=CANCELLED /);
  console.log(`slurm.test.mjs: scancel ended the job in ${ms} ms`);
});

test.run();

// Runs anywhere: how an allocation's node list is read (src/mpi/launch/slurm.ts).
const lists = suite('Slurm node lists');
lists('expandHostlist reads the common forms, and gives up on the rest', () => {
  assert.equal(expandHostlist('n1'), ['n1']);
  assert.equal(expandHostlist('n[1-3]'), ['n1', 'n2', 'n3']);
  assert.equal(expandHostlist('n[1-2,5],gpu01'), ['n1', 'n2', 'n5', 'gpu01']);
  assert.equal(expandHostlist('node[08-11]'), ['node08', 'node09', 'node10', 'node11']);
  assert.equal(expandHostlist('rack[1-2]-gpu,login'), ['rack1-gpu', 'rack2-gpu', 'login']);
  assert.is(expandHostlist('r[1-2]n[1-2]'), undefined);
  assert.is(expandHostlist('n[3-1]'), undefined);
  assert.equal(slurmAllocation({ SLURM_JOB_ID: '7', SLURM_JOB_NODELIST: 'n[1,3]' }), { jobId: '7', nodes: ['n1', 'n3'] });
  assert.is(slurmAllocation({ SLURM_JOB_NODELIST: 'n1' }), undefined);
});
lists.run();

// commloop in the allocation: both launch modes, no hostfile; the job script of
// docs/CLUSTERS.md as written; the warning signal, scancel, a requeue and a node lost.
const jobs = suite('commloop on the Slurm bed');
const jt = why ? jobs.skip : jobs;
const RING = join(root, 'test', 'fixtures', 'hosts', 'stateful.json');
const bin = join(dir, 'bin');
// `commloop` on PATH, as an installed package puts it: the job script calls it by that name.
spawnSync('mkdir', ['-p', bin]);
writeFileSync(join(bin, 'commloop'), `#!/bin/sh\nexec ${process.execPath} ${join(root, 'dist', 'master.js')} "$@"\n`, { mode: 0o755 });
const JOB_ENV = { ...ENV, PATH: `${bin}:${ENV.PATH}`, OMPI_MCA_btl_tcp_if_include: SUBNET, OMPI_MCA_oob_tcp_if_include: SUBNET };
// The job script, exactly as docs/CLUSTERS.md shows it; it runs commloop with ./ring.json.
const SCRIPT = /## A job script\n\n```bash\n([\s\S]*?)```/.exec(readFileSync(join(root, 'docs', 'CLUSTERS.md'), 'utf8'))[1];
const localRef = new Map();
const reference = (k) => {
  if (!localRef.has(k)) {
    const r = spawnSync(process.execPath, [join(root, 'dist', 'master.js'), '--pipeline', RING, '-p', '2', '-i', String(k), '--json'], { encoding: 'utf8' });
    localRef.set(k, JSON.parse(r.stdout).checksum);
  }
  return localRef.get(k);
};
let jobDirs = 0;
/** A folder to submit from: the ring as ring.json, the job script as ring.sbatch. */
function jobDir() {
  const d = join(dir, `job${++jobDirs}`);
  spawnSync('mkdir', ['-p', d]);
  writeFileSync(join(d, 'ring.json'), readFileSync(RING, 'utf8').replaceAll('"./', `"${join(root, 'test', 'fixtures', 'hosts')}/`).replaceAll('"../', `"${join(root, 'test', 'fixtures')}/`));
  writeFileSync(join(d, 'ring.sbatch'), SCRIPT);
  return d;
}
const inDir = (d, args, opts = {}) => {
  const t0 = Date.now();
  const r = spawnSync(args[0], args.slice(1), { encoding: 'utf8', env: JOB_ENV, timeout: 120_000, cwd: d, ...opts });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - t0 };
};
const jobState = (id) => /JobState=(\w+)/.exec(slurm(['scontrol', 'show', 'job', id]).stdout)?.[1];
const logOf = (d, id) => readFileSync(join(d, `ring-${id}.log`), 'utf8');
const jsonOf = (text) => text.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
/**
 * Open MPI 4.1's spawn across daemons hangs now and then at start-up (docs/CLUSTERS.md, "Spawn
 * or MPMD": 1 start in 10 to 1 in 4 here, as on the hosts bed; open-mpi/ompi#9713). commloop
 * starts a spawn-mode run across hosts once more itself (a `note:` line); a start that hangs
 * twice ends at the second --timeout. The tests below are about placement and the scheduler,
 * so such a run is tried again, at most twice, and said.
 */
const HUNG = (ms) => new RegExp(String.raw`^commloop: (stage "\w+": did not answer its spawn|the stages did not start) within ${ms} ms( \(Open MPI's messages: \S+\))?(; resume from iteration \d+ with --resume)?$`, 'm');
const TRIES = 3;
/** The jobs' --timeout, their start's deadline too: a spawn-mode start across nodes takes up to 6 s, and one that hangs costs this much before it is started once more. */
const TIMEOUT_S = 10;
/** The controller's log lines of job `id`: where a job goes wrong, they say why. */
const ctld = (id) => readFileSync('/run/commloop-slurm/log/slurmctld.log', 'utf8').split('\n').filter((l) => new RegExp(`JobId=${id}\\b`).test(l)).join('\n');
/**
 * Submits the job script with `args` (after `--timeout TIMEOUT_S`) from `d` and waits until its ring
 * runs: the first stage's ranks print where they are on the first iteration. A job whose
 * ring does not run within 60 s (two starts that hung, HUNG) is cancelled and submitted
 * again, and that is said.
 */
async function submitRing(d, args) {
  for (let attempt = 1; ; attempt++) {
    const r = inDir(d, ['sbatch', '--parsable', 'ring.sbatch', '--timeout', String(TIMEOUT_S), ...args]);
    assert.is(r.status, 0, r.stderr);
    const id = r.stdout.trim();
    if (await until(() => existsSync(join(d, `ring-${id}.log`)) && /^where 1 /m.test(logOf(d, id)), 60_000)) return id;
    const log = existsSync(join(d, `ring-${id}.log`)) ? logOf(d, id).trim().split('\n').join(' | ') : 'no log';
    const why = `job ${id} ${jobState(id)}; log: ${log}; slurmctld: ${ctld(id).split('\n').join(' | ')}`;
    slurm(['scancel', id]);
    await nothingLeft((KILL_WAIT_S + 5) * 1000);
    spawnSync('rm', ['-rf', join(d, 'ckpt')]);
    if (attempt === TRIES) assert.unreachable(`the ring did not run within 60 s, ${TRIES} times: ${why}`);
    console.log(`slurm.test.mjs: the ring did not run within 60 s (${why}); submitting it again`);
  }
}

/** The status line of a job's log once a checkpoint is taken, for a run of `iterations`. */
const STATUS = (iterations) => new RegExp(String.raw`^status: \d+ of ${iterations} iterations \(\d+\.\d%\), [\d.]+ iterations/s, will finish in .+ \(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\), last checkpoint: iteration \d+ \(ckpt/checkpoint-\d{12}\)$`, 'm');

/**
 * SIGUSR1 to job `id`'s batch shell takes a checkpoint and the job goes on; its log says so in
 * a status line (the job runs with --status-every 1). Returns that line.
 */
async function checkpointBySignal(d, id, iterations) {
  const ckpt = join(d, 'ckpt');
  assert.equal(listCheckpoints(ckpt), []);
  assert.is(slurm(['scancel', '--signal=USR1', '--batch', id]).status, 0);
  assert.ok(await until(() => listCheckpoints(ckpt).length === 1, 10_000), `no checkpoint after SIGUSR1: ${logOf(d, id)}`);
  if (!(await until(() => STATUS(iterations).test(logOf(d, id)), 5_000))) {
    slurm(['scancel', id]); // not left running for the tests after this one
    assert.unreachable(`no status line naming the checkpoint: ${logOf(d, id)}`);
  }
  await new Promise((res) => setTimeout(res, 500));
  assert.is(jobState(id), 'RUNNING');
  return STATUS(iterations).exec(logOf(d, id))[0];
}

/**
 * Requeues running job `id` (its ring checkpointed) and waits for it to end: it must resume
 * from its checkpoint and end with the uninterrupted checksum of `iterations`.
 */
async function requeueAndFinish(d, id, iterations, launch) {
  const q = slurm(['scontrol', 'requeue', id]);
  assert.is(q.status, 0, q.stderr);
  // A requeued job waits for its begin time; it may start 2 s from now. Not at once: slurmd
  // revokes the job's credential at the requeue, to the second, and kills a start within
  // that second as "non-startable batch job: Job credential revoked" (seen: FAILED).
  await until(() => jobState(id) === 'PENDING', 15_000);
  slurm(['scontrol', 'update', `JobId=${id}`, 'StartTime=now+2']);
  for (let attempt = 1; ; attempt++) {
    assert.ok(await until(() => ['COMPLETED', 'FAILED'].includes(jobState(id)), 90_000), `the job is ${jobState(id)}: ${logOf(d, id)}\nslurmctld:\n${ctld(id)}`);
    // The run after the requeue may hang at start-up too (HUNG): the job is requeued again.
    const hung = HUNG(TIMEOUT_S * 1000).exec(logOf(d, id).split('DUE TO JOB REQUEUE').slice(1).join(''));
    if (jobState(id) === 'COMPLETED' || !hung || attempt === TRIES) break;
    console.log(`slurm.test.mjs: ${launch}: after the requeue: ${hung[0]}; requeued again`);
    await nothingLeft((KILL_WAIT_S + 5) * 1000);
    assert.is(slurm(['scontrol', 'requeue', id]).status, 0);
    await until(() => jobState(id) === 'PENDING', 15_000);
    slurm(['scontrol', 'update', `JobId=${id}`, 'StartTime=now+2']);
  }
  assert.is(jobState(id), 'COMPLETED', `${logOf(d, id)}\nslurmctld:\n${ctld(id)}`);
  const runs = jsonOf(logOf(d, id));
  assert.is(runs.length, 1, logOf(d, id));
  assert.ok(runs[0].resumedFrom > 0, `resumed from ${runs[0].resumedFrom}`);
  assert.is(runs[0].checksum, reference(iterations));
  await nothingLeft(10_000);
}

// auto: what a job gets without --launch (MPMD across the allocation's nodes); spawn, forced.
for (const launch of ['spawn', 'auto']) {
  const MODE = launch === 'auto' ? [] : ['--launch', launch];

  jt(`${launch}: salloc -N2, no hostfile: every stage's ranks on both nodes, named, the one-host checksum`, async () => {
    const trace = join(dir, `trace-${launch}.json`);
    // A start that hangs is tried again (HUNG).
    let r;
    for (let attempt = 1; ; attempt++) {
      r = inDir(dir, ['salloc', '-N2', 'commloop', '--pipeline', RING, '-p', '2', '-i', '50', '--json', '--trace', trace, '--timeout', String(TIMEOUT_S), ...MODE]);
      const hung = HUNG(TIMEOUT_S * 1000).exec(r.stderr);
      if (!hung || attempt === TRIES) break;
      console.log(`slurm.test.mjs: ${launch}: ${hung[0]}; trying again`);
      await nothingLeft(10_000);
    }
    assert.is(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    // The trace names each rank's node too.
    const names = JSON.parse(readFileSync(trace, 'utf8')).traceEvents.filter((e) => e.name === 'thread_name' && e.pid > 0).map((e) => e.args.name);
    assert.equal(names.filter((n) => / @ n\d$/.test(n)).length, 6, names.join(', '));
    assert.is(j.checksum, reference(50));
    for (const st of j.stages) assert.equal(new Set(st.hosts).size, 2, `${st.name} on ${st.hosts}`);
    assert.ok(j.stages.every((st) => st.hosts.every((h) => NODES.includes(h))), JSON.stringify(j.stages));
    assert.is(j.wire, launch === 'spawn' ? 'tcp' : 'shm');
    assert.equal([j.launch, j.launchReason], launch === 'spawn' ? ['spawn', '--launch spawn'] : ['mpmd', "auto: ranks on the Slurm allocation's 2 nodes"]);
    await nothingLeft(10_000);
  });

  // Spawn mode's starts across nodes are the slow ones (and hang now and then): salloc's run
  // above and the node lost below. The job script's signal, scancel and requeue are the same
  // CLI's in both modes: they run under auto (MPMD) and under MPICH below.
  if (launch === 'spawn') continue;

  jt(`${launch}: SIGUSR1 to the batch shell takes a checkpoint and the job goes on; scancel ends it within KillWait, nothing left, the checkpoint intact, exit 130`, async () => {
    const d = jobDir();
    const id = await submitRing(d, [...MODE, '--status-every', '1']);
    const ckpt = join(d, 'ckpt');
    // The job's log says how it is doing: a status line a second here, naming the checkpoint.
    console.log(`slurm.test.mjs: ${launch}: the job's log: ${await checkpointBySignal(d, id, 10000000)}`);
    const t = Date.now();
    assert.is(slurm(['scancel', id]).status, 0);
    await until(() => leftovers().length === 0, (KILL_WAIT_S + 5) * 1000);
    const ms = Date.now() - t;
    assert.equal(leftovers(), [], 'processes of the job left');
    console.log(`slurm.test.mjs: ${launch}: scancel ended the ring's job in ${ms} ms`);
    const found = newestCheckpoint(ckpt);
    assert.equal(found.notes, []);
    const at = found.checkpoint.iterations;
    assert.ok(at > 0);
    // commloop gets the SIGTERM with its ranks. Either the step in flight ended first and it
    // took a last checkpoint, or a process of the run died of the signal first: then it says
    // it was stopped, not that the rank failed. Both exit 130.
    const said = logOf(d, id).split('\n').filter((l) => l.startsWith('commloop:'));
    assert.is(said.length, 1, logOf(d, id));
    const stopped = [
      String.raw`stopped by signal after ${at} of 10000000 iterations; checkpoint at iteration ${at} in \S+: resume with --resume`,
      // What the signal ended first: the hub, a rank, mpirun, Open MPI's daemon on the other node.
      String.raw`stopped by signal; the run's processes were signalled too \(.+\); resume from iteration ${at} with --resume`,
    ];
    assert.match(said[0], new RegExp(`^commloop: (${stopped.join('|')})$`), said[0]);
    console.log(`slurm.test.mjs: ${launch}: after scancel: ${said[0]}`);
    assert.match(slurm(['scontrol', 'show', 'job', id]).stdout, /ExitCode=130:0/);
  });

  // The job script run whole too: requeued at its first checkpoint, it ends on both nodes.
  jt(`${launch}: the job script of docs/CLUSTERS.md runs the ring across 2 nodes; requeued mid-run, it resumes from its checkpoint and ends with the uninterrupted checksum`, async () => {
    const d = jobDir();
    const id = await submitRing(d, ['-i', '2000', '--checkpoint-every', '200', '--json', ...MODE]);
    assert.ok(await until(() => listCheckpoints(join(d, 'ckpt')).length > 0, 30_000), 'no checkpoint within 30 s');
    await requeueAndFinish(d, id, 2000, launch);
    const [j] = jsonOf(logOf(d, id));
    assert.equal([j.checkpoints.last.iterations, [...new Set(j.stages.flatMap((st) => st.hosts))].sort().length], [2000, 2]);
  });
}

// Under MPICH (issue 28): Hydra launches its proxies through srun, the job script as written,
// with --mpi mpich after it. Its ranks spin while they wait (7 processes on 2 nodes here: ~20
// iterations/s), so the runs are short.
const MPICH = ['--mpi', 'mpich'];
const haveMpich = () => assert.ok(existsSync('/usr/bin/mpiexec.hydra') && existsSync(join(root, 'build', 'Release', 'commloop_mpi_mpich.node')), 'MPICH or its addon is missing: apt-get install -y mpich libmpich-dev (bash build.sh --test does), then bash build.sh');

jt('mpich: the job script runs the ring across 2 nodes; SIGUSR1 takes a checkpoint; requeued, it resumes to the uninterrupted checksum', async () => {
  haveMpich();
  const d = jobDir();
  // 120 iterations: some 6 s at MPICH's ~20/s here; the signal comes within a second of the first.
  const id = await submitRing(d, [...MPICH, '-i', '120', '--json', '--status-every', '1']);
  console.log(`slurm.test.mjs: mpich: the job's log: ${await checkpointBySignal(d, id, 120)}`);
  await requeueAndFinish(d, id, 120, 'mpich');
  const [j] = jsonOf(logOf(d, id));
  assert.equal([j.mpi, j.launch], ['mpich', 'mpmd']);
  for (const st of j.stages) assert.equal(new Set(st.hosts).size, 2, `${st.name} on ${st.hosts}`);
});

jt(`mpich: a rank killed on another node ends the job within 10 s, exit 1, one line naming it; scancel ends the next within KillWait, exit 130; nothing left; salloc's shell off the nodes exits 2`, async () => {
  haveMpich();
  const d = jobDir();
  let id = await submitRing(d, [...MPICH, '-i', '100000000']);
  // A rank of stage c on the node that is not the batch node (where commloop and the hub run).
  const batch = /BatchHost=(\S+)/.exec(slurm(['scontrol', 'show', 'job', id]).stdout)?.[1];
  const victim = leftovers().find((p) => NODES.includes(p.node) && p.node !== batch && /commloop_c_worker_mpich/.test(p.cmd));
  assert.ok(victim, `no C rank off the batch node: ${JSON.stringify(leftovers())}`);
  let t = Date.now();
  process.kill(victim.pid, 'SIGKILL');
  assert.ok(await until(() => jobState(id) !== 'RUNNING', 10_000), `the job is still running: ${logOf(d, id)}`);
  console.log(`slurm.test.mjs: mpich: a rank killed on ${victim.node} ended the job in ${Date.now() - t} ms`);
  let said = logOf(d, id).split('\n').filter((l) => l.startsWith('commloop:'));
  assert.is(said.length, 1, logOf(d, id));
  assert.match(said[0], new RegExp(mpichKilled(String.raw`stage "c" rank \d`, victim.node)), said[0]);
  console.log(`slurm.test.mjs: mpich: ${said[0]}`);
  assert.match(slurm(['scontrol', 'show', 'job', id]).stdout, /ExitCode=1:0/);
  await nothingLeft(10_000);

  id = await submitRing(d, [...MPICH, '-i', '100000000']);
  t = Date.now();
  assert.is(slurm(['scancel', id]).status, 0);
  await until(() => leftovers().length === 0, (KILL_WAIT_S + 5) * 1000);
  const ms = Date.now() - t;
  assert.equal(leftovers(), [], 'processes of the job left');
  console.log(`slurm.test.mjs: mpich: scancel ended the ring's job in ${ms} ms`);
  said = logOf(d, id).split('\n').filter((l) => l.startsWith('commloop:'));
  assert.is(said.length, 1, logOf(d, id));
  // SIGTERM reaches commloop and the ranks at once: a rank's death, passed on by Hydra, is named as a signal's.
  assert.match(said[0], /^commloop: stopped by signal(; the run's processes were signalled too \(.+\))?/, said[0]);
  assert.match(slurm(['scontrol', 'show', 'job', id]).stdout, /ExitCode=130:0/);

  const r = inDir(d, ['salloc', '-N2', 'commloop', '--pipeline', 'ring.json', '-i', '5', ...MPICH]);
  assert.is(r.status, 2);
  assert.match(r.stderr, /^commloop: --mpi mpich: this host \(\S+\) is not a node of Slurm allocation \d+ \(n\d,n\d\), and the hub, which talks to this process on named pipes, must run here: run commloop in the job script \(sbatch\), or use --mpi openmpi$/m);
  await nothingLeft(5_000);
});

// Last: each kills a node's slurmd and everything in it (n2, then n3, so the other runs keep two nodes).
for (const [launch, node] of [['spawn', 'n2'], ['auto', 'n3']]) {
  jt(`${launch}: ${node} lost mid-run (its slurmd and ranks killed): exit 1 within 15 s, one line naming the stage, rank and node`, async () => {
    const ckpt = join(dir, `lost-${launch}`);
    const bedSegments = () => readdirSync('/dev/shm').filter((f) => /^vader_segment\.n\d\./.test(f));
    const before = new Set(bedSegments());
    const { spawn } = await import('node:child_process');
    let err, exit;
    // A start that hangs is tried again (HUNG).
    for (let attempt = 1; ; attempt++) {
      const child = spawn('salloc', ['-N2', '-w', `n1,${node}`, 'commloop', '--pipeline', RING, '-p', '2', '-i', '100000000', '--timeout', '10', '--checkpoint', ckpt, '--checkpoint-every', '500', ...(launch === 'auto' ? [] : ['--launch', launch])], { env: JOB_ENV, cwd: dir });
      err = '';
      child.stderr.on('data', (b) => (err += b));
      exit = new Promise((res) => child.on('exit', (code) => res(code)));
      const hung = () => HUNG(10000).exec(err);
      assert.ok(await until(() => listCheckpoints(ckpt).length > 0 || hung(), 45_000), `no checkpoint: ${err}`);
      if (!hung() || attempt === TRIES) break;
      await exit;
      console.log(`slurm.test.mjs: ${launch}: ${hung()[0]}; trying again`);
      await nothingLeft(10_000);
    }
    assert.ok(listCheckpoints(ckpt).length > 0, `no checkpoint: ${err}`);
    const t = Date.now();
    const inNode = () => leftovers().filter((p) => p.node === node).map((p) => p.pid);
    try {
      process.kill(Number(bed('pid', node).stdout), 'SIGKILL');
      for (const pid of inNode()) process.kill(pid, 'SIGKILL');
      const code = await exit;
      const ms = Date.now() - t;
      assert.is(code, 1, err);
      assert.ok(ms < 15_000, `took ${ms} ms`);
      const lines = err.split('\n').filter((l) => l.startsWith('commloop:'));
      assert.is(lines.length, 1, err);
      assert.match(lines[0], new RegExp(`^commloop: stage "(where|acc|c)" rank \\d on ${node}: its node was lost: Open MPI lost its daemon there \\(the node or its network went down\\)( \\(Open MPI's messages: \\S+\\))?; resume from iteration \\d+ with --resume$`), lines[0]);
      console.log(`slurm.test.mjs: ${launch}: ${node} lost: ${lines[0]} (${ms} ms)`);
      await nothingLeft(10_000);
    } finally {
      // The node comes back (ReturnToService=2) for what follows.
      bed('start', node);
      // Only the lost node's ranks could not remove their shared memory (bed.sh start clears it).
      // This run's: a spawn-mode start that hung in an earlier test can leave the batch node's
      // (seen once in CI, after a requeued job's start hung; not fixed, see docs/CLUSTERS.md).
      assert.equal(bedSegments().filter((f) => !before.has(f)), [], 'shared memory of the run left');
      assert.ok(await until(() => /^idle/.test(slurm(['sinfo', '-h', '-n', node, '-o', '%t']).stdout), 30_000), `${node} did not come back: ${slurm(['sinfo', '-n', node]).stdout}`);
    }
  });
}

jobs.run();

// Keep last: after every test, `down` leaves nothing of the bed.
const end = suite('the Slurm bed goes down');
(why ? end.skip : end)('down stops every daemon, removes the namespaces, links, bridge and state dir', async () => {
  const daemons = ['munged', 'slurmctld', ...NODES].map((d) => Number(bed('pid', d).stdout));
  assert.ok(daemons.every((p) => p > 0 && exists(p)), `daemons ${daemons}`);
  const r = bed('down');
  assert.is(r.status, 0, r.stderr);
  // Dead by now (down waits for that); their parent, pid 1, may take a moment to reap them.
  await until(() => !daemons.some(exists), 3_000);
  assert.equal(daemons.filter(exists).map((p) => `${p} ${readFileSync(`/proc/${p}/stat`, 'utf8').slice(0, 40)}`), [], 'daemons left');
  assert.equal(spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout.split('\n').filter((l) => l.startsWith('clslurm-')), []);
  assert.equal(spawnSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).stdout.split('\n').filter((l) => /clsbr0|clsv-/.test(l)), []);
  assert.not.ok(existsSync('/run/commloop-slurm'));
  assert.equal(leftovers(), []);
});
end.run();
