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

/* ---- fields (issue 27): a message of several named, typed, shaped fields ----------
 * A fields kernel gets one descriptor per field of this rank's input and output block
 * (the packed layout of src/pipeline/fields.ts packedLayout: every field 8-byte aligned). The
 * project's stages use it wherever a stage declares `fields`; a `size: N` stage is one
 * float64 field named "data".
 *
 * The enum, the struct and the function type are also in include/commloop_stage.h (a user's
 * stage includes only that one); both sit under the guard COMMLOOP_FIELD_TYPES so a file may
 * include the two headers. Keep the two copies identical: the wasm32 layout below is what
 * the TypeScript side writes into WASM memory. */
#ifndef COMMLOOP_FIELD_TYPES
#define COMMLOOP_FIELD_TYPES
/* NumPy's dtypes, numbered from 1 in this order (the addon and the wire use the codes).
 * Elements are little-endian; a complex element is a (real, imag) pair of float64/float32. */
enum {
    COMMLOOP_FLOAT64 = 1, COMMLOOP_FLOAT32, COMMLOOP_INT64, COMMLOOP_INT32, COMMLOOP_INT16,
    COMMLOOP_INT8, COMMLOOP_UINT64, COMMLOOP_UINT32, COMMLOOP_UINT16, COMMLOOP_UINT8,
    COMMLOOP_COMPLEX128, COMMLOOP_COMPLEX64
};

/* wasm32 layout: name@0, data@4, count@8, dtype@12, ndim@16, shape@20..36; sizeof 36. */
typedef struct commloop_field {
    const char *name; /* NUL-terminated, as the pipeline names it */
    void *data;       /* this rank's part: count elements of dtype (complex: pairs) */
    size_t count;     /* elements: the product of shape */
    int dtype;        /* COMMLOOP_* */
    int ndim;         /* 1..4 */
    int shape[4];     /* per rank; unused axes 0 */
} commloop_field;

/* in/out: this rank's input and output fields in table order; rank/nranks/iteration as for
 * commloop_kernel_fn. A kernel writes every element of every out field. */
typedef void commloop_fields_fn(const commloop_field *in, int n_in, const commloop_field *out, int n_out,
                                int rank, int nranks, int iteration);

/* The field named `name` with dtype `dtype` among f[0..n), or NULL: a kernel finds its
 * fields by name and so does not depend on their order. A hand-written compare, as
 * standalone WASM kernels have no libc. */
static inline void *commloop_field_data(const commloop_field *f, int n, const char *name, int dtype) {
    for (int i = 0; i < n; i++) {
        const char *a = f[i].name, *b = name;
        while (*a && *a == *b) a++, b++;
        if (*a == *b && f[i].dtype == dtype) return f[i].data;
    }
    return NULL;
}
#endif

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
