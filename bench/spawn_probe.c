/*
 * Does Open MPI 4.1's spawn across daemons hang less when every stage is started by one
 * MPI_Comm_spawn_multiple instead of one MPI_Comm_spawn a stage (issue 26)? The start of a
 * commloop ring in spawn mode without the rest: a singleton parent starts STAGES jobs of
 * RANKS ranks each, per stage ("each", what commloop does) or all at once ("multiple"),
 * then a barrier and a disconnect on each intercommunicator. A start that hangs never
 * prints "started"; bench/spawn-probe.sh runs it under a deadline and counts.
 *   spawn_probe each|multiple HOSTFILE|- [STAGES [RANKS]]   (-: map_by node, in an allocation)
 * The children are this program (no arguments after MPI_Init: they find their parent).
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
  /* SPAWN_PROBE_DELAY_MS=D: a child waits 0..D ms before MPI_Init, as a Node stage boots first. */
  const char *delay = getenv("SPAWN_PROBE_DELAY_MS");
  if (delay && atoi(delay) > 0 && getenv("OMPI_COMM_WORLD_RANK")) {
    srand((unsigned)getpid());
    usleep((useconds_t)(rand() % atoi(delay)) * 1000);
  }
  MPI_Init(&argc, &argv);
  MPI_Comm parent;
  MPI_Comm_get_parent(&parent);
  if (parent != MPI_COMM_NULL) {
    MPI_Barrier(parent);
    MPI_Comm_disconnect(&parent);
    MPI_Finalize();
    return 0;
  }
  if (argc < 3 || (strcmp(argv[1], "each") != 0 && strcmp(argv[1], "multiple") != 0)) {
    fprintf(stderr, "usage: spawn_probe each|multiple HOSTFILE [STAGES [RANKS]]\n");
    MPI_Finalize();
    return 2;
  }
  int stages = argc > 3 ? atoi(argv[3]) : 3;
  int ranks = argc > 4 ? atoi(argv[4]) : 2;
  if (stages < 1 || stages > 16 || ranks < 1) return 2;
  MPI_Info info;
  MPI_Info_create(&info);
  /* "-": inside a Slurm allocation, its nodes round robin (what commloop asks for there). */
  if (strcmp(argv[2], "-") == 0) MPI_Info_set(info, "map_by", "node");
  else MPI_Info_set(info, "hostfile", argv[2]);
  MPI_Comm inter[16];
  int n = 0;
  int sync = getenv("SPAWN_PROBE_SYNC") && atoi(getenv("SPAWN_PROBE_SYNC")) > 0;
  if (strcmp(argv[1], "each") == 0) {
    /* SPAWN_PROBE_SYNC=1: a barrier with each stage before the next spawn, as commloop's hello. */
    for (int s = 0; s < stages; s++) {
      MPI_Comm_spawn(argv[0], MPI_ARGV_NULL, ranks, info, 0, MPI_COMM_SELF, &inter[n++], MPI_ERRCODES_IGNORE);
      if (sync) MPI_Barrier(inter[n - 1]);
    }
  } else {
    char *cmds[16];
    int counts[16];
    MPI_Info infos[16];
    for (int s = 0; s < stages; s++) {
      cmds[s] = argv[0];
      counts[s] = ranks;
      infos[s] = info;
    }
    MPI_Comm_spawn_multiple(stages, cmds, MPI_ARGVS_NULL, counts, infos, 0, MPI_COMM_SELF, &inter[n++], MPI_ERRCODES_IGNORE);
  }
  for (int k = 0; k < n; k++) {
    if (!(sync && strcmp(argv[1], "each") == 0)) MPI_Barrier(inter[k]); /* met already */
    MPI_Comm_disconnect(&inter[k]);
  }
  printf("started\n");
  fflush(stdout);
  MPI_Info_free(&info);
  MPI_Finalize();
  return 0;
}
