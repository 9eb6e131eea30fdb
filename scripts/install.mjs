// npm's `install` step for commloop (replaces the implicit `node-gyp rebuild`). Builds
// what needs this machine's compiler and Open MPI, when they are there:
//   build/Release/commloop_kernel.node  (g++, make, python3 for node-gyp)
//   build/Release/commloop_mpi.node     (and Open MPI's headers: libopenmpi-dev)
//   dist/commloop_c_worker              (mpicc: the C stage under --transport mpi)
// and where MPICH is installed beside it (mpicc.mpich; --mpi mpich):
//   build/Release/commloop_mpi_mpich.node, dist/commloop_c_worker_mpich,
//   dist/libcommloop_stage.mpich.so     (the C SDK the python stage runner uses under MPICH)
// It never fails the install: the threads transport with the WASM kernel needs none of
// these, and a run that does need one says what to install. Quiet on success; on a
// skip or a failed build it prints one line (and the compiler's last lines).
// COMMLOOP_SKIP_NATIVE=1 skips every native build.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const say = (line) => process.stderr.write(`commloop install: ${line}\n`);
const TOOLS_HINT = 'apt-get install -y g++ make python3';
const MPI_HINT = 'apt-get install -y openmpi-bin libopenmpi-dev';
const REBUILD = 'then run "npm rebuild commloop"';

/** The file a bare command name runs, or undefined. */
function which(cmd) {
  if (cmd.includes('/')) return existsSync(cmd) ? cmd : undefined;
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const file = join(dir || '.', cmd);
    if (existsSync(file) && statSync(file).isFile()) return file;
  }
  return undefined;
}

/** Runs a build step with its output captured; returns undefined, or its last lines on failure. */
function run(cmd, args) {
  const r = spawnSync(cmd, args, { cwd: root, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status === 0) return undefined;
  const out = `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? r.error.message : ''}`.trim().split('\n');
  return out.slice(-25).join('\n');
}

/** Newest modification time under the given files and folders (one level deep is enough here). */
function newest(paths) {
  let t = 0;
  for (const p of paths.map((q) => join(root, q))) {
    if (!existsSync(p)) continue;
    const st = statSync(p);
    const files = st.isDirectory() ? readdirSync(p).map((f) => join(p, f)) : [p];
    for (const f of files) t = Math.max(t, statSync(f).mtimeMs);
  }
  return t;
}
const fresh = (out, inputs) => existsSync(join(root, out)) && statSync(join(root, out)).mtimeMs >= newest(inputs);

/**
 * node-gyp: npm hands its own to install scripts (npm_config_node_gyp); in a checkout
 * there is the devDependency; otherwise whatever is on PATH.
 */
function nodeGyp() {
  const env = process.env.npm_config_node_gyp;
  if (env && existsSync(env)) return [process.execPath, env];
  try {
    return [process.execPath, createRequire(join(root, 'package.json')).resolve('node-gyp/bin/node-gyp.js')];
  } catch {
    const bin = which('node-gyp');
    return bin ? [bin] : undefined;
  }
}

function main() {
  if (process.env.COMMLOOP_SKIP_NATIVE === '1') {
    say('COMMLOOP_SKIP_NATIVE=1: no native builds (the threads transport with --c-backend wasm still works)');
    return;
  }
  const mpicc = which('mpicc.openmpi');
  const missingTools = [process.env.CXX?.split(' ')[0] || 'g++', 'make', 'python3'].filter((t) => !which(t));

  // The MPI C workers and MPICH's SDK library need only their MPI's mpicc (which brings its own
  // compiler driver); MPICH's as build.sh makes them (binding.gyp builds its addon where
  // mpicc.mpich is found).
  const mpich = which('mpicc.mpich');
  const worker = (out) => ['-O3', '-ffp-contract=off', '-Iinclude', '-o', out, 'transport/c_worker.c', 'wasm/commloop_kernel.c', '-lm'];
  const builds = [
    [mpicc, 'dist/commloop_c_worker', ['transport/c_worker.c', 'include', 'wasm'], worker('dist/commloop_c_worker'), '--transport mpi with --c-backend native will not run'],
    [mpich, 'dist/commloop_c_worker_mpich', ['transport/c_worker.c', 'include', 'wasm'], worker('dist/commloop_c_worker_mpich'), '--mpi mpich will not run C stages natively'],
    [mpich, 'dist/libcommloop_stage.mpich.so', ['python/commloop_stage_lib.c', 'include'], ['-O2', '-ffp-contract=off', '-shared', '-fPIC', '-Iinclude', '-o', 'dist/libcommloop_stage.mpich.so', 'python/commloop_stage_lib.c'], '--mpi mpich will not run python stages'],
  ];
  for (const [cc, out, inputs, args, lost] of builds) {
    if (!cc || fresh(out, inputs)) continue;
    mkdirSync(join(root, 'dist'), { recursive: true });
    const err = run(cc, args);
    if (err) say(`building ${out} failed; ${lost}:\n${err}`);
  }

  const outputs = ['build/Release/commloop_kernel.node', ...(mpicc ? ['build/Release/commloop_mpi.node'] : []), ...(mpich ? ['build/Release/commloop_mpi_mpich.node'] : [])];
  if (outputs.every((o) => fresh(o, ['binding.gyp', 'transport', 'wasm']))) return;
  if (missingTools.length) {
    say(`no ${missingTools.join(', ')}: native addons not built (${TOOLS_HINT}${mpicc ? '' : ` and ${MPI_HINT}`}, ${REBUILD}); the threads transport with --c-backend wasm works without them`);
    return;
  }
  const gyp = nodeGyp();
  if (!gyp) {
    say(`node-gyp not found: native addons not built (npm install -g node-gyp, ${REBUILD})`);
    return;
  }
  const err = run(gyp[0], [...gyp.slice(1), 'rebuild', '--', `-Dwith_mpi=${mpicc ? 1 : 0}`]);
  if (err) {
    say(`building the native addons failed; the threads transport with --c-backend wasm still works:\n${err}`);
    return;
  }
  if (!mpicc) say(`no Open MPI (mpicc.openmpi): the MPI transport is not built (${MPI_HINT}, ${REBUILD})`);
}

try {
  main();
} catch (err) {
  say(`skipped the native builds: ${err.message}`);
}
