#include "segments/kernels/cuda/check.h"
#include "segments/kernels/cuda/common.cuh"
#include "segments/kernels/cuda/embed.cuh"

namespace segpipe::cuda {

namespace {

template <typename W>
__global__ void embed_kernel(const int32_t* __restrict__ ids, const W* __restrict__ table, int64_t rows, int64_t H,
                             float* __restrict__ out) {
  const int64_t t = blockIdx.x;
  const int64_t id = ids[t];
  if (id < 0 || id >= rows) {
    for (int64_t c = threadIdx.x; c < H; c += blockDim.x) out[t * H + c] = __int_as_float(0x7fc00000);  // NaN
    return;
  }
  const W* row = table + id * H;
  for (int64_t c = threadIdx.x; c < H; c += blockDim.x) out[t * H + c] = to_f(row[c]);
}

}  // namespace

void embed_gather(const int32_t* ids, int64_t T, const void* table, DType dt, int64_t rows, int64_t H, float* out,
                  cudaStream_t s) {
  if (T == 0) return;
  SEGPIPE_DISPATCH_FB(dt, W, embed_kernel<W><<<static_cast<unsigned>(T), 256, 0, s>>>(ids, static_cast<const W*>(table), rows, H, out));
  SEGPIPE_CUDA_LAUNCH_CHECK("embed_kernel");
}

}  // namespace segpipe::cuda
