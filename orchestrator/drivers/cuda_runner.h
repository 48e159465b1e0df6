// A Runner that runs a plan's segments on one GPU, in this process (segments/cuda): the GPU
// counterpart of the in-process baseline. Every segment of the plan must name the same cuda:N
// device and compute dtype (float32 or bfloat16). The decode step (one token) is captured once into
// a CUDA graph and replayed. In a build without the CUDA backend make_cuda_runner throws InputError.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "orchestrator/drivers/runner.h"
#include "segments/model/config.h"

namespace segpipe {

namespace cuda {
class Context;
}

struct CudaRunnerOptions {
  bool synthetic = false;     // weights from the synthetic formula on the GPU (no checkpoint files)
  uint64_t seed = 0;          // synthetic: the make-model seed
  bool graphs = true;         // replay the decode step from a CUDA graph
  int gemv_max_tokens = 4;    // MoE: GEMVs over the chosen experts up to this many tokens per step
  bool grouped_gemm = true;   // MoE prefill: one grouped cuBLAS call per projection and layer
  bool device_grouped = true; // MoE bf16 prefill: grouping and expert GEMMs on the device (moe_grouped.cuh)
  bool fused_decode = true;    // decode through the fused single-token kernels (cuda::EngineOptions)
  bool flash_attention = true; // bf16 long prefills through the flash attention kernel (cuda::EngineOptions)
  // The kernels' hardware path (cuda::Context); portable also where the plan's gpu_kernels says so.
  GpuKernels kernels = GpuKernels::automatic;
};

// True when this build has the CUDA backend.
bool cuda_backend_built();
// CUDA devices visible to this process (0 without the backend, a driver or a GPU).
int cuda_visible_devices();

class CudaRunner : public Runner {
 public:
  // Runs a step and leaves its logits on the device (logits_device()); synchronizes. For benchmarks.
  virtual void step_device(const int32_t* ids, int64_t T, int64_t pos0, bool all_logits) = 0;
  // The same without the CUDA graph (kernel by kernel), for comparison.
  virtual void step_device_eager(const int32_t* ids, int64_t T, int64_t pos0) = 0;
  virtual const float* logits_device() const = 0;
  // decode_greedy (runner.h) here: CUDA graph replays back to back where graphs are on, the last
  // step's logits left in logits_device(); synchronizes once, at the end. What `segpipe generate`
  // runs for greedy decoding on a GPU.
  bool has_greedy_chain() const override { return true; }
  // Drops the captured decode graph: the next decode steps run eagerly once, then capture again
  // (benchmarks: a capture measured afresh).
  virtual void reset_graph() = 0;
  // The runner's GPU context (benchmarks: its kernel path, the per-phase profile).
  virtual cuda::Context& context() = 0;
  virtual std::string device_description() const = 0;
  virtual uint64_t weight_bytes() const = 0;
  // The plan's gpu_memory resolved for the device (device or unified: the checkpoint read in place,
  // segments/cuda/weights.h), and the checkpoint tensors the device read in place.
  virtual GpuMemory gpu_memory() const = 0;
  virtual uint64_t weights_read_in_place() const = 0;
};

std::unique_ptr<CudaRunner> make_cuda_runner(const RunPlan& plan, const ModelConfig& cfg,
                                             const CudaRunnerOptions& opt = {});

}  // namespace segpipe
