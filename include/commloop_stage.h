/*
 * commloop_stage.h: a commloop stage in C is one kernel function and
 *
 *     #include <commloop_stage.h>
 *     static void my_kernel(const double *in, size_t n_in, double *out, size_t n_out,
 *                           int rank, int nranks, int iteration) { ... }
 *     int main(int argc, char **argv) { return commloop_stage_run(argc, argv, my_kernel); }
 *
 *     mpicc -O3 -ffp-contract=off my_stage.c -I<commloop>/include -o my_stage
 *
 * and a pipeline's `{ "kind": "exec", "command": ["./my_stage"] }`. The kernel has the
 * signature of a `c` stage's (commloop_kernel_fn, as in wasm/commloop_kernel.h), so one
 * function serves as both. commloop_stage_run speaks the whole of docs/PROTOCOL.md, in
 * spawn and in MPMD mode; on an error it detects after the hello it prints the failure
 * report `commloop-fail: <stage index> <rank> <Type>: <message>` and calls MPI_Abort.
 *
 * A kernel that keeps state between iterations (a pipeline entry with `"state": true`) gives
 * the run's checkpoints that state as bytes, and gets it back when a run resumes
 * (docs/PROTOCOL.md, section 5):
 *
 *     static double acc[4];
 *     static int save(const void **data, size_t *len, int rank, int nranks, int iteration, void *user) {
 *         *data = acc; *len = sizeof acc; return 0;
 *     }
 *     static int load(const void *data, size_t len, int rank, int nranks, int iteration, void *user) {
 *         if (len != sizeof acc) return 1;
 *         memcpy(acc, data, len); return 0;
 *     }
 *     static const struct commloop_state state = {save, load, NULL};
 *     int main(int argc, char **argv) { return commloop_stage_run_with_state(argc, argv, my_kernel, &state); }
 *
 * save runs at a checkpoint, between two iterations (`iteration` is the next one to run);
 * load runs once, before the first iteration of a resumed run, with the bytes save gave at
 * the same rank. A callback that returns non-zero fails the run (`StateError: save returned 3`).
 * commloop_stage_run(argc, argv, fn) is the same with no state (NULL): it saves nothing.
 * Stage processes ignore SIGUSR1 and SIGUSR2 from the hello on: mpirun forwards them to every
 * rank, and a batch system's warning signal is the master's to handle.
 *
 * A stage whose pipeline entry declares "fields" (several named, typed, shaped arrays per
 * rank) gets them as descriptors instead (commloop_fields_fn; protocol version 3, so an exec
 * stage's entry also says "protocol": 3). Find a field by name and dtype; `count` is its
 * elements per rank (the product of `shape`), and a complex element is a (real, imag) pair:
 *
 *     static void step(const commloop_field *in, int n_in, const commloop_field *out, int n_out,
 *                      int rank, int nranks, int iteration) {
 *         const float *t = commloop_field_data(in, n_in, "temperature", COMMLOOP_FLOAT32);
 *         int32_t *hot = commloop_field_data(out, n_out, "hot", COMMLOOP_INT32);
 *         for (size_t j = 0; j < out[0].count; j++) hot[j] = t[j] > 300.0f;
 *     }
 *     int main(int argc, char **argv) { return commloop_stage_run_fields(argc, argv, step); }
 *
 * with `"fields": {"hot": {"dtype": "int32", "shape": [N]}}` and a previous stage giving
 * "temperature" as float32 of the same shape. The stage checks the hub's field table (names,
 * dtypes, shapes, and that they fill the step table's sizes) and fails naming the field when
 * it does not fit; commloop_stage_run_fields_with_state takes a struct commloop_state as
 * above. A classic kernel (commloop_stage_run) also runs in a fields ring when its input and
 * its output are each one float64 field; a fields kernel refuses a hub of version 1 or 2.
 *
 * A runner of another language's stage code gives struct commloop_hooks instead of a kernel
 * (commloop_stage_run_hooks): its step gets the raw buffers, its start the field table, and
 * its failures are worded by its own language (python/commloop_stage_lib.c does this for
 * python/commloop_stage_c.py).
 *
 * Header-only: every function is static, so there is no library to build or link.
 */
#ifndef COMMLOOP_STAGE_H
#define COMMLOOP_STAGE_H

#include <limits.h>
#include <mpi.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#ifndef __cplusplus
/* POSIX; declared again so that -std=c99 (which hides them in unistd.h and time.h) compiles too. */
int gethostname(char *name, size_t len);
int nanosleep(const struct timespec *req, struct timespec *rem);
#endif

/* The same type as in wasm/commloop_kernel.h; C11 allows the identical typedef twice, and
 * the project's own worker includes both, so the two cannot drift apart. */
typedef void commloop_kernel_fn(const double *in, size_t n_in, double *out, size_t n_out,
                                int rank, int nranks, int iteration);

/* Fields (issue 27): the descriptor of a stage of fields and its kernel type, shared with
 * wasm/commloop_kernel.h. */
#include "commloop_fields.h"

#define COMMLOOP_MAGIC 0x434C4F50
/* The highest protocol version spoken here; the hub's hello says which one this run uses.
 * Version 3 is version 2 with a field table after the step table (fields rings). */
#define COMMLOOP_VERSION 3
/* v2 step-table flag: keep step times, ship them after the stop (docs/PROTOCOL.md, "Step times"). */
#define COMMLOOP_FLAG_TIMES 1
/* v2 step-table flag, MPMD only: the steps run on the intercommunicator merged with the hub
 * (MPI_Intercomm_merge, the hub rank 0) with MPI_Scatterv/MPI_Gatherv. */
#define COMMLOOP_FLAG_MERGED 2
/* v2 step-table flag: the hub may send the save and load commands below (docs/PROTOCOL.md, section 5). */
#define COMMLOOP_FLAG_STATE 4
#define COMMLOOP_CMD_SAVE 3
#define COMMLOOP_CMD_LOAD 4
/* The tag of a state's bytes; every other message is a collective. */
#define COMMLOOP_STATE_TAG 7
#define COMMLOOP_CLOCK_ROUNDS 8
/* Doubles per step record: iteration, scatter start, scatter end, compute end, gather end. */
#define COMMLOOP_REC 5

/* A stage's state callbacks, for commloop_stage_run_with_state; either may be NULL. */
struct commloop_state {
    /* At a checkpoint: point *data / *len at this rank's state (kept valid until the SDK's next call into you); return 0, or non-zero to fail the run. */
    int (*save)(const void **data, size_t *len, int rank, int nranks, int iteration, void *user);
    /* Once before the first resumed iteration, with what save gave; return 0, or non-zero to fail the run. */
    int (*load)(const void *data, size_t len, int rank, int nranks, int iteration, void *user);
    void *user;
};

/* A runner of another language's stage code, in place of a kernel (python/commloop_stage_lib.c):
 * the SDK speaks the protocol, the hooks run the code. A hook returns 0, or non-zero for a
 * failure that reason() words whole (`Type: message`, or `Type` alone), as the report prints it. */
struct commloop_hooks {
    /* Once before Ready, after the hello, the tables and the merge: version is the hello's;
     * v3: fields[0..n_in) are the in fields and fields[n_in..n_in+n_out) the out fields, with
     * offset[i] each one's byte offset in its block and data into the buffers every step uses;
     * before v3 fields and offset are NULL, n_in and n_out 0. */
    int (*start)(int version, int index, int rank, int nranks, const commloop_field *fields, const size_t *offset, int n_in, int n_out, void *user);
    /* Every step, in place of the kernel: the rank's buffers, n_in and n_out in 8-byte words
     * (v1 and v2 may move the buffers when the sizes change; v3 never does). */
    int (*step)(double *in, size_t n_in, double *out, size_t n_out, int iteration, void *user);
    /* At a save: *format 0 (nothing to keep), 1 (bytes) or 2 (a .npy file's bytes), with
     * *data and *len as struct commloop_state's save; NULL: format 0 from every rank. */
    int (*save)(const void **data, size_t *len, int *format, int iteration, void *user);
    /* At a load of format 1 or 2; NULL fails such a load as a stage without a load callback. */
    int (*load)(const void *data, size_t len, int format, int iteration, void *user);
    /* After a hook returned non-zero: the reason the failure report prints after index and rank. */
    const char *(*reason)(void *user);
    /* What the compute watch says the rank did not return from ("function"); NULL: "kernel". */
    const char *watching;
    void *user;
};

/* One rank's view of its stage. index is -1 until the hello names it. */
struct commloop_stage {
    MPI_Comm inter, local;
    int index, rank, nranks;
    const char *prog;
};

/* Waits, up to `ms`, until the reader of stderr (the MPI launcher's forwarding) has taken what
 * is in the pipe: MPI_Abort makes MPICH's Hydra tear the job down, and its proxy may do that
 * before it forwards a failure report still in the pipe (seen once in a test run: the report
 * lost, the run ending "mpiexec exited with code 1"). No wait where stderr is not a pipe. */
static inline void commloop_stderr_drain(int ms) {
    for (int waited = 0; waited < ms; waited++) {
        int pending = 0;
        if (ioctl(2, FIONREAD, &pending) != 0 || pending <= 0) return;
        struct timespec ms1 = {0, 1000000};
        nanosleep(&ms1, NULL);
    }
}

/* Reports a failure and aborts: the hub is blocked in a collective and must not wait. Once
 * the hello has named the stage, the line is the failure report of docs/PROTOCOL.md. */
static inline void commloop_stage_fail(const struct commloop_stage *s, const char *type, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (s->index >= 0) fprintf(stderr, "commloop-fail: %d %d %s: %s\n", s->index, s->rank, type, msg);
    else fprintf(stderr, "%s: %s: %s\n", s->prog, type, msg);
    fflush(stderr);
    commloop_stderr_drain(500);
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}

/* The same with the reason worded whole by a runner's hook (`Type: message` or `Type`). */
static inline void commloop_stage_fail_as(const struct commloop_stage *s, const char *reason) {
    if (s->index >= 0) fprintf(stderr, "commloop-fail: %d %d %s\n", s->index, s->rank, reason);
    else fprintf(stderr, "%s: %s\n", s->prog, reason);
    fflush(stderr);
    commloop_stderr_drain(500);
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}

static inline void commloop_hooks_fail(const struct commloop_stage *s, const struct commloop_hooks *hooks) {
    const char *reason = hooks->reason ? hooks->reason(hooks->user) : NULL;
    commloop_stage_fail_as(s, reason && *reason ? reason : "Error: a hook failed and gave no reason");
}

/* A kernel that crashes (SIGSEGV, SIGBUS, SIGFPE, SIGILL, or SIGABRT from abort()) is named
 * by the stage itself: one failure report, written with write(2) alone, then the signal's
 * default action, so the rank still ends by that signal. Open MPI's own handler would print
 * a stack and exit with a code instead, and the hub would see only a rank that died. */
static int commloop_crash_index = -1, commloop_crash_rank = -1;

static inline void commloop_crash_put(char *line, size_t *n, size_t cap, const char *text) {
    while (*text && *n < cap - 1) line[(*n)++] = *text++;
}

static inline void commloop_crash_int(char *line, size_t *n, size_t cap, int v) {
    char digits[12];
    int d = 0;
    unsigned u = v < 0 ? 0u : (unsigned)v;
    do digits[d++] = (char)('0' + u % 10); while ((u /= 10) > 0 && d < 11);
    while (d > 0 && *n < cap - 1) line[(*n)++] = digits[--d];
}

static inline void commloop_on_crash(int sig) {
    const char *name = sig == SIGSEGV ? "SIGSEGV" : sig == SIGBUS ? "SIGBUS" : sig == SIGFPE ? "SIGFPE" : sig == SIGILL ? "SIGILL" : "SIGABRT";
    char line[96];
    size_t n = 0;
    commloop_crash_put(line, &n, sizeof line, "commloop-fail: ");
    commloop_crash_int(line, &n, sizeof line, commloop_crash_index);
    commloop_crash_put(line, &n, sizeof line, " ");
    commloop_crash_int(line, &n, sizeof line, commloop_crash_rank);
    commloop_crash_put(line, &n, sizeof line, " crashed (");
    commloop_crash_put(line, &n, sizeof line, name);
    commloop_crash_put(line, &n, sizeof line, ")\n");
    ssize_t ignored = write(2, line, n);
    (void)ignored;
    signal(sig, SIG_DFL);
    raise(sig);
}

static inline void commloop_name_crashes(int index, int rank) {
    static const int fatal[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
    commloop_crash_index = index;
    commloop_crash_rank = rank;
    for (size_t k = 0; k < sizeof fatal / sizeof fatal[0]; k++) signal(fatal[k], commloop_on_crash);
}

/* Every MPI call goes through here: the communicators return errors instead of aborting. */
static inline void commloop_stage_check(const struct commloop_stage *s, int rc, const char *what) {
    if (rc == MPI_SUCCESS) return;
    char err[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, err, &len);
    commloop_stage_fail(s, "MPIError", "%s failed: %s", what, err);
}

/* FNV-1a of the host name, as a signed 32-bit int (docs/PROTOCOL.md, Ready). */
static inline int32_t commloop_host_hash(void) {
    char name[256] = {0};
    gethostname(name, sizeof name - 1);
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 16777619u;
    return (int32_t)h;
}

/* CLOCK_MONOTONIC in µs: the clock every stage process on a host shares (docs/PROTOCOL.md, "Step times"). */
#ifdef CLOCK_MONOTONIC
static inline double commloop_now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec * 1e-3;
}
#else
/* -std=c99 hides POSIX clocks in time.h; Linux's clock_gettime, with its layout (clockid_t is
 * an int, struct timespec two longs, CLOCK_MONOTONIC is 1). */
struct commloop_timespec { long tv_sec, tv_nsec; };
int clock_gettime(int clock, struct commloop_timespec *t);
static inline double commloop_now_us(void) {
    struct commloop_timespec t;
    clock_gettime(1, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec * 1e-3;
}
#endif

/* Grows *buf to hold n doubles; sizes may change every step, so buffers only grow. */
static inline double *commloop_reserve(const struct commloop_stage *s, double *buf, size_t *cap, size_t n) {
    if (n <= *cap) return buf;
    free(buf);
    buf = (double *)malloc(n * sizeof(double));
    if (!buf) commloop_stage_fail(s, "MemoryError", "out of memory for %zu doubles", n);
    *cap = n;
    return buf;
}

/* The intercommunicator to the hub: the spawn parent, or under one MPMD mpirun, split by
 * MPI_APPNUM and bridged to world rank 0. Returns the app number (0 when spawned). */
static inline int commloop_stage_connect(struct commloop_stage *s) {
    MPI_Comm_get_parent(&s->inter);
    if (s->inter != MPI_COMM_NULL) return 0;
    int *appnum = NULL, flag = 0, world_rank = 0, world_size = 0;
    MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_APPNUM, &appnum, &flag);
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    if (!flag || *appnum < 1 || world_size < 2) {
        commloop_stage_fail(s, "ProtocolError", "no master: start this from a commloop master (spawn) or as a stage of its MPMD mpirun");
    }
    commloop_stage_check(s, MPI_Comm_split(MPI_COMM_WORLD, *appnum, world_rank, &s->local), "MPI_Comm_split");
    commloop_stage_check(s, MPI_Intercomm_create(s->local, 0, MPI_COMM_WORLD, 0, *appnum, &s->inter), "MPI_Intercomm_create");
    return *appnum;
}

/* A kernel that never returns: the hub's deadline could name only the stage (a collective
 * does not say which rank is missing), so with COMMLOOP_STEP_TIMEOUT_MS set (the commloop
 * master sets it for every run) a thread of the stage watches its compute: the loop stores
 * iteration + 1 before the kernel and 0 after, and a compute lasting the deadline is
 * reported as this rank's failure before the hub's deadline (400 ms later) ends the run. */
static int commloop_computing = 0, commloop_computes = 0;
static long commloop_compute_limit_ms = 0;
static const char *commloop_compute_what = "kernel";

static inline void *commloop_compute_watch(void *arg) {
    (void)arg;
    int seen = 0, seen_n = 0;
    double since = commloop_now_us();
    for (;;) {
        struct timespec tick = {0, 10 * 1000 * 1000};
        nanosleep(&tick, NULL);
        int now = __atomic_load_n(&commloop_computing, __ATOMIC_RELAXED);
        int n = __atomic_load_n(&commloop_computes, __ATOMIC_RELAXED);
        if (now != seen || n != seen_n || now == 0) {
            seen = now;
            seen_n = n;
            since = commloop_now_us();
            continue;
        }
        if (commloop_now_us() - since >= 1000.0 * (double)commloop_compute_limit_ms) {
            fprintf(stderr, "commloop-fail: %d %d did not return from its %s within %ld ms (iteration %d)\n", commloop_crash_index, commloop_crash_rank, commloop_compute_what, commloop_compute_limit_ms, now - 1);
            fflush(stderr);
            _exit(1);
        }
    }
    return NULL;
}

static inline void commloop_watch_computes(void) {
    const char *limit = getenv("COMMLOOP_STEP_TIMEOUT_MS");
    commloop_compute_limit_ms = limit ? atol(limit) : 0;
    if (commloop_compute_limit_ms < 1) return;
    pthread_t t;
    if (pthread_create(&t, NULL, commloop_compute_watch, NULL) == 0) pthread_detach(t);
}

/* Save {3, iteration, 0, 0}: the hub gathers every rank's {format, nbytes}, then receives the
 * bytes rank by rank, so each rank sends its own after the gather. The bytes are sent before
 * anything else runs: save's pointer need only last until this returns. */
static inline void commloop_state_save(const struct commloop_stage *s, const struct commloop_state *state, const struct commloop_hooks *hooks, int iteration) {
    int info[2] = {0, 0}; /* format 0: nothing saved */
    const void *data = NULL;
    if ((state && state->save) || (hooks && hooks->save)) {
        size_t len = 0;
        if (hooks && hooks->save) {
            if (hooks->save(&data, &len, &info[0], iteration, hooks->user) != 0) commloop_hooks_fail(s, hooks);
            if (info[0] < 0 || info[0] > 2 || (info[0] == 0 && len != 0)) commloop_stage_fail(s, "StateError", "save gave format %d with %zu bytes", info[0], len);
        } else {
            int rc = state->save(&data, &len, s->rank, s->nranks, iteration, state->user);
            if (rc != 0) commloop_stage_fail(s, "StateError", "save returned %d", rc);
            /* Format 1 even for 0 bytes: an empty state is still loaded back, "nothing saved" is not. */
            info[0] = 1;
        }
        /* One message carries the state, and its count is an int. */
        if (len > (size_t)INT_MAX) commloop_stage_fail(s, "StateError", "save gave %zu bytes; at most %d fit", len, INT_MAX);
        if (len > 0 && !data) commloop_stage_fail(s, "StateError", "save gave %zu bytes at NULL", len);
        info[1] = (int)len;
    }
    commloop_stage_check(s, MPI_Gather(info, 2, MPI_INT, NULL, 0, MPI_INT, 0, s->inter), "save MPI_Gather");
    if (info[1] > 0) commloop_stage_check(s, MPI_Send(data, info[1], MPI_BYTE, 0, COMMLOOP_STATE_TAG, s->inter), "save MPI_Send");
}

/* Load {4, iteration, 0, 0}: {format, nbytes} as saved, the bytes when there are any, load
 * for format 1 or 2 (a .npy file's bytes, as another kind of stage may have saved), then one
 * int to say this rank is done. */
static inline void commloop_state_load(const struct commloop_stage *s, const struct commloop_state *state, const struct commloop_hooks *hooks, int iteration) {
    int info[2] = {0, 0};
    commloop_stage_check(s, MPI_Scatter(NULL, 0, MPI_INT, info, 2, MPI_INT, 0, s->inter), "load MPI_Scatter");
    if (info[0] < 0 || info[0] > 2 || info[1] < 0 || (info[0] == 0 && info[1] != 0)) {
        commloop_stage_fail(s, "ProtocolError", "bad state {%d, %d} to load", info[0], info[1]);
    }
    unsigned char *data = NULL;
    if (info[1] > 0) {
        data = (unsigned char *)malloc((size_t)info[1]);
        if (!data) commloop_stage_fail(s, "MemoryError", "out of memory for %d bytes of state", info[1]);
        MPI_Status status;
        int got = 0;
        commloop_stage_check(s, MPI_Recv(data, info[1], MPI_BYTE, 0, COMMLOOP_STATE_TAG, s->inter, &status), "load MPI_Recv");
        /* More than announced is MPI_ERR_TRUNCATE above; fewer would load a torn state. */
        commloop_stage_check(s, MPI_Get_count(&status, MPI_BYTE, &got), "MPI_Get_count");
        if (got != info[1]) commloop_stage_fail(s, "ProtocolError", "load announced %d bytes of state, %d arrived", info[1], got);
    }
    if (info[0] != 0 && hooks && hooks->load) {
        static const unsigned char none = 0; /* a non-NULL pointer for a state of 0 bytes */
        if (hooks->load(data ? data : &none, (size_t)info[1], info[0], iteration, hooks->user) != 0) commloop_hooks_fail(s, hooks);
    } else if (info[0] != 0) {
        /* Resuming without the state the checkpoint holds would go on from the wrong numbers. */
        if (!state || !state->load) commloop_stage_fail(s, "StateError", "the checkpoint holds state for this rank (%d bytes) but the stage has no load callback", info[1]);
        static const unsigned char empty = 0; /* a non-NULL pointer for a state of 0 bytes */
        int rc = state->load(data ? data : &empty, (size_t)info[1], s->rank, s->nranks, iteration, state->user);
        if (rc != 0) commloop_stage_fail(s, "StateError", "load returned %d", rc);
    }
    free(data);
    int done = 0;
    commloop_stage_check(s, MPI_Gather(&done, 1, MPI_INT, NULL, 0, MPI_INT, 0, s->inter), "load MPI_Gather");
}

/* v3's field table, parsed: one descriptor per line, in then out, each with its byte offset
 * in the packed block (fields in order, each padded to 8 bytes) until the buffers exist. */
struct commloop_fields {
    char *text;               /* the table's bytes, NUL-terminated; names point into it */
    commloop_field *field;    /* in fields, then out fields */
    size_t *offset;           /* each field's byte offset in its block */
    int n_in, n_out;
    size_t in_bytes, out_bytes;
};

static const char *const commloop_dtype_names[] = {"", "float64", "float32", "int64", "int32", "int16", "int8",
                                                   "uint64", "uint32", "uint16", "uint8", "complex128", "complex64"};
static const size_t commloop_dtype_bytes[] = {0, 8, 4, 8, 4, 2, 1, 8, 4, 2, 1, 16, 8};

/* "a int32 [3], b float64 [2x4]": the fields of one side, for messages. */
static inline void commloop_fields_list(char *buf, size_t cap, const commloop_field *f, int n) {
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < n && used < cap; i++) {
        used += (size_t)snprintf(buf + used, cap - used, "%s%s %s [", i ? ", " : "", f[i].name, commloop_dtype_names[f[i].dtype]);
        for (int a = 0; a < f[i].ndim && used < cap; a++) used += (size_t)snprintf(buf + used, cap - used, "%s%d", a ? "x" : "", f[i].shape[a]);
        if (used < cap) used += (size_t)snprintf(buf + used, cap - used, "]");
    }
}

/* Receives and checks the field table: `in|out NAME DTYPE SHAPE` lines, all in lines first;
 * the packed blocks must be n_in / n_out words of every step-table entry. */
static inline void commloop_fields_read(const struct commloop_stage *s, struct commloop_fields *t, const int *sizes, const int *table) {
    int bytes = 0;
    commloop_stage_check(s, MPI_Bcast(&bytes, 1, MPI_INT, 0, s->inter), "field table MPI_Bcast");
    if (bytes < 1 || bytes > (1 << 24)) commloop_stage_fail(s, "ProtocolError", "bad field table length %d", bytes);
    t->text = (char *)malloc((size_t)bytes + 1);
    /* Room for bytes / 8 + 1 fields: a line is checked before the next is stored, and an
     * acceptable one takes at least 12 bytes ("in a int8 1\n"). */
    size_t most = (size_t)bytes / 8 + 1;
    t->field = (commloop_field *)calloc(most, sizeof(commloop_field));
    t->offset = (size_t *)calloc(most, sizeof(size_t));
    if (!t->text || !t->field || !t->offset) commloop_stage_fail(s, "MemoryError", "out of memory for a field table of %d bytes", bytes);
    commloop_stage_check(s, MPI_Bcast(t->text, bytes, MPI_BYTE, 0, s->inter), "field table MPI_Bcast");
    t->text[bytes] = 0;
    if (t->text[bytes - 1] != '\n') commloop_stage_fail(s, "ProtocolError", "the field table does not end in a newline");
    t->n_in = t->n_out = 0;
    t->in_bytes = t->out_bytes = 0;
    char *line = t->text;
    for (int k = 1; *line; k++) {
        char *end = strchr(line, '\n'), *word[4];
        /* The text ends in a newline, so only a NUL byte before it leaves a line without one. */
        if (!end) commloop_stage_fail(s, "ProtocolError", "field table line %d holds a NUL byte", k);
        *end = 0;
        int words = 0;
        for (char *p = line; *p && words < 4;) {
            word[words++] = p;
            while (*p && *p != ' ') p++;
            if (*p) *p++ = 0;
            if (words == 4 && *p) words = 5;
        }
        /* A bad line is quoted as received up to its first NUL: the words were split in place. */
        if (words != 4) commloop_stage_fail(s, "ProtocolError", "field table line %d (\"%s\"): want \"in|out NAME DTYPE SHAPE\"", k, line);
        int out = strcmp(word[0], "out") == 0;
        if (!out && strcmp(word[0], "in") != 0) commloop_stage_fail(s, "ProtocolError", "field table line %d: \"%s\" is neither in nor out", k, word[0]);
        if (!out && t->n_out > 0) commloop_stage_fail(s, "ProtocolError", "field table line %d: in field %s after the out fields", k, word[1]);
        commloop_field *f = &t->field[t->n_in + t->n_out];
        f->name = word[1];
        int ident = !((unsigned)(word[1][0] - '0') < 10u);
        for (const char *c = word[1]; ident && *c; c++) ident = *c == '_' || (unsigned)((*c | 32) - 'a') < 26u || (unsigned)(*c - '0') < 10u;
        if (!ident || !word[1][0]) commloop_stage_fail(s, "ProtocolError", "field table line %d: the field name \"%s\" is not an identifier", k, word[1]);
        for (int d = 1; d <= COMMLOOP_COMPLEX64; d++) if (strcmp(word[2], commloop_dtype_names[d]) == 0) f->dtype = d;
        if (!f->dtype) commloop_stage_fail(s, "ProtocolError", "field %s: unknown dtype \"%s\"", word[1], word[2]);
        unsigned long long count = 1;
        for (char *p = word[3];;) {
            char *after = p;
            unsigned long long axis = 0;
            while ((unsigned)(*after - '0') < 10u && axis <= INT_MAX) axis = axis * 10 + (unsigned)(*after++ - '0');
            if (after == p || axis < 1 || axis > INT_MAX || f->ndim == 4 || (*after && *after != 'x')) {
                commloop_stage_fail(s, "ProtocolError", "field %s: bad shape \"%s\" (1 to 4 positive integers joined by x)", word[1], word[3]);
            }
            f->shape[f->ndim++] = (int)axis;
            count *= axis;
            if (count > INT_MAX) commloop_stage_fail(s, "ProtocolError", "field %s: shape %s has more than %d elements", word[1], word[3], INT_MAX);
            if (!*after) break;
            p = after + 1;
        }
        f->count = (size_t)count;
        size_t *at = out ? &t->out_bytes : &t->in_bytes;
        t->offset[t->n_in + t->n_out] = *at;
        *at += (f->count * commloop_dtype_bytes[f->dtype] + 7) / 8 * 8;
        if (out) t->n_out++;
        else t->n_in++;
        line = end + 1;
    }
    /* Every step's sizes: iteration 0's input (first), then each entry's n_in and n_out. */
    char list[320];
    for (int e = -1; e < sizes[0]; e++) {
        long long n_in = e < 0 ? sizes[1] : table[2 * e], n_out = e < 0 ? -1 : table[2 * e + 1];
        if ((unsigned long long)n_in * 8 != t->in_bytes) {
            commloop_fields_list(list, sizeof list, t->field, t->n_in);
            commloop_stage_fail(s, "ProtocolError", "the in fields (%s) pack into %zu bytes, but the step table gives %lld words (%lld bytes)", list, t->in_bytes, n_in, n_in * 8);
        }
        if (n_out >= 0 && (unsigned long long)n_out * 8 != t->out_bytes) {
            commloop_fields_list(list, sizeof list, t->field + t->n_in, t->n_out);
            commloop_stage_fail(s, "ProtocolError", "the out fields (%s) pack into %zu bytes, but the step table gives %lld words (%lld bytes)", list, t->out_bytes, n_out, n_out * 8);
        }
    }
}

/* Runs one stage rank to the end of the ring: MPI_Init (unless done already), hello, ready,
 * the step loop calling fn on this rank's chunk, shutdown, with state's callbacks at the hub's
 * save and load commands (state may be NULL: nothing to save). With hooks instead of a kernel,
 * their start, step, save and load run instead. Returns 0 for main to return. */
static inline int commloop_stage_loop(int argc, char **argv, commloop_kernel_fn *fn, commloop_fields_fn *ffn, const struct commloop_state *state, const struct commloop_hooks *hooks) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) MPI_Init(&argc, &argv);
    const char *prog = argc > 0 && argv[0] ? argv[0] : "commloop stage";
    struct commloop_stage st = {MPI_COMM_NULL, MPI_COMM_NULL, -1, 0, 0, strrchr(prog, '/') ? strrchr(prog, '/') + 1 : prog};
    struct commloop_stage *s = &st;
    MPI_Comm_rank(MPI_COMM_WORLD, &s->rank);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    if (!fn && !ffn && !(hooks && hooks->step)) commloop_stage_fail(s, "ProtocolError", "commloop_stage_run needs a kernel function, not NULL");
    int appnum = commloop_stage_connect(s);
    MPI_Comm_set_errhandler(s->inter, MPI_ERRORS_RETURN);
    commloop_stage_check(s, MPI_Comm_rank(s->inter, &s->rank), "MPI_Comm_rank");
    commloop_stage_check(s, MPI_Comm_size(s->inter, &s->nranks), "MPI_Comm_size");

    int hello[4];
    commloop_stage_check(s, MPI_Bcast(hello, 4, MPI_INT, 0, s->inter), "hello MPI_Bcast");
    if (hello[0] != COMMLOOP_MAGIC || hello[1] < 1 || hello[1] > COMMLOOP_VERSION) {
        commloop_stage_fail(s, "ProtocolError", "bad hello (magic %#x, version %d; want %#x, 1 to %d)", (unsigned)hello[0], hello[1], (unsigned)COMMLOOP_MAGIC, COMMLOOP_VERSION);
    }
    int version = hello[1];
    s->index = hello[2];
    if (ffn && version < 3) {
        commloop_stage_fail(s, "ProtocolError", "the hub speaks protocol version %d; a fields kernel needs version 3 (an exec stage's pipeline entry says \"protocol\": 3)", version);
    }
    commloop_name_crashes(s->index, s->rank);
    /* mpirun forwards SIGUSR1 and SIGUSR2 to every rank; their default action would end it,
     * and a batch system's warning signal is the master's to act on (it checkpoints and stops). */
    signal(SIGUSR1, SIG_IGN);
    signal(SIGUSR2, SIG_IGN);
    if (hooks && hooks->watching) commloop_compute_what = hooks->watching;
    commloop_watch_computes();
    if (hello[3] != s->nranks || (appnum > 0 && appnum - 1 != hello[2])) {
        commloop_stage_fail(s, "ProtocolError", "hello says stage %d of %d ranks; this is %d ranks, app number %d", hello[2], hello[3], s->nranks, appnum);
    }
    /* v2: every step's sizes, once: iteration i takes table[i % P], iteration 0's n_in is first. */
    int sizes[3] = {0, 0, 0}, *table = NULL;
    if (version >= 2) {
        commloop_stage_check(s, MPI_Bcast(sizes, 3, MPI_INT, 0, s->inter), "step table MPI_Bcast");
        /* sizes[2]: flags; an unknown one must not be ignored. */
        if (sizes[0] < 1 || sizes[1] < 1 || (sizes[2] & ~(COMMLOOP_FLAG_TIMES | COMMLOOP_FLAG_MERGED | COMMLOOP_FLAG_STATE)) != 0) commloop_stage_fail(s, "ProtocolError", "bad step table {%d, %d, %d}", sizes[0], sizes[1], sizes[2]);
        table = (int *)malloc(2 * (size_t)sizes[0] * sizeof(int));
        if (!table) commloop_stage_fail(s, "MemoryError", "out of memory for a step table of %d", sizes[0]);
        commloop_stage_check(s, MPI_Bcast(table, 2 * sizes[0], MPI_INT, 0, s->inter), "step table MPI_Bcast");
    }
    /* v3: the field table, right after the step table. Its sizes are every step's, so the
     * buffers are made once here and the descriptors point into them for the whole run. */
    struct commloop_fields fields = {NULL, NULL, NULL, 0, 0, 0, 0};
    double *in = NULL, *out = NULL;
    size_t in_cap = 0, out_cap = 0;
    if (version == 3) {
        commloop_fields_read(s, &fields, sizes, table);
        const commloop_field *f = fields.field;
        if (!ffn && !hooks && !(fields.n_in == 1 && fields.n_out == 1 && f[0].dtype == COMMLOOP_FLOAT64 && f[1].dtype == COMMLOOP_FLOAT64)) {
            char ins[200], outs[200];
            commloop_fields_list(ins, sizeof ins, f, fields.n_in);
            commloop_fields_list(outs, sizeof outs, f + fields.n_in, fields.n_out);
            commloop_stage_fail(s, "ProtocolError", "this stage's kernel takes one float64 array (commloop_kernel_fn), but its fields are in: %s; out: %s (write a commloop_fields_fn and run it with commloop_stage_run_fields)", ins, outs);
        }
        in = commloop_reserve(s, in, &in_cap, fields.in_bytes / 8);
        out = commloop_reserve(s, out, &out_cap, fields.out_bytes / 8);
        /* malloc's alignment is at least 8; the packed layout keeps every field on it. */
        if ((uintptr_t)in % 8 != 0 || (uintptr_t)out % 8 != 0) commloop_stage_fail(s, "MemoryError", "the message buffers are not 8-byte aligned");
        /* Kernels write fields, not the padding between them: zeroed once, it travels as zeros
         * rather than as whatever malloc left there. */
        memset(out, 0, fields.out_bytes);
        for (int i = 0; i < fields.n_in + fields.n_out; i++) {
            fields.field[i].data = (char *)(i < fields.n_in ? in : out) + fields.offset[i];
        }
    }
    /* Step times: keep iterations 0, every, 2*every... in a ring of the newest cap records. */
    int timing[2] = {0, 0};
    double *ring = NULL;
    if (sizes[2] & COMMLOOP_FLAG_TIMES) {
        commloop_stage_check(s, MPI_Bcast(timing, 2, MPI_INT, 0, s->inter), "step times MPI_Bcast");
        if (timing[0] < 1 || timing[1] < 1) commloop_stage_fail(s, "ProtocolError", "bad step times {%d, %d}", timing[0], timing[1]);
        ring = (double *)calloc((size_t)timing[1] * COMMLOOP_REC, sizeof(double));
        if (!ring) commloop_stage_fail(s, "MemoryError", "out of memory for %d step records", timing[1]);
    }
    MPI_Comm merged = MPI_COMM_NULL;
    if (sizes[2] & COMMLOOP_FLAG_MERGED) {
        commloop_stage_check(s, MPI_Intercomm_merge(s->inter, 1, &merged), "MPI_Intercomm_merge");
        MPI_Comm_set_errhandler(merged, MPI_ERRORS_RETURN);
    }
    /* A runner's code loads before Ready, so start-up time counts it and a bad module fails early. */
    if (hooks && hooks->start) {
        const commloop_field *f = version == 3 ? fields.field : NULL;
        const size_t *offset = version == 3 ? fields.offset : NULL;
        if (hooks->start(version, s->index, s->rank, s->nranks, f, offset, fields.n_in, fields.n_out, hooks->user) != 0) commloop_hooks_fail(s, hooks);
    }
    int ready[2] = {(int)getpid(), commloop_host_hash()};
    commloop_stage_check(s, MPI_Gather(ready, 2, MPI_INT, NULL, 0, MPI_INT, 0, s->inter), "ready MPI_Gather");
    for (int k = 0; ring && k < COMMLOOP_CLOCK_ROUNDS; k++) {
        /* The hub's clock rounds: what this clock reads when each broadcast arrives. */
        double token = 0;
        commloop_stage_check(s, MPI_Bcast(&token, 1, MPI_DOUBLE, 0, s->inter), "clock MPI_Bcast");
        token = commloop_now_us();
        commloop_stage_check(s, MPI_Gather(&token, 1, MPI_DOUBLE, NULL, 0, MPI_DOUBLE, 0, s->inter), "clock MPI_Gather");
    }
    long steps_run = 0;
    int loaded = 0;

    for (;;) {
        int head[4];
        commloop_stage_check(s, MPI_Bcast(head, 4, MPI_INT, 0, s->inter), "header MPI_Bcast");
        if (head[0] == 0) break;
        /* With the state flag, between epochs: save {3, iteration, 0, 0}; load {4, iteration, 0, 0},
         * once, before the first epoch. */
        if ((sizes[2] & COMMLOOP_FLAG_STATE) && head[0] == COMMLOOP_CMD_SAVE && head[1] >= 0) {
            commloop_state_save(s, state, hooks, head[1]);
            continue;
        }
        if ((sizes[2] & COMMLOOP_FLAG_STATE) && head[0] == COMMLOOP_CMD_LOAD && head[1] >= 0 && !loaded && steps_run == 0) {
            commloop_state_load(s, state, hooks, head[1]);
            loaded = 1;
            continue;
        }
        /* v1: one step {1, iteration, n_in, n_out}; v2 and v3: an epoch {2, first iteration, count, 0}. */
        int v1 = version == 1 && head[0] == 1 && head[2] >= 1 && head[3] >= 1;
        int v2 = version >= 2 && head[0] == 2 && head[1] >= 0 && head[2] >= 1;
        if (!v1 && !v2) {
            commloop_stage_fail(s, "ProtocolError", "bad header {%d, %d, %d, %d} for protocol %d", head[0], head[1], head[2], head[3], version);
        }
        int steps = v1 ? 1 : head[2];
        for (int k = 0; k < steps; k++) {
            int it = head[1] + k, n_in = head[2], n_out = head[3];
            if (v2) {
                int e = 2 * (it % sizes[0]);
                n_in = it == 0 ? sizes[1] : table[e];
                n_out = table[e + 1];
            }
            in = commloop_reserve(s, in, &in_cap, (size_t)n_in);
            out = commloop_reserve(s, out, &out_cap, (size_t)n_out);
            double *rec = ring && it % timing[0] == 0 ? ring + (size_t)((it / timing[0]) % timing[1]) * COMMLOOP_REC : NULL;
            if (rec) rec[1] = commloop_now_us();
            if (merged != MPI_COMM_NULL) commloop_stage_check(s, MPI_Scatterv(NULL, NULL, NULL, MPI_DOUBLE, in, n_in, MPI_DOUBLE, 0, merged), "MPI_Scatterv");
            else commloop_stage_check(s, MPI_Scatter(NULL, 0, MPI_DOUBLE, in, n_in, MPI_DOUBLE, 0, s->inter), "MPI_Scatter");
            if (rec) rec[2] = commloop_now_us();
            __atomic_store_n(&commloop_computing, it + 1, __ATOMIC_RELAXED);
            __atomic_store_n(&commloop_computes, commloop_computes + 1, __ATOMIC_RELAXED);
            if (hooks) {
                if (hooks->step(in, (size_t)n_in, out, (size_t)n_out, it, hooks->user) != 0) commloop_hooks_fail(s, hooks);
            } else if (ffn) ffn(fields.field, fields.n_in, fields.field + fields.n_in, fields.n_out, s->rank, s->nranks, it);
            else fn(in, (size_t)n_in, out, (size_t)n_out, s->rank, s->nranks, it);
            __atomic_store_n(&commloop_computing, 0, __ATOMIC_RELAXED);
            if (rec) rec[3] = commloop_now_us();
            if (merged != MPI_COMM_NULL) commloop_stage_check(s, MPI_Gatherv(out, n_out, MPI_DOUBLE, NULL, NULL, NULL, MPI_DOUBLE, 0, merged), "MPI_Gatherv");
            else commloop_stage_check(s, MPI_Gather(out, n_out, MPI_DOUBLE, NULL, 0, MPI_DOUBLE, 0, s->inter), "MPI_Gather");
            if (rec) {
                rec[4] = commloop_now_us();
                rec[0] = it;
            }
            steps_run++;
        }
    }
    if (ring) {
        /* After the stop: the kept records, oldest first, in one gather (every rank holds as many). */
        long taken = (steps_run + timing[0] - 1) / timing[0];
        long kept = taken < timing[1] ? taken : timing[1];
        double *send = (double *)malloc(((size_t)kept * COMMLOOP_REC + 1) * sizeof(double));
        if (!send) commloop_stage_fail(s, "MemoryError", "out of memory for %ld step records", kept);
        for (long j = 0; j < kept; j++) memcpy(send + j * COMMLOOP_REC, ring + ((taken - kept + j) % timing[1]) * COMMLOOP_REC, COMMLOOP_REC * sizeof(double));
        commloop_stage_check(s, MPI_Gather(send, (int)(kept * COMMLOOP_REC), MPI_DOUBLE, NULL, 0, MPI_DOUBLE, 0, s->inter), "step times MPI_Gather");
        free(send);
        free(ring);
    }
    free(table);
    free(fields.text);
    free(fields.field);
    free(fields.offset);
    free(in);
    free(out);
    if (merged != MPI_COMM_NULL) MPI_Comm_free(&merged);
    commloop_stage_check(s, MPI_Comm_disconnect(&s->inter), "MPI_Comm_disconnect");
    if (s->local != MPI_COMM_NULL) MPI_Comm_free(&s->local);
    MPI_Finalize();
    return 0;
}

static inline int commloop_stage_run_with_state(int argc, char **argv, commloop_kernel_fn *fn, const struct commloop_state *state) {
    return commloop_stage_loop(argc, argv, fn, NULL, state, NULL);
}

/* The same without state: the hub's save gets format 0 from every rank. */
static inline int commloop_stage_run(int argc, char **argv, commloop_kernel_fn *fn) {
    return commloop_stage_run_with_state(argc, argv, fn, NULL);
}

/* A fields kernel's stage (protocol version 3 only): fn gets this rank's fields each step,
 * as descriptors built once over the message buffers. */
static inline int commloop_stage_run_fields_with_state(int argc, char **argv, commloop_fields_fn *fn, const struct commloop_state *state) {
    return commloop_stage_loop(argc, argv, NULL, fn, state, NULL);
}

static inline int commloop_stage_run_fields(int argc, char **argv, commloop_fields_fn *fn) {
    return commloop_stage_run_fields_with_state(argc, argv, fn, NULL);
}

/* A runner's stage: hooks (step required) in place of a kernel, for every protocol version. */
static inline int commloop_stage_run_hooks(int argc, char **argv, const struct commloop_hooks *hooks) {
    return commloop_stage_loop(argc, argv, NULL, NULL, NULL, hooks);
}

#endif
