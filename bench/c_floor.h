/*
 * What the benchmark's two all-C floors share (bench/c_floor.c, spawn mode, and
 * bench/c_floor_mpmd.c, one mpirun): argument parsing, the MPI error check, and the one
 * JSON line they print, so both floors read their options and report their times alike.
 * Each program defines FLOOR_NAME (its name in messages) and usage() before including it.
 */
#ifndef COMMLOOP_C_FLOOR_H
#define COMMLOOP_C_FLOOR_H

#include <errno.h>
#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CL_MAGIC 0x434C4F50
#define STAGES 3

static const char *const KERNEL[STAGES] = {"halfmean", "halffirst", "halfmean"};

static void usage(const char *why);

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int positive(const char *s) {
    char *end;
    errno = 0;
    long v = (*s >= '0' && *s <= '9') ? strtol(s, &end, 10) : -1;
    if (v < 1 || v > INT_MAX || errno || *end) return -1;
    return (int)v;
}

/* Parses "a,b,c/a,b,c..." into a malloc'd array of triples; returns the triple count or -1.
 * Hand-rolled rather than strtok so that empty fields ("1,,2", "1,1,1//2,2,2") are errors. */
static int parse_sizes(const char *p, int (**out)[3]) {
    int count = 1;
    for (const char *q = p; *q; q++) count += *q == '/';
    int (*t)[3] = calloc((size_t)count, sizeof *t);
    if (!t) usage("out of memory");
    for (int e = 0; e < count; e++) {
        for (int k = 0; k < 3; k++) {
            char *end;
            errno = 0;
            long v = (*p >= '0' && *p <= '9') ? strtol(p, &end, 10) : -1;
            char want = k < 2 ? ',' : e + 1 < count ? '/' : '\0';
            if (v < 1 || v > INT_MAX || errno || *end != want) { free(t); return -1; }
            t[e][k] = (int)v;
            p = end + (want != '\0');
        }
    }
    *out = t;
    return count;
}

static void check(int rc, MPI_Comm comm, const char *what) {
    if (rc == MPI_SUCCESS) return;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    fprintf(stderr, FLOOR_NAME ": %s failed: %s\n", what, msg);
    MPI_Abort(comm, 1);
}

/* Shortest of %.15g/%.16g/%.17g that reads back to the same double: matches JS/Python output. */
static void put_double(double x) {
    char buf[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, x);
        if (strtod(buf, NULL) == x) break;
    }
    fputs(buf, stdout);
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The floors' one JSON line, in the keys and units of the project's --json (seconds);
 * `extra` is more "key":value pairs, or "". Sorts `times`. */
static void print_result(const char *impl, const char *extra, int procs, int (*sizes)[3], int ntrip, int iters,
                         double checksum, double start_s, double *times, double total_s) {
    double sum = 0.0;
    for (int i = 0; i < iters; i++) sum += times[i];
    double first = times[0], last = times[iters - 1];
    qsort(times, (size_t)iters, sizeof(double), by_value);
    double median = (times[(iters - 1) / 2] + times[iters / 2]) / 2;

    printf("{\"impl\":\"%s\"%s%s,\"procs\":%d,\"sizes\":[", impl, *extra ? "," : "", extra, procs);
    for (int e = 0; e < ntrip; e++)
        printf("%s[%d,%d,%d]", e ? "," : "", sizes[e][0], sizes[e][1], sizes[e][2]);
    printf("],\"iterations\":%d,\"checksum\":", iters);
    put_double(checksum);
    const char *keys[] = {"startS", "firstIterS", "lastIterS", "meanIterS", "medianIterS", "minIterS", "totalS"};
    double vals[] = {start_s, first, last, sum / iters, median, times[0], total_s};
    for (int k = 0; k < 7; k++) {
        printf(",\"%s\":", keys[k]);
        put_double(vals[k]);
    }
    printf("}\n");
    fflush(stdout);
}

#endif
