/*
 * The native C stage: a spawned MPI program that speaks docs/PROTOCOL.md and runs one
 * of the kernels in wasm/commloop_kernel.c on its chunk. Built with mpicc by build.sh.
 *
 *   commloop_c_worker KERNEL      (KERNEL: halffirst or halfmean)
 *
 * Built with -DCOMMLOOP_USER_KERNEL=name and a user's object file, KERNEL may also be
 * "user": that is how a pipeline's C stage runs natively over MPI (src/pipeline/compile.ts).
 * It finds its master by spawn (the parent communicator) or, under one MPMD mpirun,
 * through MPI_APPNUM (docs/PROTOCOL.md).
 */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../wasm/commloop_kernel.h"

#ifdef COMMLOOP_USER_KERNEL
commloop_kernel_fn COMMLOOP_USER_KERNEL;
#endif

#define CL_MAGIC 0x434C4F50
#define CL_VERSION 1

static void check(int rc, MPI_Comm comm, const char *what) {
    if (rc == MPI_SUCCESS) return;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    fprintf(stderr, "commloop_c_worker: %s failed: %s\n", what, msg);
    MPI_Abort(comm, 1);
}

static int32_t host_hash(void) {
    char name[256] = {0};
    gethostname(name, sizeof name - 1);
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 16777619u;
    return (int32_t)h;
}

/* Grows *buf to hold n doubles; the sizes may change every step. */
static double *reserve(double *buf, size_t *cap, size_t n) {
    if (n <= *cap) return buf;
    free(buf);
    buf = malloc((n ? n : 1) * sizeof(double));
    if (!buf) {
        fprintf(stderr, "commloop_c_worker: out of memory for %zu doubles\n", n);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    *cap = n;
    return buf;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    /* The master's stdout carries the result: what a kernel prints goes to stderr. */
    dup2(2, 1);
    commloop_kernel_fn *kernel = NULL;
    if (argc == 2 && strcmp(argv[1], "halffirst") == 0) kernel = commloop_halffirst;
    if (argc == 2 && strcmp(argv[1], "halfmean") == 0) kernel = commloop_halfmean;
#ifdef COMMLOOP_USER_KERNEL
    if (argc == 2 && strcmp(argv[1], "user") == 0) kernel = COMMLOOP_USER_KERNEL;
#endif
    if (!kernel) {
        fprintf(stderr, "usage: commloop_c_worker halffirst|halfmean\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    MPI_Comm parent, local = MPI_COMM_NULL;
    MPI_Comm_get_parent(&parent);
    if (parent == MPI_COMM_NULL) {
        /* MPMD: the master is world rank 0; this stage's colour and tag are its app number. */
        int *appnum = NULL, flag = 0, world_rank = 0, world_size = 0;
        MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_APPNUM, &appnum, &flag);
        MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
        MPI_Comm_size(MPI_COMM_WORLD, &world_size);
        if (!flag || *appnum < 1 || world_size < 2) {
            fprintf(stderr, "commloop_c_worker: no master: start it from a commloop master (spawn) or as a stage of its MPMD mpirun\n");
            MPI_Abort(MPI_COMM_WORLD, 2);
        }
        MPI_Comm_split(MPI_COMM_WORLD, *appnum, world_rank, &local);
        check(MPI_Intercomm_create(local, 0, MPI_COMM_WORLD, 0, *appnum, &parent), MPI_COMM_WORLD, "MPI_Intercomm_create");
    }
    MPI_Comm_set_errhandler(parent, MPI_ERRORS_RETURN);
    int rank = 0, nranks = 0;
    MPI_Comm_rank(parent, &rank);
    MPI_Comm_size(parent, &nranks);

    int hello[4];
    check(MPI_Bcast(hello, 4, MPI_INT, 0, parent), parent, "hello bcast");
    if (hello[0] != CL_MAGIC || hello[1] != CL_VERSION) {
        fprintf(stderr, "commloop_c_worker: bad hello (magic %#x, version %d)\n", hello[0], hello[1]);
        MPI_Abort(parent, 2);
    }
    int ready[2] = {(int)getpid(), host_hash()};
    check(MPI_Gather(ready, 2, MPI_INT, NULL, 0, MPI_INT, 0, parent), parent, "ready gather");

    double *in = NULL, *out = NULL;
    size_t in_cap = 0, out_cap = 0;
    for (;;) {
        int head[4];
        check(MPI_Bcast(head, 4, MPI_INT, 0, parent), parent, "header bcast");
        if (head[0] == 0) break;
        int n_in = head[2], n_out = head[3];
        in = reserve(in, &in_cap, (size_t)n_in);
        out = reserve(out, &out_cap, (size_t)n_out);
        check(MPI_Scatter(NULL, 0, MPI_DOUBLE, in, n_in, MPI_DOUBLE, 0, parent), parent, "scatter");
        kernel(in, (size_t)n_in, out, (size_t)n_out, rank, nranks, head[1]);
        check(MPI_Gather(out, n_out, MPI_DOUBLE, NULL, 0, MPI_DOUBLE, 0, parent), parent, "gather");
    }
    free(in);
    free(out);
    MPI_Comm_disconnect(&parent);
    if (local != MPI_COMM_NULL) MPI_Comm_free(&local);
    MPI_Finalize();
    return 0;
}
