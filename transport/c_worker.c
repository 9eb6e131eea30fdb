/*
 * The native C stage: one of the kernels in wasm/commloop_kernel.c run as a stage
 * process by include/commloop_stage.h, the project's one C implementation of
 * docs/PROTOCOL.md (both launch modes). Built with mpicc -Iinclude by build.sh.
 *
 *   commloop_c_worker KERNEL      (KERNEL: halffirst or halfmean)
 *
 * Built with -DCOMMLOOP_USER_KERNEL=name and a user's object file, KERNEL may also be
 * "user": that is how a pipeline's C stage runs natively over MPI (src/pipeline/compile.ts).
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
    return commloop_stage_run(argc, argv, kernel);
}
