#!/usr/bin/env bash
# Installs what is missing, then builds what is out of date: the WASM kernel, the
# native addons, the bundles in dist/ and their .d.ts types. Quick when nothing changed.
# One line per step; a step's own log is shown only when it fails.
#   bash build.sh          what the ring needs (emscripten, Open MPI)
#   bash build.sh --test   also what the tests' fixtures and the benchmark's mpi4py peer need,
#                          and MPICH beside Open MPI (the tests run under both)
# The MPI addon and the native C stage are built once for each MPI installed (Open MPI's,
# and MPICH's where mpicc.mpich is found), as mpi4py is: a run picks one with --mpi.
set -euo pipefail
cd "$(dirname "$0")"

say() { printf 'build.sh: %s\n' "$*" >&2; }

with_test=0
for arg in "$@"; do
  case $arg in
    --test) with_test=1 ;;
    *) say "unknown argument $arg (usage: bash build.sh [--test])"; exit 2 ;;
  esac
done

# quiet LOG CMD...: runs CMD with its output in LOG; prints LOG only if CMD fails.
quiet() {
  local log=$1; shift
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    say "failed: $* (log above, also in $log)"
    exit 1
  fi
}

# --- system packages (Debian/Ubuntu) -------------------------------------------
missing=()
command -v emcc >/dev/null 2>&1 || missing+=(emscripten)
command -v mpicc.openmpi >/dev/null 2>&1 || missing+=(openmpi-bin libopenmpi-dev)
# The tests' fixtures and the benchmark's mpi4py peer run on Debian's python3, not whatever
# python3 is first on PATH; the ring itself never needs them.
if ((with_test)); then
  /usr/bin/python3 -c 'import mpi4py, numpy' >/dev/null 2>&1 || missing+=(python3-mpi4py python3-numpy)
  # test/hosts/: the bed of hosts as network namespaces (ip netns; unshare is util-linux's).
  command -v ip >/dev/null 2>&1 || missing+=(iproute2)
  # test/slurm/: the Slurm bed (a controller and three slurmd nodes in network namespaces, munge auth).
  command -v slurmctld >/dev/null 2>&1 || missing+=(slurm-wlm)
  command -v munged >/dev/null 2>&1 || missing+=(munge)
  # MPICH beside Open MPI (Open MPI stays the default mpirun/mpicc alternative).
  command -v mpicc.mpich >/dev/null 2>&1 || missing+=(mpich libmpich-dev)
fi
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    quiet apt.log apt-get update -q
    quiet apt.log apt-get install -y -q "${missing[@]}"
  else
    say "missing ${missing[*]}; install them with: sudo apt-get install -y ${missing[*]}"
    exit 1
  fi
fi

# --- npm packages -----------------------------------------------------------------
if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then
  # --ignore-scripts: the install script (scripts/install.mjs) would build the addons that
  # this file builds below anyway, with its own checks.
  say "npm ci"
  quiet npm-ci.log npm ci --ignore-scripts --no-audit --no-fund
fi

# newer OUT IN...: true when OUT is missing or older than any IN
newer() {
  local out=$1; shift
  [[ -e $out ]] || return 0
  [[ -n $(find "$@" -newer "$out" -print -quit 2>/dev/null) ]]
}

mkdir -p dist

# --- the C kernel as WASM -----------------------------------------------------------
# Imports one shared memory (the arena), exports the kernels and __heap_base.
# -ffp-contract=off and no -ffast-math: the bits must match the native build.
wasm=dist/commloop_kernel.wasm
if newer "$wasm" wasm/commloop_kernel.c wasm/commloop_kernel.h include/commloop_fields.h build.sh; then
  say "emcc $wasm"
  quiet emcc.log emcc -O3 -msimd128 -matomics -mbulk-memory -ffp-contract=off --no-entry \
    -sSTANDALONE_WASM -sIMPORTED_MEMORY -sALLOW_MEMORY_GROWTH \
    -sTOTAL_STACK=65536 -sINITIAL_MEMORY=1MB -sMAXIMUM_MEMORY=4GB \
    -Wl,--shared-memory -Wl,--export=__heap_base \
    -sEXPORTED_FUNCTIONS=_commloop_sum,_commloop_halfmean,_commloop_halffirst,_commloop_fields_demo \
    wasm/commloop_kernel.c -o "$wasm"
fi

# --- the native C stage (MPI) -------------------------------------------------------
worker=dist/commloop_c_worker
if newer "$worker" transport/c_worker.c include/commloop_stage.h include/commloop_fields.h wasm/commloop_kernel.c wasm/commloop_kernel.h build.sh; then
  say "mpicc $worker"
  # -lm: user kernels linked into it may call libm (sqrt), as on the other two builds.
  quiet mpicc.log mpicc.openmpi -O3 -ffp-contract=off -Wall -Wextra -Iinclude -o "$worker" transport/c_worker.c wasm/commloop_kernel.c -lm
fi

# The C SDK as a shared library, for the python stage runner that speaks the protocol
# through it (python/commloop_stage_c.py: MPICH's, which has no mpi4py here), once per MPI.
for mpi in openmpi mpich; do
  command -v mpicc.$mpi >/dev/null 2>&1 || continue
  lib=dist/libcommloop_stage.$mpi.so
  if newer "$lib" python/commloop_stage_lib.c include/commloop_stage.h build.sh; then
    say "mpicc.$mpi $lib"
    quiet mpicc.log mpicc.$mpi -O2 -ffp-contract=off -shared -fPIC -Iinclude -o "$lib" python/commloop_stage_lib.c
  fi
done

# The same for MPICH, where it is installed.
if command -v mpicc.mpich >/dev/null 2>&1; then
  worker_mpich=dist/commloop_c_worker_mpich
  if newer "$worker_mpich" transport/c_worker.c include/commloop_stage.h include/commloop_fields.h wasm/commloop_kernel.c wasm/commloop_kernel.h build.sh; then
    say "mpicc.mpich $worker_mpich"
    quiet mpicc.log mpicc.mpich -O3 -ffp-contract=off -Wall -Wextra -Iinclude -o "$worker_mpich" transport/c_worker.c wasm/commloop_kernel.c -lm
  fi
fi

# --- the benchmark's C floor: the same ring, every process in C -----------------
floor=dist/commloop_c_floor
if newer "$floor" bench/c_floor.c bench/c_floor.h build.sh; then
  say "mpicc $floor"
  quiet mpicc.log mpicc.openmpi -O3 -ffp-contract=off -Wall -Wextra -o "$floor" bench/c_floor.c -lm
fi
# The MPMD floor: master and stages in one program under one mpirun, the stages' kernels linked in.
floor_mpmd=dist/commloop_c_floor_mpmd
if newer "$floor_mpmd" bench/c_floor_mpmd.c bench/c_floor.h wasm/commloop_kernel.c wasm/commloop_kernel.h build.sh; then
  say "mpicc $floor_mpmd"
  quiet mpicc.log mpicc.openmpi -O3 -ffp-contract=off -Wall -Wextra -o "$floor_mpmd" bench/c_floor_mpmd.c wasm/commloop_kernel.c -lm
fi

# MPICH's MPMD floor, for the bench's MPICH rows.
if command -v mpicc.mpich >/dev/null 2>&1; then
  floor_mpich=dist/commloop_c_floor_mpmd_mpich
  if newer "$floor_mpich" bench/c_floor_mpmd.c bench/c_floor.h wasm/commloop_kernel.c wasm/commloop_kernel.h build.sh; then
    say "mpicc.mpich $floor_mpich"
    quiet mpicc.log mpicc.mpich -O3 -ffp-contract=off -Wall -Wextra -o "$floor_mpich" bench/c_floor_mpmd.c wasm/commloop_kernel.c -lm
  fi
fi

# --- the native addons: the kernel (no MPI) and the MPI transport, once per MPI -----
mpich_addon=()
command -v mpicc.mpich >/dev/null 2>&1 && mpich_addon=(build/Release/commloop_mpi_mpich.node)
if newer build/Release/commloop_kernel.node binding.gyp transport wasm ||
  newer build/Release/commloop_mpi.node binding.gyp transport ||
  { ((${#mpich_addon[@]})) && newer "${mpich_addon[0]}" binding.gyp transport; }; then
  say "node-gyp rebuild"
  quiet build-addon.log npx node-gyp rebuild
fi

# --- the bundles and types ------------------------------------------------------------
if newer dist/master.js src package.json build.sh; then
  say "esbuild dist/"
  # The bundles keep their names whatever room their source sits in: users type dist/master.js.
  # dist/internal.js is for the tests and the bench only (not in package.json's exports).
  # One build with code splitting: what several bundles share (the library, which the command,
  # index.js, the hub and the workers all hold) is one chunk file in dist/, not a copy in each
  # (the packed tarball was 217 KB with a copy in each, 163 KB split). A chunk is named by its
  # content, so the old ones go first.
  rm -f dist/chunk-*.js
  npx esbuild thread-worker=src/threads/worker.ts worker=src/mpi/stage/worker.ts hub=src/mpi/hub/hub.ts \
    checkpoint-writer=src/checkpoint/writer-thread.ts index=src/index.ts internal=src/internal.ts master=src/cli/master.ts \
    --bundle --splitting '--chunk-names=chunk-[hash]' --external:esbuild --platform=node --target=node20 --format=esm \
    --outdir=dist --log-level=warning
  # The command (package.json "bin", npx commloop) runs this file directly; it alone gets the #! line.
  sed -i '1i #!/usr/bin/env node' dist/master.js
  chmod +x dist/master.js
fi
if newer dist/types/index.d.ts src tsconfig.json; then
  say "tsc (type check and .d.ts)"
  npx tsc -p .
fi
