#!/usr/bin/env bash
# Installs what is missing, then builds what is out of date: the WASM kernel, the
# native addon, the bundles in dist/ and their .d.ts types. Quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")"

say() { printf 'build.sh: %s\n' "$*" >&2; }

# --- system packages (Debian/Ubuntu) -------------------------------------------
missing=()
command -v emcc >/dev/null 2>&1 || missing+=(emscripten)
command -v mpicc.openmpi >/dev/null 2>&1 || missing+=(openmpi-bin libopenmpi-dev)
# The benchmark's mpi4py peer runs on Debian's python3, not whatever python3 is first on PATH.
/usr/bin/python3 -c 'import mpi4py, numpy' >/dev/null 2>&1 || missing+=(python3-mpi4py python3-numpy)
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2
    apt-get install -y -q "${missing[@]}" >&2
  else
    say "missing ${missing[*]}; install them with: sudo apt-get install -y ${missing[*]}"
    exit 1
  fi
fi

# --- npm packages -----------------------------------------------------------------
if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then
  say "npm ci"
  npm ci --no-audit --no-fund >&2
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
if newer "$wasm" wasm/commloop_kernel.c wasm/commloop_kernel.h build.sh; then
  say "emcc $wasm"
  emcc -O3 -msimd128 -matomics -mbulk-memory -ffp-contract=off --no-entry \
    -sSTANDALONE_WASM -sIMPORTED_MEMORY -sALLOW_MEMORY_GROWTH \
    -sTOTAL_STACK=65536 -sINITIAL_MEMORY=1MB -sMAXIMUM_MEMORY=4GB \
    -Wl,--shared-memory -Wl,--export=__heap_base \
    -sEXPORTED_FUNCTIONS=_commloop_sum,_commloop_halfmean,_commloop_halffirst \
    wasm/commloop_kernel.c -o "$wasm"
fi

# --- the native C stage (MPI) -------------------------------------------------------
worker=dist/commloop_c_worker
if newer "$worker" transport/c_worker.c include/commloop_stage.h wasm/commloop_kernel.c wasm/commloop_kernel.h; then
  say "mpicc $worker"
  mpicc.openmpi -O3 -ffp-contract=off -Wall -Wextra -Iinclude -o "$worker" transport/c_worker.c wasm/commloop_kernel.c
fi

# --- the benchmark's C floor: the same ring, every process in C -----------------
floor=dist/commloop_c_floor
if newer "$floor" bench/c_floor.c; then
  say "mpicc $floor"
  mpicc.openmpi -O3 -ffp-contract=off -Wall -Wextra -o "$floor" bench/c_floor.c
fi

# --- the native addons: the kernel (no MPI) and the MPI transport -------------------
if newer build/Release/commloop_kernel.node binding.gyp transport wasm ||
  newer build/Release/commloop_mpi.node binding.gyp transport; then
  say "node-gyp rebuild"
  if ! npx node-gyp rebuild >build-addon.log 2>&1; then
    cat build-addon.log >&2
    exit 1
  fi
fi

# --- the bundles and types ------------------------------------------------------------
if newer dist/master.js src package.json build.sh; then
  say "esbuild dist/"
  # The bundles keep their names whatever room their source sits in: users type dist/master.js.
  npx esbuild master=src/cli/master.ts thread-worker=src/threads/worker.ts worker=src/mpi/worker.ts index=src/index.ts \
    --bundle --external:esbuild --platform=node --target=node20 --format=esm --outdir=dist \
    --log-level=warning
fi
if newer dist/types/index.d.ts src tsconfig.json; then
  say "tsc (type check and .d.ts)"
  npx tsc -p .
fi
