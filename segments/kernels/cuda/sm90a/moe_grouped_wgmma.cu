// The grouped expert GEMMs of moe_grouped.cuh on Hopper's warpgroup MMA (wgmma), for sm_90a.
//
// The same tiles, grid order, load path and epilogues as moe_grouped.cu's mma.sync kernel (see
// there and moe_grouped_impl.cuh): 128 x 128 tiles, K in steps of 64 through a 3-stage cp.async
// pipeline, 96 KB of shared memory, two CTAs per SM. The stage layout (rows of 128 bytes, 16-byte
// chunk c of row r at position c ^ (r & 7), 8-row groups 1024 bytes apart, each operand tile
// 1024-byte aligned) is exactly wgmma's 128-byte swizzle for K-major operands, so the tensor cores
// read the tiles that cp.async wrote without any reshuffle. The 8 warps form two warpgroups; each
// multiplies its 64 rows of A by the 128 rows of B (m64n128k16, 4 per K step) into 64 fp32
// accumulators a thread, laid out as mma.sync's m16n8 fragments repeated along N: the SwiGLU and
// scatter epilogues keep their shape. A warpgroup whose 64 rows are all past the tile's rows (the
// second half of a last, short tile) skips its MMAs.
//
// Ordering per K step: cp.async.wait_group (this thread's copies of the stage landed), then
// fence.proxy.async (those generic-proxy writes made visible to the async proxy that wgmma reads
// through), then the block barrier (every thread's copies, and every warpgroup done with the stage
// the next load refills: each waited for its MMAs at the end of the previous step).
#include <atomic>
#include <cstdlib>

#include "segments/kernels/cuda/check.h"
#include "segments/kernels/cuda/moe_grouped_impl.cuh"

namespace segpipe::cuda::grouped_detail {

namespace {

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
constexpr bool kHaveWgmma = true;
#else
constexpr bool kHaveWgmma = false;
#endif

// The deep variant (SEGPIPE_WGMMA_DEEP=1): one CTA per SM, 6 stages, loads 4 steps ahead. Slower
// on an H200 (0.596 against 0.561 ms a layer, same run): kept for A/B only.
constexpr int kDeepStages = 6, kDeepDist = kDeepStages - 2;

// Shared-memory matrix descriptor: start address, leading byte offset 16 (unused by swizzled
// K-major layouts), stride byte offset 1024 (between 8-row groups), 128-byte swizzle (mode 1).
__device__ __forceinline__ uint64_t smem_desc(const void* p) {
  const uint64_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  return ((addr & 0x3FFFF) >> 4) | (uint64_t(16 >> 4) << 16) | (uint64_t(1024 >> 4) << 32) | (uint64_t(1) << 62);
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_wait0() { asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_wait1() { asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory"); }
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

// d[64] += A (64 x 16) . B (16 x 128), both K-major in 128-byte-swizzled shared memory (the
// descriptors); scale-d = 1 (accumulate: d starts at zero).
__device__ __forceinline__ void wgmma_m64n128k16(float (&d)[64], uint64_t desc_a, uint64_t desc_b) {
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "setp.ne.b32 p, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
      "%64, %65, p, 1, 1, 0, 0;\n"
      "}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "l"(desc_a), "l"(desc_b)
      : "memory");
}

template <bool kGateUp, bool kDeep>
__global__ void __launch_bounds__(kThreads, kDeep ? 1 : 2) wgmma_gemm_kernel(const GemmArgs p) {
  if constexpr (kHaveWgmma) {
    extern __shared__ unsigned char smem_raw[];
    // wgmma's 128-byte swizzle is a function of the address bits: the tiles must be 1024-byte aligned.
    const uint32_t base = static_cast<uint32_t>(__cvta_generic_to_shared(smem_raw));
    bf16* sm = reinterpret_cast<bf16*>(smem_raw + ((1024 - (base & 1023)) & 1023));
    const Workspace ws = carve(const_cast<int32_t*>(p.ws), p.S, p.n);
    const int t = int(blockIdx.x) / p.n_tiles_n, nt = int(blockIdx.x) % p.n_tiles_n;
    if (t >= ws.tile_first[p.n]) return;  // past the real tile count
    const int b = ws.tile_expert[t];
    const int row0 = ws.off[b] + (t - ws.tile_first[b]) * kBM;
    const int rows = min(kBM, ws.off[b + 1] - row0);
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int wg = warp / 4;  // warpgroup: rows wg * 64 .. + 63 of the tile
    const int K = p.K;
    const int ktiles = (K + kBK - 1) / kBK;

    // This thread's load rows (tid / 8 + 32 i of A and of B) and chunk column (tid % 8); null: a
    // masked row (zero-filled, nothing read). As moe_grouped.cu.
    const int lrow = tid / 8, lc = tid % 8;
    const bf16* wexp = p.w + int64_t(b) * p.w_stride;
    const bf16* a_src[4];
    const bf16* b_src[4];
#pragma unroll
    for (int i = 0; i < 4; i++) {
      const int r = lrow + 32 * i;
      if (kGateUp)
        a_src[i] = r < rows ? p.a + int64_t(ws.perm[row0 + r] / p.k) * K : nullptr;
      else
        a_src[i] = r < rows ? p.a + int64_t(row0 + r) * K : nullptr;
      int wrow;
      bool ok;
      if (kGateUp) {
        const int j = nt * (kBN / 2) + (r / 32) * 16 + (r % 16);
        ok = j < p.N;
        wrow = (r % 32 < 16 ? 0 : p.N) + j;
      } else {
        wrow = nt * kBN + r;
        ok = wrow < p.N;
      }
      b_src[i] = ok ? wexp + int64_t(wrow) * K : nullptr;
    }

    auto load_stage = [&](int stage, int kt) {
      bf16* sa = sm + stage * kStageElems;
      bf16* sb = sa + kBM * kBK;
      const int col = kt * kBK + lc * 8;
      const bool kin = col < K;  // K is a multiple of 8: a chunk is wholly inside or outside
#pragma unroll
      for (int i = 0; i < 4; i++) {
        const int r = lrow + 32 * i;
        const bool av = kin && a_src[i] != nullptr, bv = kin && b_src[i] != nullptr;
        cp_async16(sa + swz(r, lc), av ? a_src[i] + col : p.a, av ? 16 : 0);
        cp_async16(sb + swz(r, lc), bv ? b_src[i] + col : p.w, bv ? 16 : 0);
      }
    };

    float acc[64];
#pragma unroll
    for (int i = 0; i < 64; i++) acc[i] = 0.f;
    const bool active = wg * 64 < rows;  // warpgroup-uniform

    if (!kDeep) {
#pragma unroll
      for (int st = 0; st < kStages - 1; st++) {
        if (st < ktiles) load_stage(st, st);
        cp_async_commit();  // empty groups keep the wait count uniform
      }
      for (int kt = 0; kt < ktiles; kt++) {
        // Stage kt's group is complete when at most kStages - 2 are pending (see moe_grouped.cu).
        cp_async_wait<kStages - 2>();
        fence_proxy_async();
        __syncthreads();
        if (kt + kStages - 1 < ktiles) load_stage((kt + kStages - 1) % kStages, kt + kStages - 1);
        cp_async_commit();
        if (active) {
          const bf16* sa = sm + (kt % kStages) * kStageElems + wg * 64 * kBK;
          const bf16* sb = sm + (kt % kStages) * kStageElems + kBM * kBK;
          wgmma_fence();
#pragma unroll
          for (int ks = 0; ks < kBK / 16; ks++)  // 16 columns = 32 bytes further along the swizzled rows
            wgmma_m64n128k16(acc, smem_desc(sa + ks * 16), smem_desc(sb + ks * 16));
          wgmma_commit();
          wgmma_wait0();
        }
      }
    } else {
      // kDeepStages stages, loads kDeepDist steps ahead, the MMAs of step kt left in flight
      // (wait_group 1 waits for those of kt - 1). The stage refilled at step kt held step
      // kt - 2 (kDeepDist = kDeepStages - 2), whose MMAs every warpgroup waited for before this
      // step's barrier: one barrier a step.
#pragma unroll
      for (int st = 0; st < kDeepDist; st++) {
        if (st < ktiles) load_stage(st, st);
        cp_async_commit();
      }
      for (int kt = 0; kt < ktiles; kt++) {
        // Groups committed: kDeepDist + kt; step kt's is complete when kDeepDist - 1 are pending.
        cp_async_wait<kDeepDist - 1>();
        fence_proxy_async();
        __syncthreads();
        if (kt + kDeepDist < ktiles) load_stage((kt + kDeepDist) % kDeepStages, kt + kDeepDist);
        cp_async_commit();
        if (active) {
          const bf16* sa = sm + (kt % kDeepStages) * kStageElems + wg * 64 * kBK;
          const bf16* sb = sm + (kt % kDeepStages) * kStageElems + kBM * kBK;
          wgmma_fence();
#pragma unroll
          for (int ks = 0; ks < kBK / 16; ks++)
            wgmma_m64n128k16(acc, smem_desc(sa + ks * 16), smem_desc(sb + ks * 16));
          wgmma_commit();
          wgmma_wait1();
        }
      }
      wgmma_wait0();
    }
    cp_async_wait<0>();  // only empty groups can be pending; none outlives the block

    // Accumulator i = 4 * ni + 2 * h + c is row wg*64 + (warp%4)*16 + lane/4 + 8h, column
    // ni*8 + 2*(lane%4) + c of the tile (ni = 0..15).
    const int g = lane / 4, tq = lane % 4;
#pragma unroll
    for (int h = 0; h < 2; h++) {
      const int r = wg * 64 + (warp % 4) * 16 + g + 8 * h;
      if (r >= rows) continue;
      if (kGateUp) {
        // Column n of the tile is B row n: gate for n % 32 < 16, else up, act column
        // nt*64 + (n/32)*16 + n%16: gate ni = 4q + c' pairs with up ni = 4q + c' + 2.
        bf16* out = p.act + int64_t(row0 + r) * p.N;
#pragma unroll
        for (int q = 0; q < 4; q++)
#pragma unroll
          for (int c2 = 0; c2 < 2; c2++) {
            const int j = nt * (kBN / 2) + q * 16 + c2 * 8 + 2 * tq;
            if (j >= p.N) continue;  // p.N is even: j + 1 < p.N as well
            const int gi = 4 * (4 * q + c2) + 2 * h, ui = gi + 8;
            const float g0 = acc[gi], g1 = acc[gi + 1], u0 = acc[ui], u1 = acc[ui + 1];
            // swiglu.cu's formula, in fp32 from the accumulators
            const float v0 = __fmul_rn(g0 / (1.0f + expf(-g0)), u0), v1 = __fmul_rn(g1 / (1.0f + expf(-g1)), u1);
            *reinterpret_cast<__nv_bfloat162*>(out + j) = __floats2bfloat162_rn(v0, v1);
          }
      } else {
        const int s = ws.perm[row0 + r];
        const float wt = p.weights[s];
        bf16* out = p.slots + int64_t(s) * p.N;
#pragma unroll
        for (int ni = 0; ni < 16; ni++) {
          const int c = nt * kBN + ni * 8 + 2 * tq;
          if (c >= p.N) continue;
          *reinterpret_cast<__nv_bfloat162*>(out + c) =
              __floats2bfloat162_rn(__fmul_rn(wt, acc[4 * ni + 2 * h]), __fmul_rn(wt, acc[4 * ni + 2 * h + 1]));
        }
      }
    }
  } else {
    __trap();  // no sm_90a code: the host never launches this (moe_grouped_kernel_in_use)
  }
}

// + the alignment slack
constexpr int kWgmmaSmemBytes = kSmemBytes + 1024;
constexpr int kDeepSmemBytes = kDeepStages * kStageElems * int(sizeof(uint16_t)) + 1024;
static_assert(kDeepSmemBytes <= 227 * 1024, "one CTA per SM");
template <bool kDeep>
constexpr int smem_bytes() { return kDeep ? kDeepSmemBytes : kWgmmaSmemBytes; }

template <bool kGateUp, bool kDeep>
void raise_smem_once() {
  static std::atomic<uint64_t> done{0};
  int dev = 0;
  SEGPIPE_CUDA_CHECK(cudaGetDevice(&dev));
  const uint64_t bit = dev < 64 ? uint64_t(1) << dev : 0;
  if (bit && (done.load() & bit)) return;
  SEGPIPE_CUDA_CHECK(cudaFuncSetAttribute(wgmma_gemm_kernel<kGateUp, kDeep>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          smem_bytes<kDeep>()));
  SEGPIPE_CUDA_CHECK(cudaFuncSetAttribute(wgmma_gemm_kernel<kGateUp, kDeep>,
                                          cudaFuncAttributePreferredSharedMemoryCarveout,
                                          int(cudaSharedmemCarveoutMaxShared)));
  done.fetch_or(bit);
}

template <bool kGateUp, bool kDeep>
void launch(const GemmArgs& a, cudaStream_t s) {
  raise_smem_once<kGateUp, kDeep>();
  const int64_t blocks = int64_t(a.max_tiles) * a.n_tiles_n;
  SEGPIPE_ASSERT_MSG(blocks < (int64_t(1) << 31), "grouped expert GEMM (wgmma): grid too large");
  wgmma_gemm_kernel<kGateUp, kDeep><<<static_cast<unsigned>(blocks), kThreads, smem_bytes<kDeep>(), s>>>(a);
  SEGPIPE_CUDA_LAUNCH_CHECK("wgmma_gemm_kernel");
}

}  // namespace

void launch_gemm_wgmma(const GemmArgs& a, bool gate_up, cudaStream_t s) {
  // SEGPIPE_WGMMA_DEEP=1: the deep variant (A/B). (A first overlap variant, 3 stages and two
  // barriers a step with the MMAs in flight across them, was slower on an H200: 0.606 against
  // 0.542 ms a layer.)
  static const bool deep = [] {
    const char* v = std::getenv("SEGPIPE_WGMMA_DEEP");
    return v && v[0] == '1';
  }();
  if (gate_up)
    deep ? launch<true, true>(a, s) : launch<true, false>(a, s);
  else
    deep ? launch<false, true>(a, s) : launch<false, false>(a, s);
}

}  // namespace segpipe::cuda::grouped_detail
