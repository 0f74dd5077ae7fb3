{
  "targets": [
    {
      "target_name": "plsc_native",
      "sources": ["src/core.cc", "src/c10d.cc", "src/lifeline.cc", "src/store-bind.cc", "src/store.cc", "src/head_kernels.cc", "src/head_kernels_napi.cc"],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<!@(node torch-config.cjs --includes)"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "<!@(node torch-config.cjs --defines)"],
      "cflags!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++14"],
      # -fopenmp: at::parallel_for's OpenMP body is compiled into the addon (the head's kernels); without
      # it every kernel runs on the calling thread. Not linked: GOMP_* resolve to the libgomp libtorch loads.
      "cflags_cc": ["-std=c++17", "-fexceptions", "-frtti", "-O2", "-fopenmp", "-Wno-unused-parameter", "-Wno-deprecated-declarations"],
      "libraries": ["<!@(node torch-config.cjs --libs)", "-ldl"]
    }
  ]
}
