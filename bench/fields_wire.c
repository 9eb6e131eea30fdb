/*
 * How should a message of several typed fields cross MPI (issue 27: "one scatter and one
 * gather per stage step ... MPI derived datatypes, or one packed buffer per rank: measure and
 * choose")? One stage step without the rest: rank 0 (the hub) hands each of the other ranks
 * its part of a message and takes back as much, ITER times, timed per iteration; the ranks
 * copy input to output. The message: 4 fields of float64, int32, float32 and uint8, each
 * BYTES bytes per rank; the same bytes as one float64 field is the reference.
 *
 *   one       one float64 field: MPI_Scatterv / MPI_Gatherv of doubles (today's wire)
 *   packed    the hub keeps the message as the ranks' packed blocks, one after another
 *             (each rank's fields back to back, 8-byte aligned): one MPI_Scatterv /
 *             MPI_Gatherv of bytes, no copy anywhere
 *   copy      the hub keeps each field whole (field-major) and packs into / unpacks from a
 *             staging buffer of packed blocks around the same collectives (a copy a way)
 *   p2p       field-major on the hub, sent straight from it: an MPI_Isend / MPI_Irecv per
 *             rank with a struct datatype of that rank's parts; the ranks MPI_Recv / MPI_Send
 *   alltoallw field-major on the hub, one MPI_Alltoallw each way with a struct datatype per
 *             rank (the only collective that takes a datatype per rank)
 *
 *   mpirun -np 1+N fields_wire one|packed|copy|p2p|alltoallw BYTES ITER
 * Prints "METHOD BYTES N median_us" from rank 0 and checks every byte that came back.
 */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define F 4
static const int SIZE[F] = {8, 4, 4, 1};

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static size_t align8(size_t n) { return (n + 7) & ~(size_t)7; }

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (argc != 4 || size < 2) {
    if (rank == 0) fprintf(stderr, "usage: mpirun -np 1+N fields_wire one|packed|copy|p2p|alltoallw BYTES ITER\n");
    MPI_Finalize();
    return 2;
  }
  const char *method = argv[1];
  size_t bytes = (size_t)atol(argv[2]); /* per field per rank */
  int iters = atoi(argv[3]);
  int n = size - 1;
  int count[F];
  size_t off[F], block = 0; /* a rank's packed block: field f at off[f] */
  for (int f = 0; f < F; f++) {
    count[f] = (int)(bytes / SIZE[f]);
    off[f] = block;
    block += align8((size_t)count[f] * SIZE[f]);
  }
  size_t total = block * n;
  /* Field-major on the hub: field f whole at fbase[f], rank r's part at fbase[f] + r * bytes_f. */
  size_t fbase[F], ftotal = 0;
  for (int f = 0; f < F; f++) {
    fbase[f] = ftotal;
    ftotal += align8((size_t)count[f] * SIZE[f] * n);
  }
  int one = strcmp(method, "one") == 0;
  int packed = strcmp(method, "packed") == 0, copy = strcmp(method, "copy") == 0;
  int p2p = strcmp(method, "p2p") == 0, a2aw = strcmp(method, "alltoallw") == 0;
  if (!(one || packed || copy || p2p || a2aw)) {
    if (rank == 0) fprintf(stderr, "fields_wire: unknown method %s\n", method);
    MPI_Finalize();
    return 2;
  }
  double *lat = rank == 0 ? malloc(sizeof(double) * iters) : NULL;
  if (rank == 0) {
    unsigned char *in = aligned_alloc(64, align8(total > ftotal ? total : ftotal) + 64);
    unsigned char *out = aligned_alloc(64, align8(total > ftotal ? total : ftotal) + 64);
    unsigned char *stage = aligned_alloc(64, total + 64);
    size_t span = one || packed ? total : ftotal;
    for (size_t i = 0; i < span; i++) in[i] = (unsigned char)(i * 131 + 7);
    int *cnt = calloc(size, sizeof(int)), *dsp = calloc(size, sizeof(int));
    for (int r = 1; r <= n; r++) {
      cnt[r] = one ? (int)(block / 8) : (int)block;
      dsp[r] = one ? (int)((r - 1) * block / 8) : (int)((r - 1) * block);
    }
    /* One struct datatype per rank: its parts of the field-major message. */
    MPI_Datatype *types = malloc(sizeof(MPI_Datatype) * size);
    int *zeros = calloc(size, sizeof(int)), *ones = calloc(size, sizeof(int));
    types[0] = MPI_BYTE;
    for (int r = 1; r <= n; r++) {
      /* The ranks see bytes: a struct of byte blocks matches their MPI_BYTE counts. */
      int bl[F];
      MPI_Aint disp[F];
      MPI_Datatype bytesof[F];
      for (int f = 0; f < F; f++) {
        bl[f] = count[f] * SIZE[f];
        disp[f] = (MPI_Aint)(fbase[f] + (size_t)(r - 1) * count[f] * SIZE[f]);
        bytesof[f] = MPI_BYTE;
      }
      MPI_Type_create_struct(F, bl, disp, bytesof, &types[r]);
      MPI_Type_commit(&types[r]);
      ones[r] = 1;
    }
    int *bcnt = calloc(size, sizeof(int));
    for (int r = 1; r <= n; r++) bcnt[r] = 0;
    MPI_Request *req = malloc(sizeof(MPI_Request) * size);
    MPI_Datatype *btypes = malloc(sizeof(MPI_Datatype) * size);
    for (int r = 0; r < size; r++) btypes[r] = MPI_BYTE;
    for (int it = 0; it < iters; it++) {
      double t0 = MPI_Wtime();
      if (one) {
        MPI_Scatterv(in, cnt, dsp, MPI_DOUBLE, NULL, 0, MPI_DOUBLE, 0, MPI_COMM_WORLD);
        MPI_Gatherv(NULL, 0, MPI_DOUBLE, out, cnt, dsp, MPI_DOUBLE, 0, MPI_COMM_WORLD);
      } else if (packed) {
        MPI_Scatterv(in, cnt, dsp, MPI_BYTE, NULL, 0, MPI_BYTE, 0, MPI_COMM_WORLD);
        MPI_Gatherv(NULL, 0, MPI_BYTE, out, cnt, dsp, MPI_BYTE, 0, MPI_COMM_WORLD);
      } else if (copy) {
        for (int r = 0; r < n; r++)
          for (int f = 0; f < F; f++) memcpy(stage + r * block + off[f], in + fbase[f] + (size_t)r * count[f] * SIZE[f], (size_t)count[f] * SIZE[f]);
        MPI_Scatterv(stage, cnt, dsp, MPI_BYTE, NULL, 0, MPI_BYTE, 0, MPI_COMM_WORLD);
        MPI_Gatherv(NULL, 0, MPI_BYTE, stage, cnt, dsp, MPI_BYTE, 0, MPI_COMM_WORLD);
        for (int r = 0; r < n; r++)
          for (int f = 0; f < F; f++) memcpy(out + fbase[f] + (size_t)r * count[f] * SIZE[f], stage + r * block + off[f], (size_t)count[f] * SIZE[f]);
      } else if (p2p) {
        for (int r = 1; r <= n; r++) MPI_Isend(in, 1, types[r], r, 1, MPI_COMM_WORLD, &req[r - 1]);
        MPI_Waitall(n, req, MPI_STATUSES_IGNORE);
        for (int r = 1; r <= n; r++) MPI_Irecv(out, 1, types[r], r, 2, MPI_COMM_WORLD, &req[r - 1]);
        MPI_Waitall(n, req, MPI_STATUSES_IGNORE);
      } else {
        MPI_Alltoallw(in, ones, zeros, types, NULL, bcnt, zeros, btypes, MPI_COMM_WORLD);
        MPI_Alltoallw(NULL, bcnt, zeros, btypes, out, ones, zeros, types, MPI_COMM_WORLD);
      }
      lat[it] = (MPI_Wtime() - t0) * 1e6;
    }
    /* Every byte came back where it went out. */
    size_t bad = 0;
    if (one || packed) {
      for (size_t i = 0; i < total; i++) bad += in[i] != out[i];
    } else {
      for (int f = 0; f < F; f++)
        for (size_t i = 0; i < (size_t)count[f] * SIZE[f] * n; i++) bad += in[fbase[f] + i] != out[fbase[f] + i];
    }
    qsort(lat, iters, sizeof(double), cmp);
    printf("%s %zu %d %.2f%s\n", method, bytes, n, lat[iters / 2], bad ? " BAD" : "");
    for (int r = 1; r <= n; r++) MPI_Type_free(&types[r]);
  } else {
    unsigned char *buf = aligned_alloc(64, block + 64), *res = aligned_alloc(64, block + 64);
    int *zeros = calloc(size, sizeof(int)), *cnt = calloc(size, sizeof(int));
    MPI_Datatype *btypes = malloc(sizeof(MPI_Datatype) * size);
    for (int r = 0; r < size; r++) btypes[r] = MPI_BYTE;
    for (int it = 0; it < iters; it++) {
      if (one) {
        MPI_Scatterv(NULL, NULL, NULL, MPI_DOUBLE, buf, (int)(block / 8), MPI_DOUBLE, 0, MPI_COMM_WORLD);
        memcpy(res, buf, block);
        MPI_Gatherv(res, (int)(block / 8), MPI_DOUBLE, NULL, NULL, NULL, MPI_DOUBLE, 0, MPI_COMM_WORLD);
      } else if (packed || copy) {
        MPI_Scatterv(NULL, NULL, NULL, MPI_BYTE, buf, (int)block, MPI_BYTE, 0, MPI_COMM_WORLD);
        memcpy(res, buf, block);
        MPI_Gatherv(res, (int)block, MPI_BYTE, NULL, NULL, NULL, MPI_BYTE, 0, MPI_COMM_WORLD);
      } else if (p2p) {
        /* The parts arrive back to back (a struct's bytes, unpadded). */
        size_t got = 0;
        for (int f = 0; f < F; f++) got += (size_t)count[f] * SIZE[f];
        MPI_Recv(buf, (int)got, MPI_BYTE, 0, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        memcpy(res, buf, got);
        MPI_Send(res, (int)got, MPI_BYTE, 0, 2, MPI_COMM_WORLD);
      } else {
        size_t got = 0;
        for (int f = 0; f < F; f++) got += (size_t)count[f] * SIZE[f];
        cnt[0] = (int)got;
        MPI_Alltoallw(NULL, zeros, zeros, btypes, buf, cnt, zeros, btypes, MPI_COMM_WORLD);
        memcpy(res, buf, got);
        MPI_Alltoallw(res, cnt, zeros, btypes, NULL, zeros, zeros, btypes, MPI_COMM_WORLD);
      }
    }
  }
  MPI_Finalize();
  return 0;
}
