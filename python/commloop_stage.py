"""A commloop stage around one Python function: `kind: "python"` in a pipeline (docs/PIPELINES.md).

The hub starts every rank as

    PYTHON commloop_stage.py MODULE FUNCTION STAGE_NAME

where MODULE is an absolute path to a .py file and FUNCTION a function in it:

    def transform(x, out, ctx): ...   # x: this rank's input, out: its output (NumPy float64, filled
                                      # in place), ctx: .rank, .nranks, .iteration

In a ring with fields (protocol version 3, docs/PROTOCOL.md "Version 3: fields"), x and out are
read-only mappings (types.MappingProxyType) of field name to NumPy array, in the field table's
order: each array has its field's dtype and per-rank shape and is a view into the buffer MPI
receives into or sends from (fill out's arrays in place: out["flux"][:] = ...; assigning
out["flux"] = ... raises TypeError). ctx then also has .input and .output (as a ts stage's ctx
does): read-only mappings, in the same order, of field name to Field(name, dtype, shape,
offset, nbytes), with dtype a NumPy dtype (equal to its name: ctx.input["flux"].dtype ==
"float32"), shape a tuple, and offset and nbytes the field's place in the rank's packed block
(nbytes with the padding to 8 bytes).

This file speaks docs/PROTOCOL.md in both launch modes (spawn: the parent intercommunicator;
MPMD: MPI_APPNUM split + Intercomm_create), with MPI reading and writing the NumPy arrays the
function sees, which are reused from step to step. When the function raises, it prints the
failure report `commloop-fail: <stage index> <rank> <ExceptionType>: <message>` to stderr and
aborts, so the hub notices at once.

A module whose function keeps state between iterations may also define, for checkpoints
(docs/PROTOCOL.md, section 5):

    def save(ctx): ...         # -> bytes, bytearray or memoryview (kept as raw bytes),
                               #    a NumPy array (kept as a .npy file: dtype and shape; no
                               #    object arrays), or None (nothing to keep for this rank)
    def load(state, ctx): ...  # state: what save returned, as bytes or as the NumPy array

save runs between two iterations, load once before the first iteration of a resumed run,
and only when save gave something for the rank; ctx.iteration is the next iteration to run.
A save or load that raises fails the run like a raising function. The runner ignores SIGUSR1
and SIGUSR2 (mpirun forwards them to every rank; a batch system's warning is the hub's).

    PYTHON commloop_stage.py --check MODULE FUNCTION

is what the hub runs before a run: it imports NumPy, mpi4py (without initialising MPI) and the
module, and prints one line saying what is wrong (exit 0: nothing).
"""
import collections
import importlib.util
import io
import os
import re
import signal
import socket
import sys
import time
import types

MAGIC, VERSION = 0x434C4F50, 3  # the highest protocol version spoken here; the hello picks
CMD_STOP, CMD_RUN, CMD_EPOCH, CMD_SAVE, CMD_LOAD = 0, 1, 2, 3, 4
FLAG_TIMES, FLAG_MERGED, CLOCK_ROUNDS, REC = 1, 2, 8, 5  # docs/PROTOCOL.md, section 4 and "MPMD"
FLAG_STATE, STATE_TAG = 4, 7  # docs/PROTOCOL.md, section 5: save and load commands; the bytes' tag
FORMAT_NONE, FORMAT_BYTES, FORMAT_NPY = 0, 1, 2

StageContext = collections.namedtuple('StageContext', 'rank nranks iteration')
# v3: the context also carries the field table (docs/PROTOCOL.md, "Version 3: fields").
FieldsContext = collections.namedtuple('FieldsContext', 'rank nranks iteration input output')
Field = collections.namedtuple('Field', 'name dtype shape offset nbytes')

# v3's dtypes: NumPy's names, their bytes, and the little-endian type NumPy reads them as.
DTYPES = {
    'float64': (8, '<f8'), 'float32': (4, '<f4'), 'int64': (8, '<i8'), 'int32': (4, '<i4'),
    'int16': (2, '<i2'), 'int8': (1, '|i1'), 'uint64': (8, '<u8'), 'uint32': (4, '<u4'),
    'uint16': (2, '<u2'), 'uint8': (1, '|u1'), 'complex128': (16, '<c16'), 'complex64': (8, '<c8'),
}
FIELD_NAME = re.compile(r'[A-Za-z_][A-Za-z0-9_]*')
FIELD_AXIS = re.compile(r'[1-9][0-9]*')


def load_module(path):
    """Imports the user's module from its file, its own directory first on sys.path (for its siblings)."""
    sys.path.insert(0, os.path.dirname(path))
    stem = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[stem] = module
    spec.loader.exec_module(module)
    return module


def callable_of(module, name):
    fn = getattr(module, name, None)
    return fn if callable(fn) else None


def load_function(path, name):
    return callable_of(load_module(path), name)


def last_line(err):
    """`Type: last line of the message`, as Python's own traceback ends (no colon for an empty message)."""
    lines = [ln for ln in str(err).splitlines() if ln.strip()]
    return type(err).__name__ + (': ' + lines[-1].strip() if lines else '')


def check(path, name):
    """Exit 0 and print nothing when the stage can run; else one line: `missing M...`, `import ...` or `function`."""
    missing = []
    for mod in ('mpi4py', 'numpy'):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        print('missing ' + ' '.join(missing))
        return 3
    import mpi4py
    # Importing mpi4py.MPI would otherwise start MPI here (an Open MPI singleton): the check
    # only needs the library to load, and the user's module may import it at top level.
    mpi4py.rc.initialize = False
    mpi4py.rc.finalize = False
    from mpi4py import MPI
    lib = MPI.Get_library_version()
    if 'Open MPI' not in lib:
        print('mpi ' + lib.strip().splitlines()[0])
        return 3
    try:
        fn = load_function(path, name)
    except BaseException as err:  # SyntaxError, ImportError, SystemExit: all mean "fails to import"
        print('import ' + last_line(err))
        return 4
    if fn is None:
        print('function')
        return 5
    return 0


def host_hash():
    """FNV-1a of the host name as a signed 32-bit int (docs/PROTOCOL.md, Ready)."""
    h = 2166136261
    for b in socket.gethostname().encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h - (1 << 32) if h >= (1 << 31) else h


class Stage:
    """One rank: the intercommunicator to the hub, and the failure report once the hello names the stage."""

    def __init__(self, MPI, name):
        self.MPI, self.name = MPI, name
        self.index = None  # the stage's index in the ring, from the hello
        self.rank = MPI.COMM_WORLD.Get_rank()
        self.local = None

    def fail(self, err):
        """Reports `err` (an exception) and aborts: the hub is blocked in a collective and must not wait."""
        if os.environ.get('COMMLOOP_TRACEBACK'):
            import traceback
            traceback.print_exception(type(err), err, err.__traceback__, file=sys.stderr)
        if self.index is None:  # before the hello nothing names the stage for the hub: a plain message
            sys.stderr.write(f'commloop_stage.py ({self.name}): {last_line(err)}\n')
        else:
            sys.stderr.write(f'commloop-fail: {self.index} {self.rank} {last_line(err)}\n')
        sys.stderr.flush()
        self.MPI.COMM_WORLD.Abort(1)

    def connect(self):
        MPI = self.MPI
        world = MPI.COMM_WORLD
        world.Set_errhandler(MPI.ERRORS_RETURN)
        inter = MPI.Comm.Get_parent()
        appnum = None
        if inter == MPI.COMM_NULL:  # MPMD: the hub is world rank 0; this stage's colour and tag are its app number
            appnum = world.Get_attr(MPI.APPNUM)
            if appnum is None or appnum < 1 or world.Get_size() < 2:
                raise ProtocolError('no master: start this from a commloop master (spawn) or as a stage of its MPMD mpirun')
            self.local = world.Split(appnum, world.Get_rank())
            inter = self.local.Create_intercomm(0, world, 0, appnum)
        inter.Set_errhandler(MPI.ERRORS_RETURN)
        self.inter = inter
        self.rank, self.nranks = inter.Get_rank(), inter.Get_size()
        return appnum


class ProtocolError(Exception):
    pass


class StateError(Exception):
    pass


def save_state(inter, MPI, np, save, ctx):
    """Save {3, iteration, 0, 0}: {format, nbytes} in a gather, then this rank's bytes to the hub (tag 7)."""
    data, fmt = b'', FORMAT_NONE
    got = save(ctx) if save is not None else None
    if isinstance(got, np.ndarray):
        buf = io.BytesIO()
        np.save(buf, got, allow_pickle=False)  # an object array raises: a checkpoint holds no pickles
        data, fmt = buf.getvalue(), FORMAT_NPY
    elif isinstance(got, (bytes, bytearray, memoryview)):
        # Format 1 even when empty: an empty state is loaded back, "nothing saved" (None) is not.
        data, fmt = got.tobytes() if isinstance(got, memoryview) else bytes(got), FORMAT_BYTES
    elif got is not None:
        raise TypeError(f'save returned {type(got).__name__}; it must return bytes, bytearray, memoryview, a NumPy array or None')
    if len(data) > 0x7FFFFFFF:  # one message carries it, and its count is an int
        raise StateError(f'save gave {len(data)} bytes; at most {0x7FFFFFFF} fit')
    inter.Gather([np.array([fmt, len(data)], dtype=np.int32), MPI.INT], None, root=0)
    if data:
        inter.Send([data, MPI.BYTE], dest=0, tag=STATE_TAG)


def load_state(inter, MPI, np, load, ctx):
    """Load {4, iteration, 0, 0}: {format, nbytes} scattered, the bytes (tag 7), load for format 1 or 2, then one int."""
    info = np.empty(2, dtype=np.int32)
    inter.Scatter(None, [info, MPI.INT], root=0)
    fmt, nbytes = info.tolist()
    if fmt not in (FORMAT_NONE, FORMAT_BYTES, FORMAT_NPY) or nbytes < 0 or (fmt == FORMAT_NONE and nbytes != 0):
        raise ProtocolError(f'bad state {{{fmt}, {nbytes}}} to load')
    data = bytearray(nbytes)
    if nbytes > 0:
        status = MPI.Status()
        inter.Recv([data, MPI.BYTE], source=0, tag=STATE_TAG, status=status)
        if status.Get_count(MPI.BYTE) != nbytes:  # more is MPI_ERR_TRUNCATE; fewer would load a torn state
            raise ProtocolError(f'load announced {nbytes} bytes of state, {status.Get_count(MPI.BYTE)} arrived')
    if fmt != FORMAT_NONE:
        if load is None:  # resuming without the state the checkpoint holds would go on from the wrong numbers
            raise StateError(f'the checkpoint holds state for this rank ({nbytes} bytes) but the module defines no load(state, ctx)')
        load(np.load(io.BytesIO(data), allow_pickle=False) if fmt == FORMAT_NPY else bytes(data), ctx)
    inter.Gather([np.zeros(1, dtype=np.int32), MPI.INT], None, root=0)


def parse_field_table(raw, n_in, n_out):
    """The v3 field table (B bytes of ASCII, one `in|out NAME DTYPE SHAPE` line per field), checked.

    Returns (fields_in, fields_out), tuples of Field in table order, with each field's byte offset in the rank's
    packed block (fields in order, each padded to a multiple of 8 bytes); raises ProtocolError,
    naming the field, when a line is malformed or the blocks are not n_in and n_out words."""
    import numpy as np
    try:
        text = bytes(raw).decode('ascii')
    except UnicodeDecodeError:
        raise ProtocolError('field table: not ASCII') from None
    if not text:
        raise ProtocolError('field table: empty (B is 0): a stage has at least one in and one out field')
    if not text.endswith('\n'):
        raise ProtocolError(f'field table: {text[-40:]!r} does not end in a newline')
    sides = {'in': [], 'out': []}
    for line in text[:-1].split('\n'):
        parts = line.split(' ')
        if len(parts) != 4 or parts[0] not in sides:
            raise ProtocolError(f'field table: line {line!r} is not "in|out NAME DTYPE SHAPE"')
        side, name, dtype, shape = parts
        where = f'field "{name}" ({side})'
        if not FIELD_NAME.fullmatch(name):
            raise ProtocolError(f'field table: {where}: the name is not an identifier')
        if side == 'in' and sides['out']:
            raise ProtocolError(f'field table: {where} comes after an out field (all in lines come first)')
        if any(f.name == name for f in sides[side]):
            raise ProtocolError(f'field table: {where} is named twice')
        if dtype not in DTYPES:
            raise ProtocolError(f'field table: {where}: dtype "{dtype}" is not one of {", ".join(DTYPES)}')
        axes = shape.split('x')
        if not 1 <= len(axes) <= 4 or not all(FIELD_AXIS.fullmatch(a) for a in axes):
            raise ProtocolError(f'field table: {where}: shape "{shape}" is not 1 to 4 positive integers joined by "x"')
        shape = tuple(int(a) for a in axes)
        count = 1
        for a in shape:
            count *= a
        nbytes = -(-count * DTYPES[dtype][0] // 8) * 8
        at = sum(f.nbytes for f in sides[side])
        sides[side].append(Field(name, np.dtype(DTYPES[dtype][1]), shape, at, nbytes))
    for side, words in (('in', n_in), ('out', n_out)):
        fields = sides[side]
        total = sum(f.nbytes for f in fields)
        if total != words * 8:
            listed = ', '.join(f'"{f.name}" ({f.dtype.name} {"x".join(map(str, f.shape))}, {f.nbytes} bytes)' for f in fields) or 'none'
            raise ProtocolError(f'field table: the {side} fields pack to {total} bytes a rank, '
                                f'but n_{side} is {words} words ({words * 8} bytes): {listed}')
    return tuple(sides['in']), tuple(sides['out'])


def field_views(np, store, fields):
    """A read-only mapping of each field's name to its typed, shaped view into `store` (no copy)."""
    return types.MappingProxyType({
        f.name: np.frombuffer(store, dtype=f.dtype, count=int(np.prod(f.shape)), offset=f.offset).reshape(f.shape)
        for f in fields})


def serve(stage, module, fn_name):
    import numpy as np
    MPI = stage.MPI
    appnum = stage.connect()
    inter, rank, nranks = stage.inter, stage.rank, stage.nranks
    INT, DOUBLE = MPI.INT, MPI.DOUBLE

    hello = np.empty(4, dtype=np.int32)
    inter.Bcast([hello, INT], root=0)
    if hello[0] != MAGIC or not 1 <= hello[1] <= VERSION:
        raise ProtocolError(f'bad hello (magic {int(hello[0]) & 0xFFFFFFFF:#x}, version {hello[1]}; want {MAGIC:#x}, 1 to {VERSION})')
    version = int(hello[1])
    stage.index = int(hello[2])
    # mpirun forwards SIGUSR1 and SIGUSR2 to every rank; their default action would end it, and
    # a batch system's warning signal is the hub's to act on (it checkpoints and stops).
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    # v2: every step's sizes, once: iteration i takes table[i % P], iteration 0's n_in is `first`.
    table, first, flags = [], 0, 0
    fields_in = fields_out = None  # v3: the field table
    merged = None  # with FLAG_MERGED: the intracommunicator the steps run on
    ring = None  # with FLAG_TIMES: the newest `cap` step records of iterations 0, every, 2*every...
    if version >= 2:
        sizes = np.empty(3, dtype=np.int32)
        inter.Bcast([sizes, INT], root=0)
        if int(sizes[2]) & ~(FLAG_TIMES | FLAG_MERGED | FLAG_STATE):  # flags: an unknown one must not be ignored
            raise ProtocolError(f'step table flags {int(sizes[2])} are not known here')
        first, flags = int(sizes[1]), int(sizes[2])
        t = np.empty(2 * int(sizes[0]), dtype=np.int32)
        inter.Bcast([t, INT], root=0)
        table = [(int(t[2 * e]), int(t[2 * e + 1])) for e in range(int(sizes[0]))]
        if version == 3:  # the field table: B, then B chars of `in|out NAME DTYPE SHAPE` lines
            nbytes = np.empty(1, dtype=np.int32)
            inter.Bcast([nbytes, INT], root=0)
            if int(nbytes[0]) < 0:
                raise ProtocolError(f'field table of {int(nbytes[0])} bytes')
            raw = bytearray(int(nbytes[0]))
            inter.Bcast([raw, MPI.BYTE], root=0)
            # One layout for the whole run: every step's sizes (and iteration 0's input) are its blocks.
            if len(set(table)) != 1 or first != table[0][0]:
                raise ProtocolError(f'step table {t.tolist()} (first {first}) under protocol 3: the field table needs one n_in and one n_out')
            fields_in, fields_out = parse_field_table(raw, *table[0])
        if int(sizes[2]) & FLAG_TIMES:
            spec = np.empty(2, dtype=np.int32)
            inter.Bcast([spec, INT], root=0)
            every, cap = int(spec[0]), int(spec[1])
            ring = np.zeros((cap, REC))
        if int(sizes[2]) & FLAG_MERGED:  # MPMD: steps on the intercommunicator merged with the hub (rank 0)
            merged = inter.Merge(high=True)
            merged.Set_errhandler(MPI.ERRORS_RETURN)
    if hello[3] != nranks or (appnum is not None and appnum - 1 != stage.index):
        raise ProtocolError(f'hello says stage {hello[2]} of {hello[3]} ranks; this is {nranks} ranks' +
                            ('' if appnum is None else f', app number {appnum}'))
    # Load before saying ready, so start-up time counts it and a bad module fails early.
    user = load_module(module)
    fn = callable_of(user, fn_name)
    if fn is None:
        raise ProtocolError(f'{module} has no function "{fn_name}"')
    save, load = callable_of(user, 'save'), callable_of(user, 'load')
    if fields_in is None:
        context = lambda i: StageContext(rank, nranks, i)
    else:
        ctx_in = types.MappingProxyType({f.name: f for f in fields_in})
        ctx_out = types.MappingProxyType({f.name: f for f in fields_out})
        context = lambda i: FieldsContext(rank, nranks, i, ctx_in, ctx_out)
    inter.Gather([np.array([os.getpid(), host_hash()], dtype=np.int32), INT], None, root=0)
    now_us = lambda: time.monotonic_ns() / 1e3  # CLOCK_MONOTONIC, as every stage process on the host reads it
    if ring is not None:
        token = np.zeros(1)
        for _ in range(CLOCK_ROUNDS):  # the hub's clock rounds: this clock when each broadcast arrives
            inter.Bcast([token, DOUBLE], root=0)
            inter.Gather([np.array([now_us()]), DOUBLE], None, root=0)

    # Grow-only backing stores; x and out are views that change only when a size does.
    x_store, out_store = np.empty(0), np.empty(0)
    x, out = x_store, out_store
    if fields_in is not None:  # v3: one size for the run; the function gets the fields' views
        x, out = np.zeros(table[0][0]), np.zeros(table[0][1])  # zeros: padding goes out as 0
        x_fields, out_fields = field_views(np, x, fields_in), field_views(np, out, fields_out)
    head = np.empty(4, dtype=np.int32)
    head_buf = [head, INT]
    def step_list():
        """(iteration, n_in, n_out) of every step until the stop: one per v1 header, an epoch's per v2 header.

        With FLAG_STATE, a save or load between epochs runs here, after the last step's gather."""
        started = loaded = False
        while True:
            inter.Bcast(head_buf, root=0)
            command, iteration, a, b = head.tolist()
            if command == CMD_STOP:
                return
            if flags & FLAG_STATE and command == CMD_SAVE and iteration >= 0:
                save_state(inter, MPI, np, save, context(iteration))
                continue
            if flags & FLAG_STATE and command == CMD_LOAD and iteration >= 0 and not loaded and not started:
                load_state(inter, MPI, np, load, context(iteration))
                loaded = True
                continue
            started = True
            if version == 1 and command == CMD_RUN and a >= 1 and b >= 1:
                yield iteration, a, b
            elif version >= 2 and command == CMD_EPOCH and iteration >= 0 and a >= 1:
                for i in range(iteration, iteration + a):
                    n_in, n_out = table[i % len(table)]
                    yield i, first if i == 0 else n_in, n_out
            else:
                raise ProtocolError(f'bad header {head.tolist()} for protocol {version}')

    # The compute watch: with COMMLOOP_STEP_TIMEOUT_MS (the master sets it), a thread names
    # this rank when its function runs that long; the hub's deadline, 400 ms later, could
    # name only the stage. A Python loop lets the thread run (the GIL is released every 5 ms).
    computing = [0, 0]  # iteration + 1 while fn runs, else 0; and a count of calls
    limit_ms = int(os.environ.get('COMMLOOP_STEP_TIMEOUT_MS', '0') or 0)
    if limit_ms >= 1:
        import threading

        def watch():
            seen, since = (0, 0), time.monotonic()
            while True:
                time.sleep(0.01)
                now = (computing[0], computing[1])
                if now != seen or now[0] == 0:
                    seen, since = now, time.monotonic()
                    continue
                if (time.monotonic() - since) * 1000 >= limit_ms:
                    sys.stderr.write(f'commloop-fail: {stage.index} {rank} did not return from its function within {limit_ms} ms (iteration {now[0] - 1})\n')
                    sys.stderr.flush()
                    os._exit(1)

        threading.Thread(target=watch, daemon=True).start()

    steps = 0
    for iteration, n_in, n_out in step_list():
        if len(x) != n_in:
            if len(x_store) < n_in:
                x_store = np.empty(n_in)
            x = x_store[:n_in]
        if len(out) != n_out:
            if len(out_store) < n_out:
                out_store = np.empty(n_out)
            out = out_store[:n_out]
        rec = ring[(iteration // every) % cap] if ring is not None and iteration % every == 0 else None
        if rec is not None:
            rec[1] = now_us()
        if merged is not None:
            merged.Scatterv(None, [x, DOUBLE], root=0)
        else:
            inter.Scatter(None, [x, DOUBLE], root=0)
        if rec is not None:
            rec[2] = now_us()
        computing[0], computing[1] = iteration + 1, computing[1] + 1
        got = fn(x, out, context(iteration)) if fields_in is None else fn(x_fields, out_fields, context(iteration))
        computing[0] = 0
        if got is not None:
            # `out = ...` or `return y` computes nothing the hub sees: say so instead of sending garbage.
            fill = '(out[:] = ...)' if fields_in is None else "(out['name'][:] = ...)"
            raise TypeError(f'{fn_name} returned {type(got).__name__}; it must fill out in place {fill} and return None')
        if rec is not None:
            rec[3] = now_us()
        if merged is not None:
            merged.Gatherv([out, DOUBLE], None, root=0)
        else:
            inter.Gather([out, DOUBLE], None, root=0)
        if rec is not None:
            rec[4], rec[0] = now_us(), iteration
        steps += 1
    if ring is not None:
        # After the stop: the kept records, oldest first, in one gather (every rank holds as many).
        taken = -(-steps // every)
        kept = min(taken, cap)
        send = np.ascontiguousarray(ring[[(taken - kept + j) % cap for j in range(kept)]]).reshape(-1)
        inter.Gather([send, DOUBLE], None, root=0)
    if merged is not None:
        merged.Free()
    inter.Disconnect()
    if stage.local is not None:
        stage.local.Free()


def stdout_to_stderr():
    """The hub's stdout carries the result: what the function prints goes to stderr, a line at a
    time. One write per line, even under PYTHONUNBUFFERED (which makes print write the text and
    its newline apart): every rank of every stage shares the hub's stderr."""
    os.dup2(2, 1)
    sys.stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, 'w', closefd=False)), line_buffering=True)


def main(argv):
    if len(argv) == 3 and argv[0] == '--check':
        return check(os.path.abspath(argv[1]), argv[2])
    if len(argv) != 3:
        sys.stderr.write('usage: commloop_stage.py MODULE FUNCTION STAGE_NAME | commloop_stage.py --check MODULE FUNCTION\n')
        return 2
    module, fn_name, name = argv
    stdout_to_stderr()
    import mpi4py
    # The function gets no communicator, so no thread of it calls MPI: the cheaper single level.
    mpi4py.rc.thread_level = 'single'
    from mpi4py import MPI  # MPI_Init
    stage = Stage(MPI, name)
    try:
        serve(stage, os.path.abspath(module), fn_name)
    except BaseException as err:  # anything: exiting normally would leave the hub waiting
        stage.fail(err)
    MPI.Finalize()
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
