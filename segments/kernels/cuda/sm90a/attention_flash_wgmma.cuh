// The Hopper (wgmma, sm_90a) kernel of the bf16 flash prefill attention; attention_flash.cu picks it
// where the context's KernelPath has wgmma (compute capability 9.0) at head_dim 128.
#pragma once
#include <cuda_runtime_api.h>

#include "segments/core/dtype.h"

namespace segpipe::cuda {

// attention_flash's contract at head_dim 128: q [T, nh * 128] in qt (F32 or BF16), K/V bf16
// [pos0 + T, nkv * 128], out in ot. scale_log2: head_dim^-0.5 * log2(e). Only on compute capability
// 9.0 (the kernel traps elsewhere).
void attention_flash_wgmma(const void* q, DType qt, int T, int pos0, int nh, int nkv, const void* k_bf16,
                           const void* v_bf16, float scale_log2, void* out, DType ot, cudaStream_t st);

}  // namespace segpipe::cuda
