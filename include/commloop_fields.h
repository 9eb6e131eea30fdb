/*
 * commloop_fields.h: a message's fields as C sees them (docs/PIPELINES.md, "Fields"): the
 * dtype codes, the commloop_field descriptor, the kernel type of a stage of fields, and a
 * finder by name. One copy, included by wasm/commloop_kernel.h (the `c` stages' kernels,
 * native and WebAssembly) and include/commloop_stage.h (the stage SDK, whose users pass only
 * -I<commloop>/include). No libc: standalone WASM kernels have none. The wasm32 layout below
 * is what the TypeScript side writes into a kernel's memory (src/stage/fields-views.ts).
 */
#ifndef COMMLOOP_FIELDS_H
#define COMMLOOP_FIELDS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

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

#ifdef __cplusplus
}
#endif

#endif
