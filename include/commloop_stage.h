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
 * Header-only: every function is static, so there is no library to build or link.
 */
#ifndef COMMLOOP_STAGE_H
#define COMMLOOP_STAGE_H

#include <mpi.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef __cplusplus
/* POSIX; declared again so that -std=c99 (which hides it in unistd.h) compiles too. */
int gethostname(char *name, size_t len);
#endif

/* The same type as in wasm/commloop_kernel.h; C11 allows the identical typedef twice, and
 * the project's own worker includes both, so the two cannot drift apart. */
typedef void commloop_kernel_fn(const double *in, size_t n_in, double *out, size_t n_out,
                                int rank, int nranks, int iteration);

#define COMMLOOP_MAGIC 0x434C4F50
/* The highest protocol version spoken here; the hub's hello says which one this run uses. */
#define COMMLOOP_VERSION 2

/* One rank's view of its stage. index is -1 until the hello names it. */
struct commloop_stage {
    MPI_Comm inter, local;
    int index, rank, nranks;
    const char *prog;
};

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
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
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

/* Runs one stage rank to the end of the ring: MPI_Init (unless done already), hello, ready,
 * the step loop calling fn on this rank's chunk, shutdown. Returns 0 for main to return. */
static inline int commloop_stage_run(int argc, char **argv, commloop_kernel_fn *fn) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) MPI_Init(&argc, &argv);
    const char *prog = argc > 0 && argv[0] ? argv[0] : "commloop stage";
    struct commloop_stage st = {MPI_COMM_NULL, MPI_COMM_NULL, -1, 0, 0, strrchr(prog, '/') ? strrchr(prog, '/') + 1 : prog};
    struct commloop_stage *s = &st;
    MPI_Comm_rank(MPI_COMM_WORLD, &s->rank);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    if (!fn) commloop_stage_fail(s, "ProtocolError", "commloop_stage_run needs a kernel function, not NULL");
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
    if (hello[3] != s->nranks || (appnum > 0 && appnum - 1 != hello[2])) {
        commloop_stage_fail(s, "ProtocolError", "hello says stage %d of %d ranks; this is %d ranks, app number %d", hello[2], hello[3], s->nranks, appnum);
    }
    /* v2: every step's sizes, once: iteration i takes table[i % P], iteration 0's n_in is first. */
    int sizes[3] = {0, 0, 0}, *table = NULL;
    if (version == 2) {
        commloop_stage_check(s, MPI_Bcast(sizes, 3, MPI_INT, 0, s->inter), "step table MPI_Bcast");
        /* sizes[2]: flags; none is defined yet, and an unknown one must not be ignored. */
        if (sizes[0] < 1 || sizes[1] < 1 || sizes[2] != 0) commloop_stage_fail(s, "ProtocolError", "bad step table {%d, %d, %d}", sizes[0], sizes[1], sizes[2]);
        table = (int *)malloc(2 * (size_t)sizes[0] * sizeof(int));
        if (!table) commloop_stage_fail(s, "MemoryError", "out of memory for a step table of %d", sizes[0]);
        commloop_stage_check(s, MPI_Bcast(table, 2 * sizes[0], MPI_INT, 0, s->inter), "step table MPI_Bcast");
    }
    int ready[2] = {(int)getpid(), commloop_host_hash()};
    commloop_stage_check(s, MPI_Gather(ready, 2, MPI_INT, NULL, 0, MPI_INT, 0, s->inter), "ready MPI_Gather");

    double *in = NULL, *out = NULL;
    size_t in_cap = 0, out_cap = 0;
    for (;;) {
        int head[4];
        commloop_stage_check(s, MPI_Bcast(head, 4, MPI_INT, 0, s->inter), "header MPI_Bcast");
        if (head[0] == 0) break;
        /* v1: one step {1, iteration, n_in, n_out}; v2: an epoch {2, first iteration, count, 0}. */
        int v1 = version == 1 && head[0] == 1 && head[2] >= 1 && head[3] >= 1;
        int v2 = version == 2 && head[0] == 2 && head[1] >= 0 && head[2] >= 1;
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
            commloop_stage_check(s, MPI_Scatter(NULL, 0, MPI_DOUBLE, in, n_in, MPI_DOUBLE, 0, s->inter), "MPI_Scatter");
            fn(in, (size_t)n_in, out, (size_t)n_out, s->rank, s->nranks, it);
            commloop_stage_check(s, MPI_Gather(out, n_out, MPI_DOUBLE, NULL, 0, MPI_DOUBLE, 0, s->inter), "MPI_Gather");
        }
    }
    free(table);
    free(in);
    free(out);
    commloop_stage_check(s, MPI_Comm_disconnect(&s->inter), "MPI_Comm_disconnect");
    if (s->local != MPI_COMM_NULL) MPI_Comm_free(&s->local);
    MPI_Finalize();
    return 0;
}

#endif
