/* Stage "model" of the MCMC example: each walker's spectrum, a Lorentzian line
 *     flux[g] = a / (1 + (x_g - b)^2),   x_g = 10 g / G,
 * for this rank's walkers' parameters theta = (a, b). The prior is flat on a > 0 and
 * 0 <= b < 10: outside it the model is not evaluated (flux 0) and status says 1, which the
 * likelihood turns into a log-probability of -infinity.
 *
 * Only + - * / and comparisons: no libm, so the native and the WebAssembly builds give the
 * same bits (commloop builds with -ffp-contract=off). The shapes come from the fields
 * (mcmc.json): theta [n, 2] in, flux [n, G] and status [n] out, per rank. */
#include <stdint.h>

enum { MODEL_OK = 0, MODEL_OUTSIDE_PRIOR = 1, MODEL_BAD_SHAPES = 2 };

/* The descriptor of the field `name` among f[0..n), or NULL (no libc: WebAssembly has none). */
static const commloop_field *find(const commloop_field *f, int n, const char *name) {
    for (int i = 0; i < n; i++) {
        const char *a = f[i].name, *b = name;
        while (*a && *a == *b) a++, b++;
        if (*a == *b) return &f[i];
    }
    return NULL;
}

void lorentzian(const commloop_field *in, int n_in, const commloop_field *out, int n_out,
                int rank, int nranks, int iteration) {
    const double *theta = commloop_field_data(in, n_in, "theta", COMMLOOP_FLOAT64);
    double *flux = commloop_field_data(out, n_out, "flux", COMMLOOP_FLOAT64);
    int32_t *status = commloop_field_data(out, n_out, "status", COMMLOOP_INT32);
    (void)rank, (void)nranks, (void)iteration;
    if (!theta || !flux || !status) return; /* mcmc.json declares all three */
    const commloop_field *tf = find(in, n_in, "theta"), *ff = find(out, n_out, "flux"), *sf = find(out, n_out, "status");
    size_t walkers = sf->count, G = ff->ndim == 2 ? (size_t)ff->shape[1] : 0;
    if (tf->count != 2 * walkers || ff->count != walkers * G || G == 0) {
        /* Shapes that do not fit this model: say so in every status (the likelihood stops the run). */
        for (size_t w = 0; w < walkers; w++) status[w] = MODEL_BAD_SHAPES;
        for (size_t k = 0; k < ff->count; k++) flux[k] = 0.0;
        return;
    }
    for (size_t w = 0; w < walkers; w++) {
        double a = theta[2 * w], b = theta[2 * w + 1];
        double *f = flux + w * G;
        int outside = !(a > 0.0) || !(b >= 0.0) || !(b < 10.0);
        status[w] = outside ? MODEL_OUTSIDE_PRIOR : MODEL_OK;
        for (size_t g = 0; g < G; g++) {
            double x = (10.0 * (double)g) / (double)G, d = x - b;
            f[g] = outside ? 0.0 : a / (1.0 + d * d);
        }
    }
}
