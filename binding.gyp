{
  # with_mpi=0 (scripts/install.mjs passes it when Open MPI's headers are missing) builds
  # only the kernel addon: the MPI target's mpicc commands are then never run. The MPI addon
  # is built once for each MPI found (src/mpi/impl/): with_mpich (default: whether
  # mpicc.mpich is on PATH) adds MPICH's, the same source against MPICH's headers and library.
  "variables": {
    "with_mpi%": "1",
    "with_mpich%": "<!(command -v mpicc.mpich >/dev/null 2>&1 && echo 1 || echo 0)"
  },
  "target_defaults": {
    "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
    "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
    "cflags!": ["-fno-exceptions"],
    "cflags_cc!": ["-fno-exceptions"],
    "cflags": ["-O3", "-ffp-contract=off"],
    "cflags_cc": ["-O3", "-ffp-contract=off", "-fexceptions"]
  },
  "targets": [
    {
      "target_name": "commloop_kernel",
      "sources": ["transport/kernel_addon.cc", "wasm/commloop_kernel.c"]
    }
  ],
  "conditions": [
    ["with_mpi==1", {
      "targets": [
        {
          "target_name": "commloop_mpi",
          "sources": ["transport/mpi_addon.cc"],
          "defines": ["OMPI_SKIP_MPICXX=1"],
          "cflags_cc": ["<!@(mpicc.openmpi --showme:compile)"],
          "libraries": ["<!@(mpicc.openmpi --showme:link)"]
        }
      ]
    }],
    ["with_mpich==1", {
      "targets": [
        {
          "target_name": "commloop_mpi_mpich",
          "sources": ["transport/mpi_addon.cc"],
          # mpicc.mpich -compile_info prints "gcc FLAGS...": the flags without the compiler.
          "cflags_cc": ["<!@(mpicc.mpich -compile_info | cut -d' ' -f2-)"],
          "libraries": ["<!@(mpicc.mpich -link_info | cut -d' ' -f2-)"]
        }
      ]
    }]
  ]
}
