// How often a start across hosts hangs, counted on the project's own beds (issue 26):
//   node bench/starts.mjs hosts|slurm [--launch auto|spawn|mpmd] [-n 50] [--timeout 10]
// runs the hosts ring (test/fixtures/hosts/ring.json, 2 ranks a stage, 3 iterations) n times
// across two hosts: on the hosts bed with a hostfile of h1 and h2 (test/hosts/bed.sh), or on
// the Slurm bed as `salloc -N2` (test/slurm/bed.sh). Each start that hung (commloop's note that
// it starts once more, or a run ending on a start deadline) is counted, and every other
// failure is kept with its line. The bed goes up first and down at the end. Appends one
// record to bench/results/starts.json and prints it. Needs root (network namespaces).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const { values, positionals } = parseArgs({ allowPositionals: true, options: { launch: { type: 'string', default: 'spawn' }, n: { type: 'string', short: 'n', default: '50' }, timeout: { type: 'string', default: '10' } } });
const bedName = positionals[0];
if (!['hosts', 'slurm'].includes(bedName) || !['auto', 'spawn', 'mpmd'].includes(values.launch)) {
  console.error('usage: node bench/starts.mjs hosts|slurm [--launch auto|spawn|mpmd] [-n 50] [--timeout 10]');
  process.exit(2);
}
const n = Number(values.n);
const timeoutS = Number(values.timeout);
const master = join(root, 'dist', 'master.js');
const ring = join(root, 'test', 'fixtures', 'hosts', 'ring.json');
const dir = mkdtempSync(join(tmpdir(), 'commloop-starts-'));
const sh = (...args) => spawnSync('sh', args, { encoding: 'utf8' });

let env = { ...process.env };
let prefix = [];
let hostArgs = [];
let down;
if (bedName === 'hosts') {
  const bed = join(root, 'test', 'hosts', 'bed.sh');
  const up = sh(bed, 'up', 'h1', 'h2');
  if (up.status !== 0) throw new Error(`test/hosts/bed.sh up: ${up.stderr}`);
  down = () => sh(bed, 'down');
  const hostfile = join(dir, 'hosts');
  writeFileSync(hostfile, 'h1 slots=1\nh2 slots=1\n');
  hostArgs = ['--hostfile', hostfile];
  // As test/hosts.test.mjs: the bed's rsh agent, round robin over the hosts, the bed's bridge.
  Object.assign(env, {
    OMPI_MCA_plm_rsh_agent: join(root, 'test', 'hosts', 'agent.sh'),
    OMPI_MCA_plm_rsh_no_tree_spawn: '1',
    OMPI_MCA_rmaps_base_mapping_policy: 'node',
    OMPI_MCA_oob_tcp_if_include: '10.77.0.0/24',
    OMPI_MCA_btl_tcp_if_include: '10.77.0.0/24',
  });
} else {
  const bed = join(root, 'test', 'slurm', 'bed.sh');
  const up = sh(bed, 'up');
  if (up.status !== 0) throw new Error(`test/slurm/bed.sh up: ${up.stderr}`);
  down = () => sh(bed, 'down');
  env = Object.fromEntries(Object.entries(env).filter(([k]) => !k.startsWith('SLURM_')));
  for (const line of sh(bed, 'env').stdout.split('\n')) {
    const m = /^export (\w+)=(.*)$/.exec(line);
    if (m) env[m[1]] = m[2];
  }
  Object.assign(env, { OMPI_MCA_btl_tcp_if_include: '10.78.0.0/24', OMPI_MCA_oob_tcp_if_include: '10.78.0.0/24' });
  prefix = ['salloc', '-N2'];
}

const NOTE = /^note: .*: Open MPI's spawn across hosts hangs at start-up now and then; starting once more$/m;
const HUNG = /^commloop: (stage "\w+": did not answer its spawn|the stages did not start) within \d+ ms/m;
const record = { bed: bedName, launch: values.launch, starts: n, timeoutS, date: new Date().toISOString(), ok: 0, hung: 0, hungTwice: 0, failed: [], launched: {}, seconds: [] };
try {
  for (let k = 0; k < n; k++) {
    const t0 = Date.now();
    const argv = [process.execPath, master, '--pipeline', ring, '-p', '2', '--sizes', '10,1000,1000', '-i', '3', ...hostArgs, '--timeout', String(timeoutS), '--json', '--launch', values.launch];
    const cmd = [...prefix, ...argv];
    const r = spawnSync(cmd[0], cmd.slice(1), { encoding: 'utf8', env, cwd: dir, timeout: (4 * timeoutS + 60) * 1000 });
    const s = (Date.now() - t0) / 1000;
    record.seconds.push(Math.round(s * 10) / 10);
    const notes = (r.stderr.match(new RegExp(NOTE.source, 'gm')) ?? []).length;
    record.hung += notes;
    if (r.status === 0) {
      record.ok++;
      const j = JSON.parse(r.stdout.trim().split('\n').at(-1));
      record.launched[j.launch] = (record.launched[j.launch] ?? 0) + 1;
    } else if (HUNG.test(r.stderr)) {
      record.hung++;
      record.hungTwice += notes ? 1 : 0;
    } else record.failed.push(r.stderr.split('\n').find((l) => l.startsWith('commloop:')) ?? `exit ${r.status ?? r.signal}: ${r.stderr.slice(0, 200)}`);
    process.stderr.write(`start ${k + 1}/${n}: ${r.status === 0 ? 'ok' : 'failed'}${notes ? ` (${notes} hung)` : ''} in ${s.toFixed(1)} s\n`);
  }
} finally {
  down();
}
const out = join(root, 'bench', 'results', 'starts.json');
const all = existsSync(out) ? JSON.parse(readFileSync(out, 'utf8')) : [];
all.push(record);
writeFileSync(out, JSON.stringify(all, null, 1) + '\n');
const sorted = [...record.seconds].sort((a, b) => a - b);
console.log(`${bedName} bed, --launch ${values.launch}: ${record.ok} of ${n} runs ended well; ${record.hung} starts hung (${record.hungTwice} runs hung twice); ${record.failed.length} other failures; median ${sorted[Math.floor(n / 2)]} s a run; launched ${JSON.stringify(record.launched)}`);
for (const f of record.failed) console.log(`  ${f}`);
