{
  # with_mpi=0 (scripts/install.mjs passes it when Open MPI's headers are missing) builds
  # only the kernel addon: the MPI target's mpicc commands are then never run.
  "variables": { "with_mpi%": "1" },
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
    }]
  ]
}
