/*
 * The "C floor": the commloop ring (ts1 halfmean -> c halffirst -> ts2 halfmean) driven by
 * a plain C master over docs/PROTOCOL.md, every stage a spawned commloop_c_worker. It is the
 * lower bound the project's own hub is measured against, so it does nothing but the protocol.
 * With --protocol 2 (the "minimal floor") a step is a scatter and a gather and nothing else,
 * the shape of the original CommLoop's loop: every size is told once, in one epoch; with
 * --protocol 1 (the "protocol floor") every step also carries v1's header broadcast. With
 * --comm merged (protocol 2), every step runs on the intercommunicator merged with the master
 * (FLAG_MERGED, MPI_Scatterv/MPI_Gatherv), as the project's hub does on the shared-memory wire;
 * the wire itself is the environment's (the bench sets UCX's MCA variables for that row).
 *
 *   mpicc.openmpi -O3 -ffp-contract=off -o commloop_c_floor bench/c_floor.c
 *   commloop_c_floor -p N --sizes n1,n2,n3[/n1,n2,n3...] -i K --worker /path/to/commloop_c_worker [--protocol 1|2] [--comm inter|merged]
 */
#define _POSIX_C_SOURCE 200809L
#include <sys/stat.h>
#include <unistd.h>

#define FLOOR_NAME "commloop_c_floor"
#include "c_floor.h"

static void usage(const char *why) {
    fprintf(stderr, "commloop_c_floor: %s\nusage: commloop_c_floor -p N --sizes n1,n2,n3[/n1,n2,n3...] -i K "
                    "--worker PATH\n", why);
    exit(2);
}

int main(int argc, char **argv) {
    int procs = 0, iters = 0, ntrip = 0, (*sizes)[3] = NULL, version = 1, merge = 0;
    const char *worker = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-p") && strcmp(a, "--procs") && strcmp(a, "-i") && strcmp(a, "--iterations") &&
            strcmp(a, "--sizes") && strcmp(a, "--worker") && strcmp(a, "--protocol") && strcmp(a, "--comm"))
            usage("unknown option or stray argument");
        if (i + 1 >= argc) usage("every option needs a value");
        const char *v = argv[++i];
        if (!strcmp(a, "-p") || !strcmp(a, "--procs")) {
            if ((procs = positive(v)) < 0) usage("-p must be a positive integer");
        } else if (!strcmp(a, "-i") || !strcmp(a, "--iterations")) {
            if ((iters = positive(v)) < 0) usage("-i must be a positive integer");
        } else if (!strcmp(a, "--protocol")) {
            if ((version = positive(v)) < 1 || version > 2) usage("--protocol must be 1 or 2");
        } else if (!strcmp(a, "--comm")) {
            if (strcmp(v, "inter") && strcmp(v, "merged")) usage("--comm must be inter or merged");
            merge = !strcmp(v, "merged");
        } else if (!strcmp(a, "--sizes")) {
            if ((ntrip = parse_sizes(v, &sizes)) < 0) usage("--sizes must be n1,n2,n3 triples of positive integers, separated by /");
        } else {
            worker = v;
        }
    }
    if (procs < 1 || iters < 1 || ntrip < 1 || !worker) usage("-p, --sizes, -i and --worker are all required");
    if (merge && version != 2) usage("--comm merged needs --protocol 2");
    /* Open MPI 4.1 spawning a missing executable from a singleton hangs instead of failing. */
    struct stat st;
    if (stat(worker, &st) != 0 || !S_ISREG(st.st_mode) || access(worker, X_OK) != 0) usage("--worker is not an executable file");

    /* Stage s outputs triple[(s+1)%3] per rank; buffer s+1 (mod 3) holds it, buffer 0 is Array1/4. */
    size_t cap[STAGES] = {0, 0, 0};
    for (int e = 0; e < ntrip; e++)
        for (int k = 0; k < STAGES; k++)
            if ((size_t)sizes[e][k] * (size_t)procs > cap[k]) cap[k] = (size_t)sizes[e][k] * (size_t)procs;
    double *buf[STAGES], *times = malloc((size_t)iters * sizeof(double));
    for (int k = 0; k < STAGES; k++)
        if (!(buf[k] = malloc(cap[k] * sizeof(double))) || !times) usage("out of memory for the arrays");
    size_t len = (size_t)procs * (size_t)sizes[0][0];
    for (size_t j = 0; j < len; j++) buf[0][j] = 1.0;

    /* Same defaults the project sets: a 2-core box runs 3N+1 ranks, the master must not spin. */
    setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 0);
    setenv("OMPI_MCA_mpi_yield_when_idle", "1", 0);
    setenv("OMPI_MCA_btl_tcp_if_include", "lo", 0);
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);

    /* Start counts MPI_Init (a singleton's starts its orted, about 0.3 s here), as the
     * project's hub and the mpi4py peer count theirs: the start-up targets compare the same span. */
    double t_total = now();
    MPI_Init(&argc, &argv);
    MPI_Comm_set_errhandler(MPI_COMM_SELF, MPI_ERRORS_RETURN);

    MPI_Comm inter[STAGES];
    int *ready = malloc((size_t)procs * 2 * sizeof(int));
    int *errcodes = malloc((size_t)procs * sizeof(int));
    if (!ready || !errcodes) usage("out of memory");
    for (int s = 0; s < STAGES; s++) {
        char *args[] = {(char *)KERNEL[s], NULL};
        check(MPI_Comm_spawn(worker, args, procs, MPI_INFO_NULL, 0, MPI_COMM_SELF, &inter[s], errcodes),
              MPI_COMM_SELF, "spawn");
        MPI_Comm_set_errhandler(inter[s], MPI_ERRORS_RETURN);
    }
    /* Hello to all stages before any ready gather, so the stages start up concurrently. */
    for (int s = 0; s < STAGES; s++) {
        int hello[4] = {CL_MAGIC, version, s, procs};
        check(MPI_Bcast(hello, 4, MPI_INT, MPI_ROOT, inter[s]), inter[s], "hello bcast");
        if (version == 2) {
            /* The step table (docs/PROTOCOL.md): stage s reads what stage s-1 wrote, stage 0 the
             * previous group's Array1 (and at iteration 0 the initial one). */
            /* Flag 2 (FLAG_MERGED): steps on the intercommunicator merged with this master, rank 0. */
            int head[3] = {ntrip, sizes[0][s], merge ? 2 : 0}, *table = malloc(2 * (size_t)ntrip * sizeof(int));
            if (!table) usage("out of memory");
            for (int e = 0; e < ntrip; e++) {
                table[2 * e] = s == 0 ? sizes[(e + ntrip - 1) % ntrip][0] : sizes[e][s];
                table[2 * e + 1] = sizes[e][(s + 1) % STAGES];
            }
            check(MPI_Bcast(head, 3, MPI_INT, MPI_ROOT, inter[s]), inter[s], "step table bcast");
            check(MPI_Bcast(table, 2 * ntrip, MPI_INT, MPI_ROOT, inter[s]), inter[s], "step table bcast");
            free(table);
        }
    }
    /* The stages merge right after the step table, before their ready gather, as the hub does. */
    MPI_Comm merged[STAGES];
    int *counts = calloc((size_t)procs + 1, sizeof(int)), *displs = calloc((size_t)procs + 1, sizeof(int));
    if (!counts || !displs) usage("out of memory");
    for (int s = 0; s < STAGES && merge; s++) {
        check(MPI_Intercomm_merge(inter[s], 0, &merged[s]), inter[s], "merge");
        MPI_Comm_set_errhandler(merged[s], MPI_ERRORS_RETURN);
    }
    for (int s = 0; s < STAGES; s++)
        check(MPI_Gather(NULL, 0, MPI_INT, ready, 2, MPI_INT, MPI_ROOT, inter[s]), inter[s], "ready gather");
    double start_s = now() - t_total;
    if (version == 2) {
        /* One epoch: every iteration promised at once, so no step carries a header. */
        int head[4] = {2, 0, iters, 0};
        for (int s = 0; s < STAGES; s++) check(MPI_Bcast(head, 4, MPI_INT, MPI_ROOT, inter[s]), inter[s], "epoch bcast");
    }

    for (int i = 0; i < iters; i++) {
        double t = now();
        const int *out = sizes[i % ntrip];
        for (int s = 0; s < STAGES; s++) {
            int n_in = (int)(len / (size_t)procs), n_out = out[(s + 1) % STAGES];
            int head[4] = {1, i, n_in, n_out};
            double *src = buf[s], *dst = buf[(s + 1) % STAGES];
            if (version == 1) check(MPI_Bcast(head, 4, MPI_INT, MPI_ROOT, inter[s]), inter[s], "header bcast");
            if (merge) {
                /* Rank 0 (this master) sends and receives nothing of its own. */
                for (int r = 0; r < procs; r++) counts[r + 1] = n_in, displs[r + 1] = r * n_in;
                check(MPI_Scatterv(src, counts, displs, MPI_DOUBLE, NULL, 0, MPI_DOUBLE, 0, merged[s]), merged[s], "scatterv");
                for (int r = 0; r < procs; r++) counts[r + 1] = n_out, displs[r + 1] = r * n_out;
                check(MPI_Gatherv(NULL, 0, MPI_DOUBLE, dst, counts, displs, MPI_DOUBLE, 0, merged[s]), merged[s], "gatherv");
            } else {
                check(MPI_Scatter(src, n_in, MPI_DOUBLE, NULL, 0, MPI_DOUBLE, MPI_ROOT, inter[s]), inter[s], "scatter");
                check(MPI_Gather(NULL, 0, MPI_DOUBLE, dst, n_out, MPI_DOUBLE, MPI_ROOT, inter[s]), inter[s], "gather");
            }
            len = (size_t)procs * (size_t)n_out;
        }
        times[i] = now() - t;
    }

    double checksum = 0.0;
    for (size_t j = 0; j < len; j++) checksum += buf[0][j];

    for (int s = 0; s < STAGES; s++) {
        int stop[4] = {0, 0, 0, 0};
        check(MPI_Bcast(stop, 4, MPI_INT, MPI_ROOT, inter[s]), inter[s], "stop bcast");
    }
    for (int s = 0; s < STAGES && merge; s++) MPI_Comm_free(&merged[s]);
    for (int s = 0; s < STAGES; s++) MPI_Comm_disconnect(&inter[s]);
    MPI_Finalize();
    double total_s = now() - t_total;

    print_result(version == 2 ? "c-floor-min" : "c-floor", "", procs, sizes, ntrip, iters, checksum, start_s, times, total_s);
    for (int k = 0; k < STAGES; k++) free(buf[k]);
    free(times);
    free(ready);
    free(errcodes);
    free(counts);
    free(displs);
    free(sizes);
    return 0;
}
