// L2 residency probe (l2_probe.h). Benchmark-only kernels.
#include <algorithm>
#include <cstdint>

#include "segments/cuda/device.h"
#include "segments/kernels/cuda/check.h"
#include "segments/kernels/cuda/common.cuh"
#include "segments/kernels/cuda/gemv.cuh"
#include "segments/kernels/cuda/launch.cuh"
#include "segments/kernels/cuda/moe.cuh"
#include "tools/cuda/l2_probe.h"

namespace segpipe::benchtools {

namespace {

using cuda::bf16;

// Reads [p, p + bytes) once with 16-byte loads (evict-first with `stream`, ordinary otherwise), so
// that the bytes cannot be optimized away the sum goes to out.
__global__ void read_kernel(const uint4* __restrict__ p, uint64_t n16, bool stream, unsigned* out) {
  unsigned acc = 0;
  for (uint64_t i = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n16; i += uint64_t(gridDim.x) * blockDim.x) {
    const uint4 u = stream ? __ldcs(p + i) : p[i];
    acc ^= u.x ^ u.y ^ u.z ^ u.w;
  }
  if (acc == 0x9e3779b9u) *out = acc;  // practically never; keeps the loads
}

// Each block asks L2 for its share of [p, p + bytes) (bytes may carry kL2KeepBit).
__global__ void prefetch_kernel(const void* p, uint64_t bytes) {
  cuda::prefetch_l2_share(p, bytes, blockIdx.x, gridDim.x);
}

// Spins `ns` nanoseconds (the bulk prefetches run on meanwhile).
__global__ void spin_kernel(uint64_t ns) {
  uint64_t t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t)); while (t - t0 < ns);
}

// Nothing but the programmatic-launch handshake: the floor of a kernel in a chain of them.
__global__ void empty_kernel() {
  cuda::pdl_wait();
  cuda::pdl_trigger();
}

// A read kernel in a chain handed off three ways (kSync): 0 an ordinary launch (the next starts once
// this one has completed); 1 programmatic launch, griddepcontrol.wait before the reads; 2 programmatic
// launch, the reads start once every block of the previous kernel has added 1 to its counter (`prev`
// reaching prev_target, an acquire load by one thread a block), and each block adds 1 to `mine` (a
// release) once its reads are done: the hand-off without the grid-completion handshake.
__device__ __forceinline__ unsigned ld_acquire(const unsigned* p) {
  unsigned v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ void red_release_add(unsigned* p, unsigned v) {
  asm volatile("red.release.gpu.global.add.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
template <int kSync>
__global__ void handoff_read_kernel(const uint4* __restrict__ p, uint64_t n16, const unsigned* prev,
                                    unsigned prev_target, unsigned* mine, unsigned* out) {
  if constexpr (kSync == 1) {
    cuda::pdl_wait();
    cuda::pdl_trigger();
  } else if constexpr (kSync == 2) {
    cuda::pdl_trigger();
    if (prev && threadIdx.x == 0)
      while (ld_acquire(prev) < prev_target) {
      }
    __syncthreads();
  }
  unsigned acc = 0;
  for (uint64_t i = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n16; i += uint64_t(gridDim.x) * blockDim.x) {
    const uint4 u = __ldcs(p + i);
    acc ^= u.x ^ u.y ^ u.z ^ u.w;
  }
  if (acc == 0x9e3779b9u) *out = acc;
  if constexpr (kSync == 2) {
    __syncthreads();
    if (threadIdx.x == 0) red_release_add(mine, 1);
    cuda::pdl_wait();  // completion stays in stream order
  }
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

std::vector<L2Probe> l2_probe(const cuda::KernelPath& path, int64_t rows, int64_t cols, int64_t rows2, int64_t cols2,
                              uint64_t stream_bytes, int64_t vocab, int moe_k, int64_t moe_inter) {
  cudaStream_t s;
  SEGPIPE_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  const uint64_t wbytes = uint64_t(rows * cols) * 2, wbytes2 = uint64_t(rows2 * cols2) * 2;
  const uint64_t flush_bytes = uint64_t(512) << 20;
  cuda::Buffer<bf16> w{size_t(rows * cols)}, w2{size_t(rows2 * cols2)};
  cuda::Buffer<uint4> stream_buf{stream_bytes / 16}, flush{flush_bytes / 16};
  cuda::Buffer<float> x{size_t(std::max(cols, cols2))}, nw{size_t(cols)}, y{size_t(rows)}, y2{size_t(rows2)};
  cuda::Buffer<unsigned> sink{1};
  SEGPIPE_CUDA_CHECK(cudaMemsetAsync(w.get(), 0x3c, wbytes, s));  // bf16 1.0-ish patterns: finite
  SEGPIPE_CUDA_CHECK(cudaMemsetAsync(w2.get(), 0x3c, wbytes2, s));
  SEGPIPE_CUDA_CHECK(cudaMemsetAsync(stream_buf.get(), 1, stream_bytes, s));
  SEGPIPE_CUDA_CHECK(cudaMemsetAsync(flush.get(), 2, flush_bytes, s));
  SEGPIPE_CUDA_CHECK(cudaMemsetAsync(x.get(), 0, x.bytes(), s));
  SEGPIPE_CUDA_CHECK(cudaMemsetAsync(nw.get(), 0, nw.bytes(), s));
  int sms = 0, dev = 0;
  SEGPIPE_CUDA_CHECK(cudaGetDevice(&dev));
  SEGPIPE_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  cudaEvent_t e0, e1, e2;
  SEGPIPE_CUDA_CHECK(cudaEventCreate(&e0));
  SEGPIPE_CUDA_CHECK(cudaEventCreate(&e1));
  SEGPIPE_CUDA_CHECK(cudaEventCreate(&e2));

  auto read = [&](const uint4* p, uint64_t bytes, bool stream) {
    read_kernel<<<sms * 4, 512, 0, s>>>(p, bytes / 16, stream, sink.get());
    SEGPIPE_CUDA_LAUNCH_CHECK("read_kernel");
  };
  auto prefetch = [&](const void* p, uint64_t bytes, bool keep) {
    prefetch_kernel<<<sms, 32, 0, s>>>(p, cuda::l2_request(bytes, keep));
    SEGPIPE_CUDA_LAUNCH_CHECK("prefetch_kernel");
  };
  auto spin = [&] {
    spin_kernel<<<1, 32, 0, s>>>(40000);
    SEGPIPE_CUDA_LAUNCH_CHECK("spin_kernel");
  };
  auto qkv = [&] {
    cuda::gemv_rmsnorm(x.get(), nw.get(), 1e-6f, w.get(), DType::BF16, rows, cols, y.get(), false, nullptr, path,
                       s);
  };
  auto oproj = [&] { cuda::gemv(x.get(), DType::F32, w2.get(), DType::BF16, rows2, cols2, y2.get(), true, path, s); };

  // setup(): what happens before the timed product(s); two: also time the o_proj product after it.
  auto run = [&](const std::string& name, auto setup, bool two) {
    std::vector<double> t, t2;
    for (int i = 0; i < 16; i++) {
      SEGPIPE_CUDA_CHECK(cudaCtxResetPersistingL2Cache());
      read(flush.get(), flush_bytes, false);  // a known, cold L2
      setup();
      SEGPIPE_CUDA_CHECK(cudaEventRecord(e0, s));
      qkv();
      SEGPIPE_CUDA_CHECK(cudaEventRecord(e1, s));
      if (two) {
        oproj();
        SEGPIPE_CUDA_CHECK(cudaEventRecord(e2, s));
      }
      SEGPIPE_CUDA_CHECK(cudaStreamSynchronize(s));
      float ms = 0;
      SEGPIPE_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
      if (i >= 2) t.push_back(double(ms) * 1e3);
      if (two) {
        SEGPIPE_CUDA_CHECK(cudaEventElapsedTime(&ms, e1, e2));
        if (i >= 2) t2.push_back(double(ms) * 1e3);
      }
    }
    L2Probe r;
    r.scenario = name;
    r.us = median(t);
    r.gbs = double(wbytes) / (r.us * 1e3);
    r.us2 = two ? median(t2) : 0;
    return r;
  };

  std::vector<L2Probe> out;
  int max_keep = 0;
  SEGPIPE_CUDA_CHECK(cudaDeviceGetAttribute(&max_keep, cudaDevAttrMaxPersistingL2CacheSize, dev));
  for (const uint64_t aside : {uint64_t(0), uint64_t(max_keep)}) {
    const uint64_t got = cuda::l2_set_aside(aside);
    const std::string tag = " [set aside " + std::to_string(got >> 20) + " MiB]";
    out.push_back(run("cold" + tag, [] {}, true));
    out.push_back(run("warm (the product just before)" + tag, [&] { qkv(); }, false));
    out.push_back(run("warm, then the expert stream" + tag, [&] { qkv(); read(stream_buf.get(), stream_bytes, true); },
                      false));
    for (const bool keep : {false, true}) {
      const std::string k = keep ? "kept" : "ordinary";
      out.push_back(run("prefetch " + k + ", 40 us idle" + tag, [&] { prefetch(w.get(), wbytes, keep); spin(); },
                        false));
      out.push_back(run("prefetch " + k + ", expert stream" + tag,
                        [&] { prefetch(w.get(), wbytes, keep); spin(); read(stream_buf.get(), stream_bytes, true); },
                        false));
      out.push_back(run("prefetch q/k/v + o " + k + ", expert stream" + tag,
                        [&] {
                          prefetch(w.get(), wbytes, keep);
                          prefetch(w2.get(), wbytes2, keep);
                          spin();
                          read(stream_buf.get(), stream_bytes, true);
                        },
                        true));
    }
  }
  cuda::l2_set_aside(0);

  // Back to back, as in the decode graph: n launches captured in a graph, time per launch. Distinct
  // matrices (n x the bytes, far beyond L2) or the same one (L2-resident after the first).
  constexpr int n = 20;
  cuda::Buffer<bf16> many{size_t(n) * size_t(rows * cols)};
  SEGPIPE_CUDA_CHECK(cudaMemsetAsync(many.get(), 0x3c, many.bytes(), s));
  auto chain = [&](const std::string& name, auto body, uint64_t bytes) {
    cudaGraph_t g;
    cudaGraphExec_t ge;
    SEGPIPE_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < n; i++) body(i);
    SEGPIPE_CUDA_CHECK(cudaStreamEndCapture(s, &g));
    SEGPIPE_CUDA_CHECK(cudaGraphInstantiate(&ge, g, 0));
    std::vector<double> t;
    for (int i = 0; i < 8; i++) {
      read(flush.get(), flush_bytes, false);
      SEGPIPE_CUDA_CHECK(cudaEventRecord(e0, s));
      SEGPIPE_CUDA_CHECK(cudaGraphLaunch(ge, s));
      SEGPIPE_CUDA_CHECK(cudaEventRecord(e1, s));
      SEGPIPE_CUDA_CHECK(cudaStreamSynchronize(s));
      float ms = 0;
      SEGPIPE_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
      if (i >= 2) t.push_back(double(ms) * 1e3 / n);
    }
    SEGPIPE_CUDA_CHECK(cudaGraphExecDestroy(ge));
    SEGPIPE_CUDA_CHECK(cudaGraphDestroy(g));
    L2Probe r;
    r.scenario = name;
    r.us = median(t);
    r.gbs = bytes ? double(bytes) / (r.us * 1e3) : 0;
    out.push_back(r);
  };
  const uint64_t mb = uint64_t(rows * cols);
  chain("chain: empty kernels (programmatic launch)", [&](int) {
    SEGPIPE_CUDA_CHECK(cuda::launch_pdl(true, empty_kernel, dim3(sms * 2), dim3(256), 0, s));
  }, 0);
  {
    // Kernel hand-offs: ordinary launch / programmatic launch + wait / block counters (kSync above),
    // empty (n16 = 0) and reading the q/k/v bytes. The counters are cleared by a memset node at the
    // head of each graph.
    cuda::Buffer<unsigned> ctr{size_t(n)};
    const unsigned g_empty = unsigned(sms) * 2, g_read = unsigned(sms) * 2;  // room left for the next kernel's blocks
    for (const bool reads : {false, true}) {
      const unsigned grid = reads ? g_read : g_empty, threads = reads ? 512 : 256;
      const uint64_t n16 = reads ? wbytes / 16 : 0;
      const std::string what = reads ? "plain reads of the q/k/v bytes, distinct" : "empty kernels";
      const char* how[3] = {"ordinary launch", "programmatic launch + wait", "block counters"};
      for (int sync = 0; sync < 3; sync++) {
        chain("chain: " + what + ", " + how[sync], [&](int i) {
          if (i == 0) SEGPIPE_CUDA_CHECK(cudaMemsetAsync(ctr.get(), 0, ctr.bytes(), s));
          const uint4* p = reinterpret_cast<const uint4*>(many.get() + i * mb);
          const unsigned* prev = i > 0 ? ctr.get() + i - 1 : nullptr;
          if (sync == 0) {
            handoff_read_kernel<0><<<grid, threads, 0, s>>>(p, n16, prev, grid, ctr.get() + i, sink.get());
            SEGPIPE_CUDA_LAUNCH_CHECK("handoff_read_kernel");
          } else if (sync == 1) {
            SEGPIPE_CUDA_CHECK(cuda::launch_pdl(true, handoff_read_kernel<1>, dim3(grid), dim3(threads), 0, s, p, n16, prev,
                                                grid, ctr.get() + i, sink.get()));
          } else {
            SEGPIPE_CUDA_CHECK(cuda::launch_pdl(true, handoff_read_kernel<2>, dim3(grid), dim3(threads), 0, s, p, n16, prev,
                                                grid, ctr.get() + i, sink.get()));
          }
        }, reads ? wbytes : 0);
      }
    }
  }
  chain("chain: q/k/v + RMSNorm, one matrix (L2)", [&](int) { qkv(); }, wbytes);
  chain("chain: q/k/v + RMSNorm, distinct matrices", [&](int i) {
    cuda::gemv_rmsnorm(x.get(), nw.get(), 1e-6f, many.get() + i * mb, DType::BF16, rows, cols, y.get(), false, nullptr,
                       path, s);
  }, wbytes);
  chain("chain: q/k/v rows without RMSNorm, distinct", [&](int i) {
    cuda::gemv(x.get(), DType::F32, many.get() + i * mb, DType::BF16, rows, cols, y.get(), false, path, s);
  }, wbytes);
  const int64_t rows_w = int64_t(sms) * 16;  // one row a warp
  chain("chain: " + std::to_string(rows_w) + " rows (one a warp) + RMSNorm, distinct", [&](int i) {
    cuda::gemv_rmsnorm(x.get(), nw.get(), 1e-6f, many.get() + i * mb, DType::BF16, rows_w, cols, y.get(), false,
                       nullptr, path, s);
  }, uint64_t(rows_w * cols) * 2);
  chain("chain: o_proj shape, distinct", [&](int i) {
    cuda::gemv(x.get(), DType::F32, many.get() + i * mb, DType::BF16, rows2, cols2, y2.get(), true, path, s);
  }, wbytes2);
  chain("chain: plain 16-byte reads of the q/k/v bytes, distinct", [&](int i) {
    read(reinterpret_cast<const uint4*>(many.get() + i * mb), wbytes, true);
  }, wbytes);
  if (moe_k > 0 && moe_inter > 0 && cuda::moe_down_combine_fits(moe_k)) {
    // n layers of moe_k experts each (expert ids 0..k-1 of a k-expert bank: the same bytes a layer
    // reads when it chooses k of many)
    const int64_t H = cols, I = moe_inter;
    const uint64_t per_layer = uint64_t(moe_k) * uint64_t(3 * I * H) * 2;
    cuda::Buffer<bf16> gu{size_t(n) * size_t(moe_k) * size_t(2 * I * H)}, dn{size_t(n) * size_t(moe_k) * size_t(I * H)};
    cuda::Buffer<bf16> hx{size_t(H)}, act{size_t(moe_k) * size_t(I)};
    cuda::Buffer<int32_t> ids{size_t(moe_k)};
    cuda::Buffer<float> wts{size_t(moe_k)}, xo{size_t(H)};
    SEGPIPE_CUDA_CHECK(cudaMemsetAsync(gu.get(), 0x3c, gu.bytes(), s));
    SEGPIPE_CUDA_CHECK(cudaMemsetAsync(dn.get(), 0x3c, dn.bytes(), s));
    SEGPIPE_CUDA_CHECK(cudaMemsetAsync(hx.get(), 0, hx.bytes(), s));
    SEGPIPE_CUDA_CHECK(cudaMemsetAsync(wts.get(), 0, wts.bytes(), s));
    SEGPIPE_CUDA_CHECK(cudaMemsetAsync(xo.get(), 0, xo.bytes(), s));
    std::vector<int32_t> hid(static_cast<size_t>(moe_k));
    for (int i = 0; i < moe_k; i++) hid[size_t(i)] = i;
    SEGPIPE_CUDA_CHECK(cudaMemcpyAsync(ids.get(), hid.data(), hid.size() * 4, cudaMemcpyHostToDevice, s));
    const size_t gstride = size_t(moe_k) * size_t(2 * I * H), dstride = size_t(moe_k) * size_t(I * H);
    chain("chain: expert layers, gate/up + down-combine (" + std::to_string(moe_k) + " experts)", [&](int i) {
      cuda::moe_gate_up_gemv(hx.get(), moe_k, moe_k, ids.get(), 0, moe_k - 1, gu.get() + i * gstride, DType::BF16, I,
                             H, act.get(), path, s);
      cuda::moe_down_combine(act.get(), moe_k, ids.get(), wts.get(), dn.get() + i * dstride, DType::BF16, I, H,
                             xo.get(), path, s);
    }, per_layer);
    chain("chain: expert layers, gate/up only", [&](int i) {
      cuda::moe_gate_up_gemv(hx.get(), moe_k, moe_k, ids.get(), 0, moe_k - 1, gu.get() + i * gstride, DType::BF16, I,
                             H, act.get(), path, s);
    }, per_layer * 2 / 3);
    chain("chain: plain reads of each layer's expert bytes (gate/up, then down)", [&](int i) {
      read(reinterpret_cast<const uint4*>(gu.get() + i * gstride), per_layer * 2 / 3, true);
      read(reinterpret_cast<const uint4*>(dn.get() + i * dstride), per_layer / 3, true);
    }, per_layer);
  }
  if (vocab > 0) {
    // The vocabulary product alone (events around it, median of 10): far beyond L2, its rate is the
    // sustained one; beside it a plain read and a copy of the same bytes.
    const uint64_t vb = uint64_t(vocab * cols) * 2;
    cuda::Buffer<bf16> big{size_t(vocab * cols)};
    cuda::Buffer<float> yv{size_t(vocab)};
    cuda::Buffer<char> dst{size_t(vb)};
    SEGPIPE_CUDA_CHECK(cudaMemsetAsync(big.get(), 0x3c, vb, s));
    auto alone = [&](const std::string& name, auto body, uint64_t bytes) {
      std::vector<double> t;
      for (int i = 0; i < 12; i++) {
        SEGPIPE_CUDA_CHECK(cudaEventRecord(e0, s));
        body();
        SEGPIPE_CUDA_CHECK(cudaEventRecord(e1, s));
        SEGPIPE_CUDA_CHECK(cudaStreamSynchronize(s));
        float ms = 0;
        SEGPIPE_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
        if (i >= 2) t.push_back(double(ms) * 1e3);
      }
      L2Probe r;
      r.scenario = name;
      r.us = median(t);
      r.gbs = double(bytes) / (r.us * 1e3);
      out.push_back(r);
    };
    alone("vocabulary product (gemv_rmsnorm " + std::to_string(vocab) + " rows)", [&] {
      cuda::gemv_rmsnorm(x.get(), nw.get(), 1e-6f, big.get(), DType::BF16, vocab, cols, yv.get(), false, nullptr, path,
                         s);
    }, vb);
    alone("plain 16-byte reads of the same bytes", [&] { read(reinterpret_cast<const uint4*>(big.get()), vb, true); }, vb);
    alone("device-to-device copy of the same bytes (read + write)", [&] {
      SEGPIPE_CUDA_CHECK(cudaMemcpyAsync(dst.get(), big.get(), vb, cudaMemcpyDeviceToDevice, s));
    }, 2 * vb);
  }
  SEGPIPE_CUDA_CHECK(cudaEventDestroy(e0));
  SEGPIPE_CUDA_CHECK(cudaEventDestroy(e1));
  SEGPIPE_CUDA_CHECK(cudaEventDestroy(e2));
  SEGPIPE_CUDA_CHECK(cudaStreamDestroy(s));
  return out;
}

}  // namespace segpipe::benchtools
