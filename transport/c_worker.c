/*
 * The native C stage: one of the kernels in wasm/commloop_kernel.c run as a stage
 * process by include/commloop_stage.h, the project's one C implementation of
 * docs/PROTOCOL.md (both launch modes). Built with mpicc -Iinclude by build.sh.
 *
 *   commloop_c_worker KERNEL      (KERNEL: halffirst, halfmean, or the fields kernel fields_demo)
 *
 * Built with -DCOMMLOOP_USER_KERNEL=name and a user's object file, KERNEL may also be
 * "user": that is how a pipeline's C stage runs natively over MPI (src/pipeline/compile.ts).
 * Likewise -DCOMMLOOP_USER_FIELDS_KERNEL=name makes "user-fields" run that fields kernel
 * (commloop_fields_fn, protocol version 3).
 */
#include <mpi.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Both headers declare commloop_kernel_fn: were the two types ever to differ, this file
 * would stop compiling. */
#include "commloop_stage.h"
#include "../wasm/commloop_kernel.h"

#ifdef COMMLOOP_USER_KERNEL
commloop_kernel_fn COMMLOOP_USER_KERNEL;
#endif
#ifdef COMMLOOP_USER_FIELDS_KERNEL
commloop_fields_fn COMMLOOP_USER_FIELDS_KERNEL;
#endif

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    /* The master's stdout carries the result: what a kernel prints goes to stderr. */
    dup2(2, 1);
    commloop_kernel_fn *kernel = NULL;
    commloop_fields_fn *fields = NULL;
    if (argc == 2 && strcmp(argv[1], "halffirst") == 0) kernel = commloop_halffirst;
    if (argc == 2 && strcmp(argv[1], "halfmean") == 0) kernel = commloop_halfmean;
#ifdef COMMLOOP_USER_KERNEL
    if (argc == 2 && strcmp(argv[1], "user") == 0) kernel = COMMLOOP_USER_KERNEL;
#endif
    if (argc == 2 && strcmp(argv[1], "fields_demo") == 0) fields = commloop_fields_demo;
#ifdef COMMLOOP_USER_FIELDS_KERNEL
    if (argc == 2 && strcmp(argv[1], "user-fields") == 0) fields = COMMLOOP_USER_FIELDS_KERNEL;
#endif
    if (!kernel && !fields) {
        fprintf(stderr, "usage: commloop_c_worker halffirst|halfmean|fields_demo\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    return fields ? commloop_stage_run_fields(argc, argv, fields) : commloop_stage_run(argc, argv, kernel);
}
