/*
 * commloop_stage_lib.c: the C SDK (include/commloop_stage.h) as a shared library, for
 * python/commloop_stage_c.py, which drives it with ctypes: the SDK speaks docs/PROTOCOL.md
 * (every version, both launch modes, step times, state, the compute watch, failure reports)
 * and calls back into Python for the module's code, so the protocol's stage side has one
 * implementation and Python needs no MPI binding. One build per MPI, by hand for now:
 *
 *   mpicc.openmpi -O2 -ffp-contract=off -shared -fPIC -Iinclude -o dist/libcommloop_stage.openmpi.so python/commloop_stage_lib.c
 *   mpicc.mpich -O2 -ffp-contract=off -shared -fPIC -Iinclude -o dist/libcommloop_stage.mpich.so python/commloop_stage_lib.c
 *
 * The exported API (everything else is static):
 *
 *   int commloop_py_run(int argc, char **argv, commloop_py_start *start, commloop_py_step *step,
 *                       commloop_py_save *save, commloop_py_load *load);
 *       runs one stage rank to the end (MPI_Init to MPI_Finalize); returns 0. argv[0] names the
 *       rank in a failure before the hello. save and load may be NULL.
 *   void commloop_py_failed(const char *reason);
 *       what a callback calls before it returns non-zero: the report's `Type: message` (or
 *       `Type`), copied; the SDK prints `commloop-fail: <index> <rank> <reason>` and aborts.
 *   int commloop_py_mpi_library(char *buf, int cap);
 *       MPI_Get_library_version into buf (callable without MPI_Init); returns its length.
 *
 * The callbacks return 0, or non-zero after commloop_py_failed:
 *
 *   start(version, index, rank, nranks, in, out, fields, n_in, n_out): once before Ready; in a
 *       ring of fields (version 3) fields[0..n_in) describe the in block at `in` and
 *       fields[n_in..n_in+n_out) the out block at `out`, both fixed for the run; else fields
 *       is NULL, n_in and n_out 0, in and out NULL.
 *   step(in, n_in, out, n_out, iteration): every step; n_in and n_out are 8-byte words. Before
 *       version 3 the buffers may move when the sizes change.
 *   save(&data, &len, &format, iteration): format 0 (nothing), 1 (bytes) or 2 (.npy bytes); data
 *       must stay valid until the callback is next called.
 *   load(data, len, format, iteration): format 1 or 2.
 */
#include "commloop_stage.h"

/* One field of the v3 table, flat for ctypes. */
struct commloop_py_field {
    const char *name;   /* NUL-terminated */
    const char *dtype;  /* NumPy's name: "float64", "int32", ... */
    long long offset;   /* bytes from its block's start */
    long long nbytes;   /* its bytes padded to a multiple of 8 */
    long long count;    /* elements: the product of shape */
    int ndim;
    int shape[4];
};

typedef int commloop_py_start(int version, int index, int rank, int nranks, void *in, void *out,
                              const struct commloop_py_field *fields, int n_in, int n_out);
typedef int commloop_py_step(double *in, long long n_in, double *out, long long n_out, int iteration);
typedef int commloop_py_save(const void **data, long long *len, int *format, int iteration);
typedef int commloop_py_load(const void *data, long long len, int format, int iteration);

struct commloop_py {
    commloop_py_start *start;
    commloop_py_step *step;
    commloop_py_save *save;
    commloop_py_load *load;
    struct commloop_py_field *fields;
};

static char *commloop_py_reason;

__attribute__((visibility("default"))) void commloop_py_failed(const char *reason) {
    free(commloop_py_reason);
    commloop_py_reason = reason ? strdup(reason) : NULL;
}

static const char *commloop_py_reason_of(void *user) {
    (void)user;
    return commloop_py_reason;
}

static int commloop_py_start_hook(int version, int index, int rank, int nranks, const commloop_field *f, const size_t *offset, int n_in, int n_out, void *user) {
    struct commloop_py *py = (struct commloop_py *)user;
    void *in = NULL, *out = NULL;
    if (f) {
        py->fields = (struct commloop_py_field *)calloc((size_t)(n_in + n_out), sizeof *py->fields);
        if (!py->fields) {
            commloop_py_failed("MemoryError: out of memory for the field table");
            return 1;
        }
        for (int i = 0; i < n_in + n_out; i++) {
            struct commloop_py_field *p = &py->fields[i];
            p->name = f[i].name;
            p->dtype = commloop_dtype_names[f[i].dtype];
            p->offset = (long long)offset[i];
            p->count = (long long)f[i].count;
            p->nbytes = (long long)((f[i].count * commloop_dtype_bytes[f[i].dtype] + 7) / 8 * 8);
            p->ndim = f[i].ndim;
            memcpy(p->shape, f[i].shape, sizeof p->shape);
        }
        /* Each field's data is its block's start plus its offset. */
        if (n_in > 0) in = (char *)f[0].data - offset[0];
        if (n_out > 0) out = (char *)f[n_in].data - offset[n_in];
    }
    return py->start ? py->start(version, index, rank, nranks, in, out, py->fields, n_in, n_out) : 0;
}

static int commloop_py_step_hook(double *in, size_t n_in, double *out, size_t n_out, int iteration, void *user) {
    return ((struct commloop_py *)user)->step(in, (long long)n_in, out, (long long)n_out, iteration);
}

static int commloop_py_save_hook(const void **data, size_t *len, int *format, int iteration, void *user) {
    long long n = 0;
    int rc = ((struct commloop_py *)user)->save(data, &n, format, iteration);
    if (rc == 0 && n < 0) {
        commloop_py_failed("StateError: save gave a negative length");
        return 1;
    }
    *len = (size_t)n;
    return rc;
}

static int commloop_py_load_hook(const void *data, size_t len, int format, int iteration, void *user) {
    return ((struct commloop_py *)user)->load(data, (long long)len, format, iteration);
}

__attribute__((visibility("default"))) int commloop_py_run(int argc, char **argv, commloop_py_start *start, commloop_py_step *step, commloop_py_save *save, commloop_py_load *load) {
    struct commloop_py py = {start, step, save, load, NULL};
    struct commloop_hooks hooks = {
        commloop_py_start_hook, step ? commloop_py_step_hook : NULL, save ? commloop_py_save_hook : NULL,
        load ? commloop_py_load_hook : NULL, commloop_py_reason_of, "function", &py,
    };
    int rc = commloop_stage_run_hooks(argc, argv, &hooks);
    free(py.fields);
    return rc;
}

__attribute__((visibility("default"))) int commloop_py_mpi_library(char *buf, int cap) {
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    if (MPI_Get_library_version(version, &len) != MPI_SUCCESS || cap < 1) return 0;
    if (len >= cap) len = cap - 1;
    memcpy(buf, version, (size_t)len);
    buf[len] = 0;
    return len;
}
