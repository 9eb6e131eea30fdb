"""The mpi4py peer of bench/c_floor.c: the commloop ring (ts1 halfmean -> c halffirst ->
ts2 halfmean) with a Python master and Python stages, all over docs/PROTOCOL.md.

  /usr/bin/python3 bench/mpi4py_ring.py -p N --sizes n1,n2,n3[/n1,n2,n3...] -i K   (master)
  ... bench/mpi4py_ring.py --worker halfmean|halffirst                             (spawned stage)

Prints one JSON line, like c_floor, with "impl": "mpi4py".
"""
import json
import os
import socket
import sys
import time

import numpy as np

MPI = None  # mpi4py.MPI, imported by start_mpi(): the import is MPI_Init

MAGIC, VERSION = 0x434C4F50, 1
KERNELS = ('halfmean', 'halffirst', 'halfmean')
INT_MAX = 2**31 - 1


def start_mpi():
    """Sets the project's MPI defaults and initialises MPI; returns the perf_counter before MPI_Init."""
    # They must be in the environment before MPI_Init so that the singleton's orted, and
    # through it every spawned stage, inherits them; setdefault lets the user override.
    for k, v in (('OMPI_MCA_rmaps_base_oversubscribe', '1'), ('OMPI_MCA_mpi_yield_when_idle', '1'),
                 ('OMPI_MCA_btl_tcp_if_include', 'lo'), ('OMPI_ALLOW_RUN_AS_ROOT', '1'),
                 ('OMPI_ALLOW_RUN_AS_ROOT_CONFIRM', '1')):
        os.environ.setdefault(k, v)
    global MPI
    t = time.perf_counter()
    from mpi4py import MPI
    return t


def halfmean(x, r, k):
    # cumsum is a sequential left-to-right accumulate; np.sum is pairwise and changes the bits.
    half = float(np.cumsum(x)[-1]) / len(x) / 2
    return half + (r * k + np.arange(k, dtype=np.float64))


def halffirst(x, r, k):
    return float(x[0]) / 2 + (r * k + np.arange(k, dtype=np.float64))


def host_hash():
    h = 2166136261
    for b in socket.gethostname().encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h - (1 << 32) if h >= (1 << 31) else h


def fatal(comm, what, err):
    print(f'mpi4py_ring: {what} failed: {err}', file=sys.stderr, flush=True)
    comm.Abort(1)


def worker(kernel_name):
    start_mpi()
    kernel = {'halfmean': halfmean, 'halffirst': halffirst}.get(kernel_name)
    parent = MPI.Comm.Get_parent()
    if kernel is None or parent == MPI.COMM_NULL:
        print('mpi4py_ring: --worker needs halfmean|halffirst and a spawning master', file=sys.stderr)
        MPI.COMM_WORLD.Abort(2)
    parent.Set_errhandler(MPI.ERRORS_RETURN)
    rank = parent.Get_rank()
    head = np.empty(4, dtype=np.int32)
    try:
        parent.Bcast(head, root=0)
        if head[0] != MAGIC or head[1] != VERSION:
            print(f'mpi4py_ring: bad hello (magic {head[0]:#x}, version {head[1]})', file=sys.stderr)
            parent.Abort(2)
        parent.Gather(np.array([os.getpid(), host_hash()], dtype=np.int32), None, root=0)
        while True:
            parent.Bcast(head, root=0)
            if head[0] == 0:
                break
            x = np.empty(int(head[2]))
            parent.Scatter(None, x, root=0)
            parent.Gather(kernel(x, rank, int(head[3])), None, root=0)
    except MPI.Exception as err:
        fatal(parent, 'worker protocol', err)
    parent.Disconnect()
    MPI.Finalize()


def usage(why):
    print(f'mpi4py_ring: {why}\nusage: mpi4py_ring.py -p N --sizes n1,n2,n3[/n1,n2,n3...] -i K',
          file=sys.stderr)
    sys.exit(2)


def positive(s):
    if not s.isascii() or not s.isdigit() or not 1 <= int(s) <= INT_MAX:
        raise ValueError(s)
    return int(s)


def parse_args(argv):
    opts = {}
    names = {'-p': 'procs', '--procs': 'procs', '-i': 'iters', '--iterations': 'iters', '--sizes': 'sizes'}
    it = iter(argv)
    for a in it:
        if a not in names:
            usage(f'unknown option or stray argument "{a}"')
        v = next(it, None)
        if v is None:
            usage(f'{a} needs a value')
        try:
            if names[a] == 'sizes':
                trips = [[positive(n) for n in g.split(',')] for g in v.split('/')]
                if any(len(t) != 3 for t in trips):
                    raise ValueError(v)
                opts['sizes'] = trips
            else:
                opts[names[a]] = positive(v)
        except ValueError:
            usage(f'bad value "{v}" for {a}: positive integers, sizes as n1,n2,n3[/n1,n2,n3...]')
    if len(opts) != 3:
        usage('-p, --sizes and -i are all required')
    return opts['procs'], opts['sizes'], opts['iters']


def master(procs, sizes, iters):
    t_total = start_mpi()
    # Buffer k holds triple position k: 0 is Array1/4, stage s writes buffer (s+1) % 3.
    bufs = [np.empty(procs * max(t[k] for t in sizes)) for k in range(3)]
    length = procs * sizes[0][0]
    bufs[0][:length] = 1.0
    MPI.COMM_SELF.Set_errhandler(MPI.ERRORS_RETURN)
    script = os.path.abspath(__file__)
    try:
        t0 = time.perf_counter()
        inter = [MPI.COMM_SELF.Spawn(sys.executable, args=[script, '--worker', k], maxprocs=procs)
                 for k in KERNELS]
        for c in inter:
            c.Set_errhandler(MPI.ERRORS_RETURN)
        # Hello every stage before any ready gather, so their start-ups overlap.
        for s, c in enumerate(inter):
            c.Bcast(np.array([MAGIC, VERSION, s, procs], dtype=np.int32), root=MPI.ROOT)
        ready = np.empty(2 * procs, dtype=np.int32)
        for c in inter:
            c.Gather(None, ready, root=MPI.ROOT)
        start_s = time.perf_counter() - t0

        times = []
        for i in range(iters):
            t = time.perf_counter()
            out = sizes[i % len(sizes)]
            for s, c in enumerate(inter):
                n_in, n_out = length // procs, out[(s + 1) % 3]
                c.Bcast(np.array([1, i, n_in, n_out], dtype=np.int32), root=MPI.ROOT)
                c.Scatter(bufs[s][:procs * n_in], None, root=MPI.ROOT)
                c.Gather(None, bufs[(s + 1) % 3][:procs * n_out], root=MPI.ROOT)
                length = procs * n_out
            times.append(time.perf_counter() - t)

        checksum = float(np.cumsum(bufs[0][:length])[-1])  # left to right, like the project
        stop = np.zeros(4, dtype=np.int32)
        for c in inter:
            c.Bcast(stop, root=MPI.ROOT)
    except MPI.Exception as err:
        fatal(MPI.COMM_SELF, 'master protocol', err)
    for c in inter:
        c.Disconnect()
    MPI.Finalize()
    total_s = time.perf_counter() - t_total

    ordered = sorted(times)
    print(json.dumps({
        'impl': 'mpi4py', 'procs': procs, 'sizes': sizes, 'iterations': iters, 'checksum': checksum,
        'startS': start_s, 'firstIterS': times[0], 'lastIterS': times[-1],
        'meanIterS': sum(times) / iters, 'medianIterS': (ordered[(iters - 1) // 2] + ordered[iters // 2]) / 2,
        'minIterS': ordered[0], 'totalS': total_s,
    }, separators=(',', ':')), flush=True)


if __name__ == '__main__':
    if len(sys.argv) >= 2 and sys.argv[1] == '--worker':
        worker(sys.argv[2] if len(sys.argv) == 3 else None)
    else:
        master(*parse_args(sys.argv[1:]))  # arguments first: a usage error never starts MPI
