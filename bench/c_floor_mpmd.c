/*
 * The "MPMD floor": the commloop ring (ts1 halfmean -> c halffirst -> ts2 halfmean) all in
 * C inside ONE mpirun, the lower bound of the project's --launch mpmd. Run by hand, it
 * starts that mpirun with itself as every app context, the shape the project's own uses:
 *
 *   mpirun -np 1 SELF ARGS : -np N SELF ARGS : -np N SELF ARGS : -np N SELF ARGS
 *
 * App 0 is the master, app s+1 stage s (the kernels of wasm/commloop_kernel.c). Every rank
 * knows every step's sizes from ARGS, so a step is a scatter and a gather and nothing else.
 * --comm picks how master and stage are connected, each way measured for the same ring:
 *   inter    an intercommunicator per stage (MPI_Comm_split by MPI_APPNUM, then
 *            MPI_Intercomm_create, as docs/PROTOCOL.md does), MPI_Scatter/MPI_Gather
 *            with MPI_ROOT;
 *   merged   the same intercommunicator merged (MPI_Intercomm_merge) into an
 *            intracommunicator of master + stage, MPI_Scatterv/MPI_Gatherv that give
 *            the master (rank 0) 0 elements;
 *   inplace  merged, MPI_Scatter/MPI_Gather with MPI_IN_PLACE at the master: the arrays
 *            keep an unused slot in front for the master's own share.
 *
 *   mpicc.openmpi -O3 -ffp-contract=off -o commloop_c_floor_mpmd bench/c_floor_mpmd.c wasm/commloop_kernel.c
 *   commloop_c_floor_mpmd -p N --sizes n1,n2,n3[/n1,n2,n3...] -i K [--comm inter|merged|inplace]
 */
#define _POSIX_C_SOURCE 200809L
#include <unistd.h>

#define FLOOR_NAME "commloop_c_floor_mpmd"
#include "c_floor.h"
#include "../wasm/commloop_kernel.h"

enum comm_mode { INTER, MERGED, INPLACE };
static const char *const MODE[] = {"inter", "merged", "inplace"};

static void usage(const char *why) {
    fprintf(stderr, FLOOR_NAME ": %s\nusage: " FLOOR_NAME " -p N --sizes n1,n2,n3[/n1,n2,n3...] -i K "
                    "[--comm inter|merged|inplace]\n", why);
    exit(2);
}

/* Not under mpirun yet: start the job with this program as master and as every stage. */
static void launch(int argc, char **argv, int procs) {
    /* The project's defaults for its MPMD mpirun (src/mpi/addon.ts setMpiEnvironment):
     * 3N+1 ranks on 2 cores must not spin; the user's environment wins. */
    setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 0);
    setenv("OMPI_MCA_mpi_yield_when_idle", "1", 0);
    setenv("OMPI_MCA_btl_tcp_if_include", "lo", 0);
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
    static char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) usage("cannot find this program's own path (/proc/self/exe)");
    self[n] = '\0';
    char np[16];
    snprintf(np, sizeof np, "%d", procs);
    char **args = calloc((size_t)(1 + (STAGES + 1) * (argc + 3)), sizeof *args);
    if (!args) usage("out of memory");
    int k = 0;
    args[k++] = "mpirun";
    for (int app = 0; app <= STAGES; app++) {
        if (app) args[k++] = ":";
        args[k++] = "-np";
        args[k++] = app ? np : "1";
        args[k++] = self;
        for (int i = 1; i < argc; i++) args[k++] = argv[i];
    }
    args[k] = NULL;
#ifdef MPICH
    /* MPICH's build (dist/commloop_c_floor_mpmd_mpich): Hydra takes -n as mpirun takes -np and
     * needs no oversubscription or root flag. */
    for (int i = 0; i < k; i++)
        if (strcmp(args[i], "-np") == 0) args[i] = "-n";
    args[0] = "mpiexec.hydra";
    execvp("mpiexec.hydra", args);
    perror(FLOOR_NAME ": cannot run mpiexec.hydra");
#else
    execvp("mpirun.openmpi", args);
    execvp("mpirun", args);
    perror(FLOOR_NAME ": cannot run mpirun");
#endif
    exit(1);
}

/* Elements per rank into stage s at iteration i: stage 0 reads the previous iteration's
 * Array4 (at iteration 0 the initial Array1), stage s > 0 what stage s-1 wrote. */
static int n_in_of(int (*sizes)[3], int ntrip, int s, int i) {
    if (s > 0) return sizes[i % ntrip][s];
    return i == 0 ? sizes[0][0] : sizes[(i - 1) % ntrip][0];
}

static int n_out_of(int (*sizes)[3], int ntrip, int s, int i) { return sizes[i % ntrip][(s + 1) % STAGES]; }

/* A stage rank: receive, compute, send back, for every iteration. */
static void stage(int s, MPI_Comm comm, enum comm_mode mode, int rank, int procs, int (*sizes)[3], int ntrip, int iters) {
    commloop_kernel_fn *kernel = strcmp(KERNEL[s], "halffirst") ? commloop_halfmean : commloop_halffirst;
    int cap_in = 0, cap_out = 0;
    for (int i = 0; i < ntrip + 1 && i < iters; i++) {
        if (n_in_of(sizes, ntrip, s, i) > cap_in) cap_in = n_in_of(sizes, ntrip, s, i);
        if (n_out_of(sizes, ntrip, s, i) > cap_out) cap_out = n_out_of(sizes, ntrip, s, i);
    }
    double *in = malloc((size_t)cap_in * sizeof(double)), *out = malloc((size_t)cap_out * sizeof(double));
    if (!in || !out) usage("out of memory for the arrays");
    const int root = 0; /* the master: rank 0 of the remote group (inter), or of the merged one */
    for (int i = 0; i < iters; i++) {
        int n_in = n_in_of(sizes, ntrip, s, i), n_out = n_out_of(sizes, ntrip, s, i);
        if (mode == MERGED) {
            check(MPI_Scatterv(NULL, NULL, NULL, MPI_DOUBLE, in, n_in, MPI_DOUBLE, root, comm), comm, "scatterv");
        } else {
            check(MPI_Scatter(NULL, 0, MPI_DOUBLE, in, n_in, MPI_DOUBLE, root, comm), comm, "scatter");
        }
        kernel(in, (size_t)n_in, out, (size_t)n_out, rank, procs, i);
        if (mode == MERGED) {
            check(MPI_Gatherv(out, n_out, MPI_DOUBLE, NULL, NULL, NULL, MPI_DOUBLE, root, comm), comm, "gatherv");
        } else {
            check(MPI_Gather(out, n_out, MPI_DOUBLE, NULL, 0, MPI_DOUBLE, root, comm), comm, "gather");
        }
    }
    free(in);
    free(out);
}

int main(int argc, char **argv) {
    int procs = 0, iters = 0, ntrip = 0, (*sizes)[3] = NULL;
    enum comm_mode mode = MERGED;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-p") && strcmp(a, "--procs") && strcmp(a, "-i") && strcmp(a, "--iterations") &&
            strcmp(a, "--sizes") && strcmp(a, "--comm"))
            usage("unknown option or stray argument");
        if (i + 1 >= argc) usage("every option needs a value");
        const char *v = argv[++i];
        if (!strcmp(a, "-p") || !strcmp(a, "--procs")) {
            if ((procs = positive(v)) < 0) usage("-p must be a positive integer");
        } else if (!strcmp(a, "-i") || !strcmp(a, "--iterations")) {
            if ((iters = positive(v)) < 0) usage("-i must be a positive integer");
        } else if (!strcmp(a, "--sizes")) {
            if ((ntrip = parse_sizes(v, &sizes)) < 0) usage("--sizes must be n1,n2,n3 triples of positive integers, separated by /");
        } else {
            int m = 0;
            while (m < 3 && strcmp(v, MODE[m])) m++;
            if (m == 3) usage("--comm must be inter, merged or inplace");
            mode = (enum comm_mode)m;
        }
    }
    if (procs < 1 || iters < 1 || ntrip < 1) usage("-p, --sizes and -i are all required");
    /* Under its launcher: Open MPI's mpirun or MPICH's Hydra (PMI) says so in the environment. */
    if (!getenv("OMPI_COMM_WORLD_SIZE") && !getenv("PMI_SIZE")) launch(argc, argv, procs);

    /* Start: from MPI_Init, as the project's hub measures its own under MPMD, until every
     * stage answered. */
    double t_total = now();
    MPI_Init(&argc, &argv);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    int wrank, wsize, *appnum = NULL, flag = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &wrank);
    MPI_Comm_size(MPI_COMM_WORLD, &wsize);
    MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_APPNUM, &appnum, &flag);
    int app = flag ? *appnum : -1;
    if (wsize != 1 + STAGES * procs || app < 0 || app > STAGES || (app == 0) != (wrank == 0)) {
        if (wrank == 0)
            fprintf(stderr, FLOOR_NAME ": run it without mpirun (it starts its own, with %d ranks in 4 app contexts)\n",
                    1 + STAGES * procs);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    MPI_Comm local, inter[STAGES], comm[STAGES];
    check(MPI_Comm_split(MPI_COMM_WORLD, app, wrank, &local), MPI_COMM_WORLD, "MPI_Comm_split");

    if (app > 0) {
        int s = app - 1, rank;
        check(MPI_Intercomm_create(local, 0, MPI_COMM_WORLD, 0, app, &inter[0]), MPI_COMM_WORLD, "MPI_Intercomm_create");
        comm[0] = inter[0];
        if (mode != INTER) check(MPI_Intercomm_merge(inter[0], 1, &comm[0]), MPI_COMM_WORLD, "MPI_Intercomm_merge");
        MPI_Comm_set_errhandler(comm[0], MPI_ERRORS_RETURN);
        MPI_Comm_rank(local, &rank);
        int hello[2] = {(int)getpid(), rank};
        check(MPI_Gather(hello, 2, MPI_INT, NULL, 0, MPI_INT, 0, comm[0]), comm[0], "ready gather");
        stage(s, comm[0], mode, rank, procs, sizes, ntrip, iters);
        if (mode != INTER) MPI_Comm_free(&comm[0]);
        MPI_Comm_free(&inter[0]);
        MPI_Comm_free(&local);
        MPI_Finalize();
        free(sizes);
        return 0;
    }

    /* The master. Buffer k holds Array k+1 (buffer 0: Array1/4); `lead` is the slot in front
     * of the data that inplace leaves for the master's own share, the current per-rank size. */
    size_t cap[STAGES] = {0, 0, 0};
    for (int e = 0; e < ntrip; e++)
        for (int k = 0; k < STAGES; k++)
            if ((size_t)sizes[e][k] * (size_t)(procs + 1) > cap[k]) cap[k] = (size_t)sizes[e][k] * (size_t)(procs + 1);
    double *buf[STAGES], *times = malloc((size_t)iters * sizeof(double));
    for (int k = 0; k < STAGES; k++)
        if (!(buf[k] = malloc(cap[k] * sizeof(double))) || !times) usage("out of memory for the arrays");
    int *counts = malloc((size_t)(procs + 1) * sizeof(int)), *displs = malloc((size_t)(procs + 1) * sizeof(int));
    int *ready = malloc((size_t)(procs + 1) * 2 * sizeof(int));
    if (!counts || !displs || !ready) usage("out of memory");
    size_t lead = mode == INPLACE ? (size_t)sizes[0][0] : 0;
    for (size_t j = 0; j < (size_t)procs * (size_t)sizes[0][0]; j++) buf[0][lead + j] = 1.0;

    int leader = 1;
    for (int s = 0; s < STAGES; s++) {
        check(MPI_Intercomm_create(local, 0, MPI_COMM_WORLD, leader, s + 1, &inter[s]), MPI_COMM_WORLD, "MPI_Intercomm_create");
        leader += procs;
        comm[s] = inter[s];
        /* high = 0 on the master, 1 on the stage: the master is rank 0 of the merged group. */
        if (mode != INTER) check(MPI_Intercomm_merge(inter[s], 0, &comm[s]), MPI_COMM_WORLD, "MPI_Intercomm_merge");
        MPI_Comm_set_errhandler(comm[s], MPI_ERRORS_RETURN);
    }
    for (int s = 0; s < STAGES; s++) {
        if (mode == INTER)
            check(MPI_Gather(NULL, 0, MPI_INT, ready, 2, MPI_INT, MPI_ROOT, comm[s]), comm[s], "ready gather");
        else
            check(MPI_Gather(MPI_IN_PLACE, 2, MPI_INT, ready, 2, MPI_INT, 0, comm[s]), comm[s], "ready gather");
    }
    double start_s = now() - t_total;

    for (int i = 0; i < iters; i++) {
        double t = now();
        for (int s = 0; s < STAGES; s++) {
            int n_in = n_in_of(sizes, ntrip, s, i), n_out = n_out_of(sizes, ntrip, s, i);
            double *src = buf[s], *dst = buf[(s + 1) % STAGES];
            MPI_Comm c = comm[s];
            if (mode == INTER) {
                check(MPI_Scatter(src, n_in, MPI_DOUBLE, NULL, 0, MPI_DOUBLE, MPI_ROOT, c), c, "scatter");
                check(MPI_Gather(NULL, 0, MPI_DOUBLE, dst, n_out, MPI_DOUBLE, MPI_ROOT, c), c, "gather");
            } else if (mode == INPLACE) {
                /* Rank r+1's share sits at (r+1)*n: the array starts one share in. */
                check(MPI_Scatter(src, n_in, MPI_DOUBLE, MPI_IN_PLACE, n_in, MPI_DOUBLE, 0, c), c, "scatter");
                check(MPI_Gather(MPI_IN_PLACE, n_out, MPI_DOUBLE, dst, n_out, MPI_DOUBLE, 0, c), c, "gather");
            } else {
                counts[0] = 0;
                displs[0] = 0;
                for (int r = 0; r < procs; r++) counts[r + 1] = n_in, displs[r + 1] = r * n_in;
                check(MPI_Scatterv(src, counts, displs, MPI_DOUBLE, MPI_IN_PLACE, 0, MPI_DOUBLE, 0, c), c, "scatterv");
                for (int r = 0; r < procs; r++) counts[r + 1] = n_out, displs[r + 1] = r * n_out;
                check(MPI_Gatherv(MPI_IN_PLACE, 0, MPI_DOUBLE, dst, counts, displs, MPI_DOUBLE, 0, c), c, "gatherv");
            }
        }
        times[i] = now() - t;
    }

    /* The final Array1: what stage 2 wrote last, one share in under inplace. */
    int n_last = sizes[(iters - 1) % ntrip][0];
    lead = mode == INPLACE ? (size_t)n_last : 0;
    double checksum = 0.0;
    for (size_t j = 0; j < (size_t)procs * (size_t)n_last; j++) checksum += buf[0][lead + j];

    for (int s = 0; s < STAGES; s++) {
        if (mode != INTER) MPI_Comm_free(&comm[s]);
        MPI_Comm_free(&inter[s]);
    }
    MPI_Comm_free(&local);
    MPI_Finalize();
    double total_s = now() - t_total;

    char extra[32];
    snprintf(extra, sizeof extra, "\"comm\":\"%s\"", MODE[mode]);
    print_result("c-floor-mpmd", extra, procs, sizes, ntrip, iters, checksum, start_s, times, total_s);
    for (int k = 0; k < STAGES; k++) free(buf[k]);
    free(times);
    free(counts);
    free(displs);
    free(ready);
    free(sizes);
    return 0;
}
