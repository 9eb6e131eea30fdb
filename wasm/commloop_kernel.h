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

/* A message's fields (issue 27): the types of a `c` stage of fields, in one header shared
 * with the stage SDK. */
#include "../include/commloop_fields.h"

/* The fields test kernel (built in: "fields_demo"). With S the sum, left to right in one
 * double accumulator, of in[0]'s scalars converted to double (a complex element gives its
 * real part, then its imaginary part; S = 0 when n_in is 0), element j of out field k is
 *     v = S / 2 + (double)(rank * out[k].count + j + k)      (the integer part exact, in 64 bits)
 * stored as its dtype:
 *   float64: v;  float32: (float)v (round to nearest);
 *   complex128: (v, v + 0.5);  complex64: ((float)v, (float)(v + 0.5));
 *   integers: t = v truncated toward zero as an int64 (NaN gives 0; beyond the int64 range,
 *     INT64_MIN or INT64_MAX), then t's low 8/16/32/64 bits (two's complement), so an
 *     unsigned field holds t modulo 2^bits.
 * Every conversion is one IEEE operation or exact integer arithmetic: native and WASM agree
 * bit for bit (build with -ffp-contract=off). */
void commloop_fields_demo(const commloop_field *in, int n_in, const commloop_field *out, int n_out,
                          int rank, int nranks, int iteration);

#ifdef __cplusplus
}
#endif

#endif
