// Read-bandwidth ceilings (read_ceiling.h). Benchmark-only kernels: each lane sums what it reads
// into one float per warp so that the loads are not optimized away.
#include <algorithm>
#include <cstdint>

#include "segments/cuda/device.h"
#include "segments/kernels/cuda/bulk_copy.cuh"
#include "segments/kernels/cuda/check.h"
#include "segments/kernels/cuda/common.cuh"
#include "tools/cuda/read_ceiling.h"

namespace segpipe::benchtools {

namespace {

using cuda::bf16;
constexpr int kRow = 4096;                 // bytes a row
constexpr int kRowChunks = kRow / 16 / 32;  // 16-byte chunks a lane holds per row (8)

struct Regions {
  const char* base[16];
  int n;
  int rows;  // rows per region
};

__device__ __forceinline__ const char* row_ptr(const Regions& r, int64_t t) {
  const int reg = int(t / r.rows), row = int(t - int64_t(reg) * r.rows);
  return r.base[reg] + int64_t(row) * kRow;
}

__device__ __forceinline__ float sum16(const uint4& u) {
  float v[8];
  cuda::bf16x8_to_float(u, v);
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < 8; i++) s += v[i];
  return s;
}

// Registers: each warp holds one row (8 x 16 bytes per lane) and issues the next row's loads before
// it reduces the current one (the decode GEMVs' scheme).
__global__ void __launch_bounds__(256, 2) read_regs_kernel(Regions r, float* out) {
  const int lane = threadIdx.x % 32;
  const int64_t W = int64_t(gridDim.x) * 8, total = int64_t(r.n) * r.rows;
  int64_t t = int64_t(blockIdx.x) * 8 + threadIdx.x / 32;
  uint4 a[kRowChunks], b[kRowChunks];
  float acc = 0.f;
  auto load = [&](int64_t tt, uint4 (&d)[kRowChunks]) {
    const uint4* p = reinterpret_cast<const uint4*>(row_ptr(r, tt)) + lane;
#pragma unroll
    for (int c = 0; c < kRowChunks; c++) d[c] = __ldcs(p + c * 32);
  };
  if (t < total) load(t, a);
  while (t < total) {
    if (t + W < total) load(t + W, b);
#pragma unroll
    for (int c = 0; c < kRowChunks; c++) acc += sum16(a[c]);
    t += W;
    if (t >= total) break;
    if (t + W < total) load(t + W, a);
#pragma unroll
    for (int c = 0; c < kRowChunks; c++) acc += sum16(b[c]);
    t += W;
  }
  acc = cuda::warp_sum(acc);
  if (lane == 0) out[blockIdx.x * 8 + threadIdx.x / 32] = acc;
}

// Bulk copies: lane 0 of each warp keeps S rows of its own in flight in shared memory.
template <int S>
__global__ void __launch_bounds__(512, 1) read_bulk_kernel(Regions r, float* out) {
  extern __shared__ __align__(128) unsigned char ring[];
  __shared__ uint64_t bars[16][S];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t W = int64_t(gridDim.x) * 16, total = int64_t(r.n) * r.rows;
  const int64_t t0 = int64_t(blockIdx.x) * 16 + warp;
  const int64_t mine = t0 < total ? (total - 1 - t0) / W + 1 : 0;
  unsigned char* my = ring + size_t(warp) * S * kRow;
  if (lane == 0) {
    for (int q = 0; q < S; q++) cuda::mbar_init(&bars[warp][q], 1);
    cuda::mbar_init_fence();
  }
  __syncwarp();
  int64_t issued = 0;
  auto issue = [&]() {
    uint64_t* bar = &bars[warp][issued % S];
    if (issued < mine) {
      cuda::mbar_arrive_tx(bar, kRow);
      cuda::bulk_load(my + size_t(issued % S) * kRow, row_ptr(r, t0 + issued * W), kRow, bar);
    } else {
      cuda::mbar_arrive(bar);
    }
    issued++;
  };
  if (lane == 0)
    for (int q = 0; q < S; q++) issue();
  float acc = 0.f;
  for (int64_t n = 0; n < mine + S; n++) {  // S more: the trailing arrivals, so nothing is in flight at exit
    cuda::mbar_wait(&bars[warp][n % S], uint32_t(n / S) & 1u);
    if (n < mine) {
      const uint4* p = reinterpret_cast<const uint4*>(my + size_t(n % S) * kRow) + lane;
#pragma unroll
      for (int c = 0; c < kRowChunks; c++) acc += sum16(p[c * 32]);
      __syncwarp();
      if (lane == 0) issue();
    }
  }
  acc = cuda::warp_sum(acc);
  if (lane == 0) out[blockIdx.x * 16 + warp] = acc;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <typename F>
double time_us(cudaStream_t s, F&& f) {
  cudaEvent_t e0, e1;
  SEGPIPE_CUDA_CHECK(cudaEventCreate(&e0));
  SEGPIPE_CUDA_CHECK(cudaEventCreate(&e1));
  std::vector<double> t;
  for (int i = 0; i < 24; i++) {
    SEGPIPE_CUDA_CHECK(cudaEventRecord(e0, s));
    f(i);
    SEGPIPE_CUDA_CHECK(cudaEventRecord(e1, s));
    SEGPIPE_CUDA_CHECK(cudaEventSynchronize(e1));
    float ms;
    SEGPIPE_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    if (i >= 4) t.push_back(double(ms) * 1000.0);
  }
  SEGPIPE_CUDA_CHECK(cudaEventDestroy(e0));
  SEGPIPE_CUDA_CHECK(cudaEventDestroy(e1));
  return median(t);
}

}  // namespace

std::vector<ReadCeiling> read_ceilings(int regions, size_t region_bytes, size_t expert_stride, int experts) {
  SEGPIPE_ASSERT(regions >= 1 && regions <= 16 && region_bytes % kRow == 0 && expert_stride >= region_bytes);
  cuda::Context ctx(0);
  cudaStream_t s = ctx.stream();
  // Two layers' worth of experts, used alternately (each pass reads data the one before did not).
  const size_t layer = expert_stride * size_t(experts);
  cuda::Buffer<char> buf(2 * layer), dst(size_t(regions) * region_bytes);
  SEGPIPE_CUDA_CHECK(cudaMemsetAsync(buf.get(), 1, buf.bytes(), s));
  int sms = 0;
  SEGPIPE_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  cuda::Buffer<float> out(size_t(sms) * 16);
  Regions rg[2][2];  // [layer][spread: experts far apart / one contiguous piece]
  for (int l = 0; l < 2; l++) {
    for (int sp = 0; sp < 2; sp++) {
      rg[l][sp].n = regions;
      rg[l][sp].rows = int(region_bytes / kRow);
      for (int i = 0; i < regions; i++) {
        const size_t e = sp == 0 ? size_t((i * 37 + 11) % experts) : size_t(i);
        rg[l][sp].base[i] = buf.get() + size_t(l) * layer + (sp == 0 ? e * expert_stride : e * region_bytes);
      }
    }
  }
  const double bytes = double(regions) * double(region_bytes);
  std::vector<ReadCeiling> res;
  auto add = [&](const char* m, double us) { res.push_back({m, us, bytes / (us * 1e-6) / 1e9}); };
  add("cudaMemcpy (read + write counted)", time_us(s, [&](int i) {
        SEGPIPE_CUDA_CHECK(cudaMemcpyAsync(dst.get(), buf.get() + size_t(i % 2) * layer, size_t(bytes / 2),
                                           cudaMemcpyDeviceToDevice, s));
      }));
  int per = 0;
  SEGPIPE_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per, read_regs_kernel, 256, 0));
  for (int sp = 0; sp < 2; sp++)
    add(sp == 0 ? "registers, 8 experts" : "registers, one contiguous piece", time_us(s, [&](int i) {
          read_regs_kernel<<<sms * per, 256, 0, s>>>(rg[i % 2][sp], out.get());
          SEGPIPE_CUDA_LAUNCH_CHECK("read_regs_kernel");
        }));
  const size_t smem = size_t(16) * 3 * kRow;
  SEGPIPE_CUDA_CHECK(
      cudaFuncSetAttribute(read_bulk_kernel<3>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  for (int sp = 0; sp < 2; sp++)
    add(sp == 0 ? "bulk copies, 8 experts" : "bulk copies, one contiguous piece", time_us(s, [&](int i) {
          read_bulk_kernel<3><<<sms, 512, smem, s>>>(rg[i % 2][sp], out.get());
          SEGPIPE_CUDA_LAUNCH_CHECK("read_bulk_kernel");
        }));
  ctx.sync();
  return res;
}

}  // namespace segpipe::benchtools
