"""A commloop stage around one Python function, through the C SDK: no mpi4py.

The same stage as python/commloop_stage.py (`kind: "python"`, docs/PIPELINES.md): the same
command line, the same function contract, the same save/load hooks, the same failure reports:

    PYTHON commloop_stage_c.py MODULE FUNCTION STAGE_NAME
    PYTHON commloop_stage_c.py --check MODULE FUNCTION

    def transform(x, out, ctx): ...   # v1/v2: float64 NumPy arrays; v3: read-only mappings of
                                      # field name to NumPy view, ctx.input / ctx.output

(read commloop_stage.py for the whole contract; its contexts, dtypes, module loading and
wording are imported from it, so the two cannot drift apart). What differs is underneath: the
protocol is spoken by the C SDK, include/commloop_stage.h, built as a shared library
(python/commloop_stage_lib.c) and driven here with ctypes; the SDK calls back into Python once
before Ready (the module loads, the NumPy views are made) and once a step. So any MPI the
library was built for works, MPICH included, and the protocol's stage side has one
implementation. The library is, in this order:

    $COMMLOOP_STAGE_LIB                                  (a path)
    <commloop>/dist/libcommloop_stage.$COMMLOOP_MPI.so   (beside python/: the run's MPI, openmpi when unset)

built by the commands at the top of python/commloop_stage_lib.c. The x and out arrays are NumPy
views of the SDK's own buffers, made once (again only when a v1/v2 step's sizes change), so MPI
reads and writes what the function sees, as under mpi4py. The compute watch is the SDK's
thread (COMMLOOP_STEP_TIMEOUT_MS): it names the rank even when the function holds the GIL.

--check imports NumPy, loads the library (without starting MPI) and the module, and prints one
line saying what is wrong (exit 0: nothing): `missing numpy` or `lib PATH: ...` (exit 3),
`import ...` (4), `function` (5).
"""
import ctypes
import io
import os
import sys
import types

# The mpi4py runner's user-facing half (it imports mpi4py only in its own main), without
# leaving a __pycache__ in the installed python/ folder.
sys.dont_write_bytecode, _write = True, sys.dont_write_bytecode
import commloop_stage as base  # noqa: E402
sys.dont_write_bytecode = _write

LIB_ENV = 'COMMLOOP_STAGE_LIB'
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The run's MPI (COMMLOOP_MPI, which commloop sets for every process of a run; Open MPI when unset).
DEFAULT_LIB = os.path.join(ROOT, 'dist', f"libcommloop_stage.{os.environ.get('COMMLOOP_MPI') or 'openmpi'}.so")
BUILD_HINT = ('build it in the commloop checkout: mpicc.openmpi -O2 -ffp-contract=off -shared -fPIC -Iinclude '
              '-o dist/libcommloop_stage.openmpi.so python/commloop_stage_lib.c (or set COMMLOOP_STAGE_LIB)')

C = ctypes


class PyField(C.Structure):
    """struct commloop_py_field (python/commloop_stage_lib.c)."""
    _fields_ = [('name', C.c_char_p), ('dtype', C.c_char_p), ('offset', C.c_longlong), ('nbytes', C.c_longlong),
                ('count', C.c_longlong), ('ndim', C.c_int), ('shape', C.c_int * 4)]


START = C.CFUNCTYPE(C.c_int, C.c_int, C.c_int, C.c_int, C.c_int, C.c_void_p, C.c_void_p, C.POINTER(PyField), C.c_int, C.c_int)
STEP = C.CFUNCTYPE(C.c_int, C.c_void_p, C.c_longlong, C.c_void_p, C.c_longlong, C.c_int)
SAVE = C.CFUNCTYPE(C.c_int, C.POINTER(C.c_void_p), C.POINTER(C.c_longlong), C.POINTER(C.c_int), C.c_int)
LOAD = C.CFUNCTYPE(C.c_int, C.c_void_p, C.c_longlong, C.c_int, C.c_int)


def lib_path():
    return os.environ.get(LIB_ENV) or DEFAULT_LIB


def open_lib(path):
    """The library, global: Open MPI's components, which MPI_Init loads, look up libmpi's symbols there."""
    lib = C.CDLL(path, mode=C.RTLD_GLOBAL)
    lib.commloop_py_run.argtypes = [C.c_int, C.POINTER(C.c_char_p), START, STEP, SAVE, LOAD]
    lib.commloop_py_run.restype = C.c_int
    lib.commloop_py_failed.argtypes = [C.c_char_p]
    lib.commloop_py_failed.restype = None
    lib.commloop_py_mpi_library.argtypes = [C.c_char_p, C.c_int]
    lib.commloop_py_mpi_library.restype = C.c_int
    return lib


def check(path, name):
    """Exit 0 and print nothing when the stage can run; else one line, as commloop_stage.py --check."""
    try:
        import numpy  # noqa: F401
    except ImportError:
        print('missing numpy')
        return 3
    try:
        open_lib(lib_path())
    except OSError as err:
        print(f'lib {lib_path()}: {err}')
        return 3
    try:
        fn = base.load_function(path, name)
    except BaseException as err:
        print('import ' + base.last_line(err))
        return 4
    if fn is None:
        print('function')
        return 5
    return 0


def serve(lib, prog, module, fn_name):
    """Runs this rank to the end of the ring: the SDK's loop, with the callbacks below. Returns its code."""
    import numpy as np
    f64 = np.dtype('<f8')
    # What the callbacks share, set once by start; the v1/v2 views are remade when a size changes.
    fn = save_fn = load_fn = context = x_fields = out_fields = None
    rank = nranks = 0
    views = [None, 0, None, None, 0, None]  # in address, n_in, x, out address, n_out, out
    saved = [b'']  # the bytes the last save handed the SDK, alive until the next call

    def failed(err):
        """The failure report's reason, to the SDK (which prints it and aborts): 1 for the callback to return."""
        if os.environ.get('COMMLOOP_TRACEBACK'):
            import traceback
            traceback.print_exception(type(err), err, err.__traceback__, file=sys.stderr)
        sys.stderr.flush()
        sys.stdout.flush()
        lib.commloop_py_failed(base.last_line(err).encode('utf-8', 'backslashreplace'))
        return 1

    def block_views(address, fields):
        """Each field's typed, shaped view into the block at `address` (the SDK's buffer), by name."""
        store = (C.c_char * sum(f.nbytes for f in fields)).from_address(address)
        return types.MappingProxyType({
            f.name: np.frombuffer(store, dtype=f.dtype, count=int(np.prod(f.shape)), offset=f.offset).reshape(f.shape)
            for f in fields})

    def start(version, index, rank_, nranks_, in_at, out_at, table, n_in, n_out):
        nonlocal fn, save_fn, load_fn, context, x_fields, out_fields, rank, nranks
        try:
            rank, nranks = rank_, nranks_
            user = base.load_module(module)
            fn = base.callable_of(user, fn_name)
            if fn is None:
                raise base.ProtocolError(f'{module} has no function "{fn_name}"')
            save_fn, load_fn = base.callable_of(user, 'save'), base.callable_of(user, 'load')
            if not table:
                context = lambda i: base.StageContext(rank, nranks, i)
                return 0
            fields = [base.Field(t.name.decode('ascii'), np.dtype(base.DTYPES[t.dtype.decode('ascii')][1]),
                                 tuple(t.shape[:t.ndim]), t.offset, t.nbytes) for t in table[:n_in + n_out]]
            fields_in, fields_out = fields[:n_in], fields[n_in:]
            ctx_in = types.MappingProxyType({f.name: f for f in fields_in})
            ctx_out = types.MappingProxyType({f.name: f for f in fields_out})
            context = lambda i: base.FieldsContext(rank, nranks, i, ctx_in, ctx_out)
            x_fields, out_fields = block_views(in_at, fields_in), block_views(out_at, fields_out)
            return 0
        except BaseException as err:  # anything: returning normally would leave the hub waiting
            return failed(err)

    def step(in_at, n_in, out_at, n_out, iteration):
        try:
            if x_fields is not None:
                got = fn(x_fields, out_fields, context(iteration))
            else:
                if in_at != views[0] or n_in != views[1]:
                    views[0:3] = in_at, n_in, np.frombuffer((C.c_double * n_in).from_address(in_at), dtype=f64)
                if out_at != views[3] or n_out != views[4]:
                    views[3:6] = out_at, n_out, np.frombuffer((C.c_double * n_out).from_address(out_at), dtype=f64)
                got = fn(views[2], views[5], base.StageContext(rank, nranks, iteration))
            if got is not None:
                # `out = ...` or `return y` computes nothing the hub sees: say so instead of sending garbage.
                fill = "(out['name'][:] = ...)" if x_fields is not None else '(out[:] = ...)'
                raise TypeError(f'{fn_name} returned {type(got).__name__}; it must fill out in place {fill} and return None')
            return 0
        except BaseException as err:
            return failed(err)

    def save(data, nbytes, fmt, iteration):
        """Format 0 (None or no save), 1 (bytes-like) or 2 (a NumPy array, as a .npy file), as commloop_stage.py saves."""
        try:
            got = save_fn(context(iteration)) if save_fn is not None else None
            raw, kind = b'', base.FORMAT_NONE
            if isinstance(got, np.ndarray):
                buf = io.BytesIO()
                np.save(buf, got, allow_pickle=False)  # an object array raises: a checkpoint holds no pickles
                raw, kind = buf.getvalue(), base.FORMAT_NPY
            elif isinstance(got, (bytes, bytearray, memoryview)):
                raw, kind = got.tobytes() if isinstance(got, memoryview) else bytes(got), base.FORMAT_BYTES
            elif got is not None:
                raise TypeError(f'save returned {type(got).__name__}; it must return bytes, bytearray, memoryview, a NumPy array or None')
            if len(raw) > 0x7FFFFFFF:
                raise base.StateError(f'save gave {len(raw)} bytes; at most {0x7FFFFFFF} fit')
            saved[0] = raw
            data[0] = C.cast(C.c_char_p(raw), C.c_void_p).value
            nbytes[0], fmt[0] = len(raw), kind
            return 0
        except BaseException as err:
            return failed(err)

    def load(data, nbytes, fmt, iteration):
        try:
            if load_fn is None:  # resuming without the state the checkpoint holds would go on from the wrong numbers
                raise base.StateError(f'the checkpoint holds state for this rank ({nbytes} bytes) but the module defines no load(state, ctx)')
            raw = C.string_at(data, nbytes)
            load_fn(np.load(io.BytesIO(raw), allow_pickle=False) if fmt == base.FORMAT_NPY else raw, context(iteration))
            return 0
        except BaseException as err:
            return failed(err)

    # The CFUNCTYPE objects must outlive the run: these names hold them.
    hooks = START(start), STEP(step), SAVE(save), LOAD(load)
    argv = (C.c_char_p * 2)(prog.encode(), None)
    return lib.commloop_py_run(1, argv, *hooks)


def main(argv):
    if len(argv) == 3 and argv[0] == '--check':
        return check(os.path.abspath(argv[1]), argv[2])
    if len(argv) != 3:
        sys.stderr.write('usage: commloop_stage_c.py MODULE FUNCTION STAGE_NAME | commloop_stage_c.py --check MODULE FUNCTION\n')
        return 2
    module, fn_name, name = argv
    base.stdout_to_stderr()
    prog = f'commloop_stage_c.py ({name})'  # names the rank in a failure before the hello
    try:
        lib = open_lib(lib_path())
    except OSError as err:  # before MPI_Init: nothing to abort; the hub's deadline ends the run
        sys.stderr.write(f'{prog}: cannot load {lib_path()}: {err}; {BUILD_HINT}\n')
        return 1
    try:
        import numpy  # noqa: F401
    except ImportError as err:
        sys.stderr.write(f'{prog}: {base.last_line(err)}\n')
        return 1
    return serve(lib, prog, os.path.abspath(module), fn_name)


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
