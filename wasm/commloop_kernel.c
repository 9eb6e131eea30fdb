#include "commloop_kernel.h"

double commloop_sum(const double *x, size_t n) {
    /* One accumulator on purpose: reassociating (SIMD lanes, pairwise) would
     * change the bits and break native == WASM == TypeScript. */
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += x[i];
    return s;
}

void commloop_halfmean(const double *in, size_t n_in, double *out, size_t n_out,
                       int rank, int nranks, int iteration) {
    (void)nranks;
    (void)iteration;
    double half = commloop_sum(in, n_in) / (double)n_in / 2.0;
    double base = (double)rank * (double)n_out;
    for (size_t j = 0; j < n_out; j++) out[j] = half + (base + (double)j);
}

void commloop_halffirst(const double *in, size_t n_in, double *out, size_t n_out,
                        int rank, int nranks, int iteration) {
    (void)n_in;
    (void)nranks;
    (void)iteration;
    double half = in[0] / 2.0;
    double base = (double)rank * (double)n_out;
    for (size_t j = 0; j < n_out; j++) out[j] = half + (base + (double)j);
}

/* Element i of a field as a double: scalar i of the field, counting a complex element's
 * real and imaginary parts as two scalars. Integer to double rounds to nearest (one IEEE
 * conversion on both builds). */
static double commloop_scalar(const commloop_field *f, size_t i) {
    switch (f->dtype) {
        case COMMLOOP_FLOAT64: case COMMLOOP_COMPLEX128: return ((const double *)f->data)[i];
        case COMMLOOP_FLOAT32: case COMMLOOP_COMPLEX64: return (double)((const float *)f->data)[i];
        case COMMLOOP_INT64: return (double)((const long long *)f->data)[i];
        case COMMLOOP_INT32: return (double)((const int *)f->data)[i];
        case COMMLOOP_INT16: return (double)((const short *)f->data)[i];
        case COMMLOOP_INT8: return (double)((const signed char *)f->data)[i];
        case COMMLOOP_UINT64: return (double)((const unsigned long long *)f->data)[i];
        case COMMLOOP_UINT32: return (double)((const unsigned *)f->data)[i];
        case COMMLOOP_UINT16: return (double)((const unsigned short *)f->data)[i];
        case COMMLOOP_UINT8: return (double)((const unsigned char *)f->data)[i];
        default: return 0.0;
    }
}

/* v truncated toward zero into 64 bits, saturating: C leaves an out-of-range conversion
 * undefined (and WASM's trapping truncation would trap), so the range is checked first. */
static unsigned long long commloop_to_bits(double v) {
    long long t;
    if (v != v) t = 0;
    else if (v >= 9223372036854775808.0) t = 0x7fffffffffffffffLL;
    else if (v < -9223372036854775808.0) t = -0x7fffffffffffffffLL - 1;
    else t = (long long)v;
    return (unsigned long long)t; /* two's complement: the low bits of t */
}

void commloop_fields_demo(const commloop_field *in, int n_in, const commloop_field *out, int n_out,
                          int rank, int nranks, int iteration) {
    (void)nranks;
    (void)iteration;
    double s = 0.0;
    if (n_in > 0) {
        int pairs = in[0].dtype == COMMLOOP_COMPLEX128 || in[0].dtype == COMMLOOP_COMPLEX64;
        size_t scalars = pairs ? 2 * in[0].count : in[0].count;
        for (size_t i = 0; i < scalars; i++) s += commloop_scalar(&in[0], i);
    }
    double half = s / 2.0;
    for (int k = 0; k < n_out; k++) {
        const commloop_field *f = &out[k];
        long long base = (long long)rank * (long long)f->count + (long long)k;
        for (size_t j = 0; j < f->count; j++) {
            double v = half + (double)(base + (long long)j);
            unsigned long long b = commloop_to_bits(v);
            switch (f->dtype) {
                case COMMLOOP_FLOAT64: ((double *)f->data)[j] = v; break;
                case COMMLOOP_FLOAT32: ((float *)f->data)[j] = (float)v; break;
                case COMMLOOP_COMPLEX128:
                    ((double *)f->data)[2 * j] = v;
                    ((double *)f->data)[2 * j + 1] = v + 0.5;
                    break;
                case COMMLOOP_COMPLEX64:
                    ((float *)f->data)[2 * j] = (float)v;
                    ((float *)f->data)[2 * j + 1] = (float)(v + 0.5);
                    break;
                case COMMLOOP_INT64: case COMMLOOP_UINT64: ((unsigned long long *)f->data)[j] = b; break;
                case COMMLOOP_INT32: case COMMLOOP_UINT32: ((unsigned *)f->data)[j] = (unsigned)b; break;
                case COMMLOOP_INT16: case COMMLOOP_UINT16: ((unsigned short *)f->data)[j] = (unsigned short)b; break;
                case COMMLOOP_INT8: case COMMLOOP_UINT8: ((unsigned char *)f->data)[j] = (unsigned char)b; break;
                default: break;
            }
        }
    }
}
