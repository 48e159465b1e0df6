// Which hardware path the kernels take: the one place that decides between the Hopper-only choices
// (the sm_90a wgmma kernels of sm90a/, programmatic dependent launch, bulk L2 prefetches) and their
// portable counterparts. A cuda::Context computes it once (segments/cuda/device.h) and every kernel
// wrapper with a Hopper-only variant takes it as a parameter.
#pragma once

namespace segpipe {
// segments/core/segment_types.h (C++20, which the CUDA translation units, built as C++17, cannot
// include).
enum class GpuKernels;
}  // namespace segpipe

namespace segpipe::cuda {

struct KernelPath {
  bool wgmma = false;        // the wgmma kernels (grouped expert GEMMs, flash prefill attention)
  bool pdl = false;          // programmatic dependent launch of the decode kernels (launch.cuh)
  bool l2_prefetch = false;  // cp.async.bulk.prefetch.L2 of later kernels' weights (common.cuh)
};

// wgmma: compute capability exactly 9.0 (H100, H200), where the sm_90a machine code runs and nowhere
// else; pdl and the bulk L2 prefetch: 9.0 and later. GpuKernels::portable turns all three off: the
// path an Ampere or Ada GPU takes, on any device.
KernelPath select_kernel_path(int device, GpuKernels choice);

}  // namespace segpipe::cuda
