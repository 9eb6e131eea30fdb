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
