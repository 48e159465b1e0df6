// The GPU test binaries' --gpu-kernels=auto|portable: which kernel path (segments/kernels/cuda/
// device_caps.h) every Context and CudaRunnerOptions a test creates takes, so that a Hopper card can
// check the portable path an Ampere or Ada GPU runs. Read in each test's main, never in the product.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <string>

#include "segments/core/segment_types.h"

namespace segpipe::gputest {

// Takes --gpu-kernels=V out of argv (the other arguments keep their order) and returns V; auto where
// the flag is absent. Exits 2 on a value other than auto or portable.
inline GpuKernels take_gpu_kernels_arg(int& argc, char** argv) {
  const std::string flag = "--gpu-kernels=";
  GpuKernels k = GpuKernels::automatic;
  int out = 1;
  for (int i = 1; i < argc; i++) {
    const std::string a = argv[i];
    if (a.rfind(flag, 0) != 0) {
      argv[out++] = argv[i];
      continue;
    }
    const auto v = parse_gpu_kernels(a.substr(flag.size()));
    if (!v) {
      std::fprintf(stderr, "%s: expected --gpu-kernels=auto or --gpu-kernels=portable\n", a.c_str());
      std::exit(2);
    }
    k = *v;
  }
  argc = out;
  argv[argc] = nullptr;
  return k;
}

}  // namespace segpipe::gputest
