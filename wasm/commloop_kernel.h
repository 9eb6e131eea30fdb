/*
 * commloop's C kernels: pure functions over one rank's chunk.
 *
 * The same file compiles natively (gcc/mpicc) and to a standalone .wasm (emcc);
 * no MPI, no globals, no libc. Every user C stage uses the signature below
 * (commloop_kernel_fn), so the project can call it from either build.
 *
 * Bit-identical results on every build rest on: IEEE double, a fixed
 * left-to-right summation order, and -ffp-contract=off (no FMA). Never build
 * these with -ffast-math or -Ofast.
 */
#ifndef COMMLOOP_KERNEL_H
#define COMMLOOP_KERNEL_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* in: this rank's input chunk (n_in doubles); out: its output (n_out doubles).
 * rank/nranks: position in the stage; iteration: 0-based ring iteration. */
typedef void commloop_kernel_fn(const double *in, size_t n_in, double *out, size_t n_out,
                                int rank, int nranks, int iteration);

/* Left-to-right sum of x[0..n). */
double commloop_sum(const double *x, size_t n);

/* The TypeScript stages' transform: y[j] = sum(x) / n_in / 2 + (rank*n_out + j). */
void commloop_halfmean(const double *in, size_t n_in, double *out, size_t n_out,
                       int rank, int nranks, int iteration);

/* The C stage's transform: y[j] = x[0] / 2 + (rank*n_out + j). */
void commloop_halffirst(const double *in, size_t n_in, double *out, size_t n_out,
                        int rank, int nranks, int iteration);

#ifdef __cplusplus
}
#endif

#endif
