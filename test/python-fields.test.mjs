// The Python runner's protocol 3 (docs/PROTOCOL.md, "Version 3: fields") against a master
// written here in mpi4py, without the hub: one MPMD mpirun of the master (app 0) and two ranks
// of python/commloop_stage.py (app 1). The master sends six dtypes of several shapes and checks
// every byte of every rank's output block, padding included, against the values the stage's
// transform is known to write; the failures are held to their exact report lines.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { root } from './helpers.mjs';

const PY = '/usr/bin/python3';
if (spawnSync('mpirun.openmpi', ['--version']).error) throw new Error('mpirun.openmpi is missing: apt-get install -y openmpi-bin');
if (spawnSync(PY, ['-c', 'import mpi4py, numpy']).status !== 0) {
  throw new Error(`${PY} cannot import mpi4py and numpy: apt-get install -y python3-mpi4py python3-numpy`);
}

const dir = mkdtempSync(join(tmpdir(), 'commloop-pyfields-'));
const master = join(dir, 'master.py');
const stage = join(dir, 'stage.py');
writeFileSync(master, String.raw`"""A master of protocol 3 for the Python runner, MPMD mode, one stage (app 1) of N ranks: known
values through six dtypes, every byte of every rank's output block checked (padding zero).

usage: master.py check [--merged] [--times] [--state] [--iters K] [--table TEXT (~ for a space)]"""
import io, sys, time
import numpy as np
from mpi4py import MPI

args = sys.argv[1:]
mode = args[0]
opt = lambda k: k in args
val = lambda k, d: args[args.index(k) + 1] if k in args else d
MAGIC = 0x434C4F50
ROOT = MPI.ROOT
world = MPI.COMM_WORLD
world.Set_errhandler(MPI.ERRORS_RETURN)
local = world.Split(0, world.Get_rank())
inter = local.Create_intercomm(0, world, 1, 1)
inter.Set_errhandler(MPI.ERRORS_RETURN)
N = inter.Get_remote_size()
version = int(val('--version', '3'))

DT = {'float64': '<f8', 'float32': '<f4', 'int32': '<i4', 'uint8': '|u1', 'complex64': '<c8', 'int16': '<i2'}
if mode == 'check':
    IN = [('a', 'float64', (3,)), ('b', 'int32', (2, 3)), ('c', 'float32', (5,)), ('d', 'uint8', (3,)),
          ('e', 'complex64', (2, 2)), ('f', 'int16', (3,))]
    OUT = [('p', 'float64', (3,)), ('q', 'int32', (3, 2)), ('s', 'float32', (4,)), ('u', 'uint8', (5,)),
           ('z', 'complex64', (2, 2)), ('h', 'int16', (3,))]


def layout(fields):
    offs, at = [], 0
    for name, dt, shape in fields:
        offs.append(at)
        at += -(-int(np.prod(shape)) * np.dtype(DT[dt]).itemsize // 8) * 8
    return offs, at


def pack(fields, values):
    offs, total = layout(fields)
    block = bytearray(total)
    for (name, dt, shape), o in zip(fields, offs):
        b = np.asarray(values[name], dtype=DT[dt]).reshape(shape).tobytes()
        block[o:o + len(b)] = b
    return bytes(block)


offs_in, bytes_in = layout(IN)
offs_out, bytes_out = layout(OUT)
n_in, n_out = bytes_in // 8, bytes_out // 8
table_text = ''.join(f'in {n} {d} {"x".join(map(str, s))}\n' for n, d, s in IN) + \
             ''.join(f'out {n} {d} {"x".join(map(str, s))}\n' for n, d, s in OUT)
table_text = val('--table', table_text).replace('\\n', '\n').replace('~', ' ')
flags = (1 if opt('--times') else 0) | (2 if opt('--merged') else 0) | (4 if opt('--state') else 0)

inter.Bcast([np.array([MAGIC, version, 0, N], dtype=np.int32), MPI.INT], root=ROOT)
inter.Bcast([np.array([1, n_in, flags], dtype=np.int32), MPI.INT], root=ROOT)
inter.Bcast([np.array([n_in, n_out], dtype=np.int32), MPI.INT], root=ROOT)
if version == 3:
    raw = table_text.encode()
    inter.Bcast([np.array([len(raw)], dtype=np.int32), MPI.INT], root=ROOT)
    inter.Bcast([bytearray(raw), MPI.BYTE], root=ROOT)
if flags & 1:
    every, cap = 1, 4
    inter.Bcast([np.array([every, cap], dtype=np.int32), MPI.INT], root=ROOT)
merged = None
if flags & 2:
    merged = inter.Merge(high=False)
    merged.Set_errhandler(MPI.ERRORS_RETURN)
ready = np.empty(2 * N, dtype=np.int32)
inter.Gather(None, [ready, MPI.INT], root=ROOT)
if flags & 1:
    for _ in range(8):
        inter.Bcast([np.zeros(1), MPI.DOUBLE], root=ROOT)
        inter.Gather(None, [np.empty(N), MPI.DOUBLE], root=ROOT)


def header(*h):
    inter.Bcast([np.array(h, dtype=np.int32), MPI.INT], root=ROOT)


if flags & 4:  # load: each rank an .npy of [10 + r]
    header(4, 0, 0, 0)
    blobs = []
    for r in range(N):
        b = io.BytesIO(); np.save(b, np.array([10 + r], dtype=np.int64)); blobs.append(b.getvalue())
    inter.Scatter([np.array([[2, len(x)] for x in blobs], dtype=np.int32), MPI.INT], None, root=ROOT)
    for r in range(N):
        inter.Send([blobs[r], MPI.BYTE], dest=r, tag=7)
    inter.Gather(None, [np.empty(N, dtype=np.int32), MPI.INT], root=ROOT)

send = np.zeros(N * n_in)
recv = np.zeros(N * n_out)
cnt_in = [0] + [n_in] * N
cnt_out = [0] + [n_out] * N
disp_in = [0] + [r * n_in for r in range(N)]
disp_out = [0] + [r * n_out for r in range(N)]


def step():
    if merged is not None:
        merged.Scatterv([send, cnt_in, disp_in, MPI.DOUBLE], [np.empty(0), MPI.DOUBLE], root=0)
        merged.Gatherv([np.empty(0), MPI.DOUBLE], [recv, cnt_out, disp_out, MPI.DOUBLE], root=0)
    else:
        inter.Scatter([send, MPI.DOUBLE], None, root=ROOT)
        inter.Gather(None, [recv, MPI.DOUBLE], root=ROOT)


iters = int(val('--iters', '5'))
rng = np.random.default_rng(7)
bad = 0
if mode == 'check':
    for i in range(iters):
        header(2, i, 1, 0)
        ins, want = [], []
        for r in range(N):
            v = {'a': rng.standard_normal(3) * 1e9 / 3, 'b': rng.integers(-2**31, 2**31 - 1000 * N - iters, (2, 3)),
                 'c': rng.standard_normal(5).astype(np.float32), 'd': rng.integers(0, 256, 3),
                 'e': (rng.standard_normal((2, 2)) + 1j * rng.standard_normal((2, 2))).astype(np.complex64),
                 'f': rng.integers(-30000, 30000, 3)}
            ins.append(pack(IN, v))
            w = {'p': v['a'] * 2 + r + i, 'q': v['b'].astype(np.int32).T + 1000 * r + i,
                 's': v['c'][:4] * np.float32(0.5), 'u': np.array([(int(v['d'][j]) + r + i) % 256 if j < 3 else 255 - r for j in range(5)]),
                 'z': v['e'] * np.complex64(1j) + np.complex64(r + 0.5j), 'h': v['f'].astype(np.int16) - i}
            want.append(w)
        send[:] = np.frombuffer(b''.join(ins), dtype=np.float64)
        recv[:] = np.nan
        step()
        got = recv.tobytes()
        for r in range(N):
            w = want[r]
            blk = got[r * bytes_out:(r + 1) * bytes_out]
            exp = pack(OUT, w)
            if blk != exp:
                bad += 1
                print(f'iteration {i} rank {r}: bytes differ', file=sys.stderr)
                for (nm, dt, shp), o in zip(OUT, offs_out):
                    ln = int(np.prod(shp)) * np.dtype(DT[dt]).itemsize
                    if blk[o:o + ln] != exp[o:o + ln]:
                        print(' ', nm, np.frombuffer(blk, DT[dt], int(np.prod(shp)), o), 'want', np.frombuffer(exp, DT[dt], int(np.prod(shp)), o), file=sys.stderr)
    print(f'check: {iters} iterations x {N} ranks, {bytes_in} bytes in / {bytes_out} bytes out a rank: '
          f'{"all bytes as expected (padding zero)" if bad == 0 else f"{bad} blocks differ"}')

if flags & 4:  # save: each rank's state
    header(3, iters, 0, 0)
    info = np.empty(2 * N, dtype=np.int32)
    inter.Gather(None, [info, MPI.INT], root=ROOT)
    states = []
    for r in range(N):
        buf = bytearray(int(info[2 * r + 1]))
        if len(buf):
            inter.Recv([buf, MPI.BYTE], source=r, tag=7)
        states.append(np.load(io.BytesIO(bytes(buf))).tolist() if info[2 * r] == 2 else None)
    print('saved states:', states)
header(0, 0, 0, 0)
if flags & 1:
    kept = min(iters, cap)
    rec = np.empty(N * 5 * kept)
    inter.Gather(None, [rec, MPI.DOUBLE], root=ROOT)
    rec = rec.reshape(N, kept, 5)
    print('step times: iterations', rec[0, :, 0].tolist(), 'ordered', bool(np.all(np.diff(rec[0, :, 1:], axis=1) >= 0)))
if merged is not None:
    merged.Free()
inter.Disconnect()
local.Free()
sys.exit(1 if bad else 0)
`);
writeFileSync(stage, String.raw`"""The stage of test/python-fields.test.mjs: known values, and checks that the arrays are the same views every step."""
import os
import numpy as np

seen = {}
state = np.zeros(1, dtype=np.int64)


def transform(x, out, ctx):
    ids = tuple(id(a) for a in list(x.values()) + list(out.values()))
    if 'ids' in seen:
        assert seen['ids'] == ids, 'views changed between steps'
    seen['ids'] = ids
    for a in list(x.values()) + list(out.values()):
        assert not a.flags.owndata, 'a copy, not a view'
    assert list(ctx.input) == list(x), (ctx.input, list(x))
    assert list(ctx.output) == list(out)
    for f in ctx.input.values():
        assert x[f.name].dtype == f.dtype and x[f.name].shape == f.shape
    for f in ctx.output.values():
        assert out[f.name].dtype == f.dtype and out[f.name].shape == f.shape
    assert ctx.input['c'].dtype == 'float32' and ctx.input['c'].nbytes == 24 and ctx.input['d'].offset == 72
    assert ctx.output['z'].shape == (2, 2) and ctx.output['z'].offset == 72
    mode = os.environ.get('V3_MODE', 'known')
    if mode == 'replace':
        out['p'] = np.zeros(3)
    i, r = ctx.iteration, ctx.rank
    state[0] += 1
    out['p'][:] = x['a'] * 2 + r + i                       # float64 [3]
    out['q'][:] = x['b'].T + 1000 * r + i                   # int32 [3x2] from int32 [2x3]
    out['s'][:] = x['c'][:4] * np.float32(0.5)              # float32 [4] (16 bytes, no pad)
    out['u'][:3] = (x['d'].astype(np.int64) + r + i) % 256  # uint8 [5] (padded to 8)
    out['u'][3:] = 255 - r
    out['z'][:] = x['e'] * np.complex64(1j) + np.complex64(r + 0.5j)  # complex64 [2x2]
    out['h'][:] = x['f'] - i                                # int16 [3] (padded to 8)


def save(ctx):
    assert list(ctx.output)[0] == 'p'
    return state.copy()


def load(st, ctx):
    assert list(ctx.input)[0] == 'a'
    state[:] = st + 1000

`);

/** The master with `args` and two ranks of the runner around stage.py's transform. */
function run(args, env = {}) {
  const r = spawnSync(
    'mpirun.openmpi',
    ['--oversubscribe', '--allow-run-as-root', ...Object.keys(env).flatMap((k) => ['-x', k]), '-np', '1', PY, master, 'check', ...args, ':', '-np', '2', PY, join(root, 'python', 'commloop_stage.py'), stage, 'transform', 'fields'],
    { encoding: 'utf8', timeout: 60000, env: { ...process.env, ...env } },
  );
  return { status: r.status, stdout: r.stdout, fails: [...new Set(r.stderr.split('\n').filter((l) => l.startsWith('commloop-fail: ')).map((l) => l.replace(/^commloop-fail: 0 \d /, 'commloop-fail: 0 R ')))] };
}
const EXACT = 'check: 5 iterations x 2 ranks, 120 bytes in / 112 bytes out a rank: all bytes as expected (padding zero)\n';
const TABLE = 'in~a~float64~3\\nin~b~int32~2x3\\nin~c~float32~5\\nin~d~uint8~3\\nin~e~complex64~2x2\\nin~f~int16~3\\n';

const v3 = suite('python runner, protocol 3 (a Python master, no hub)');

v3('gives back every byte of float64, int32, float32, uint8, complex64 and int16 fields, padding zero', () => {
  const r = run([]);
  assert.equal([r.status, r.stdout, r.fails], [0, EXACT, []]);
});

v3('merged, with step times and state hooks: the same bytes, the states loaded and saved, the records in order', () => {
  const r = run(['--merged', '--times', '--state']);
  assert.equal([r.status, r.stdout, r.fails], [0, `${EXACT}saved states: [[1015], [1016]]\nstep times: iterations [1.0, 2.0, 3.0, 4.0] ordered True\n`, []]);
});

v3('an unknown dtype in the field table fails the stage naming the field', () => {
  const r = run(['--table', `${TABLE}out~p~float64~3\\nout~h~float16~3\\n`]);
  assert.is.not(r.status, 0);
  assert.equal(r.fails, ['commloop-fail: 0 R ProtocolError: field table: field "h" (out): dtype "float16" is not one of float64, float32, int64, int32, int16, int8, uint64, uint32, uint16, uint8, complex128, complex64']);
});

v3('out fields that do not fill n_out fail the stage, listing them', () => {
  const r = run(['--table', `${TABLE}out~p~float64~3\\nout~q~int32~3x2\\n`]);
  assert.is.not(r.status, 0);
  assert.equal(r.fails, ['commloop-fail: 0 R ProtocolError: field table: the out fields pack to 48 bytes a rank, but n_out is 14 words (112 bytes): "p" (float64 3, 24 bytes), "q" (int32 3x2, 24 bytes)']);
});

v3('a shape of five axes fails the stage naming the field', () => {
  const r = run(['--table', `${TABLE}out~p~float64~1x1x1x1x14\\n`]);
  assert.equal(r.fails, ['commloop-fail: 0 R ProtocolError: field table: field "p" (out): shape "1x1x1x1x14" is not 1 to 4 positive integers joined by "x"']);
});

v3('a transform that assigns out["p"] = ... instead of filling it fails with TypeError', () => {
  const r = run([], { V3_MODE: 'replace' });
  assert.is.not(r.status, 0);
  assert.equal(r.fails, ["commloop-fail: 0 R TypeError: 'mappingproxy' object does not support item assignment"]);
});

v3.run();
