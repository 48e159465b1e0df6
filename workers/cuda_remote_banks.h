// The expert banks of a GPU layers worker under transport: shm, each a GPU worker process of kind
// experts on the same device (workers/cuda_worker.h). To the layer they are one ExpertBank: its
// request is copied into the bank exchange (in the device arena; under gpu_memory: unified in the
// shared arena, mapped for the GPU: copies with cudaMemcpyDefault serve both), the layers worker's stream is
// synchronized (the doorbell then orders device memory, as between segments), every bank holding
// the layer is rung at once and awaited, and the slots they filled are copied back to the layer's
// own buffer, which the layer combines as it combines in-process banks: the same kernels, the same
// bits. Needs the CUDA backend (include only where SEGPIPE_HAVE_CUDA is defined).
#pragma once
#include <cstdint>
#include <vector>

#include "segments/cuda/kinds.h"
#include "workers/remote_banks.h"

namespace segpipe {

class CudaRemoteBanks : public ExpertBank {
 public:
  // exchange: x, expert ids, weights and slots of the bank exchange (device pointers into the
  // mapped device arena, or into the shared arena as the GPU sees it), sized for spec.max_tokens tokens.
  CudaRemoteBanks(const proto::WorkerSpec& spec, const shm::Arena& arena, proto::SegmentStatus* status,
                  cuda::Context& ctx, const ModelConfig& cfg, DType compute, const std::vector<char*>& exchange,
                  uint32_t spin_count);
  bool holds_layer(int layer) const override { return banks_.holds_layer(layer); }
  // Together the bank processes of a layer own all its experts (the plan checks that).
  bool owns(int layer, int) const override { return banks_.holds_layer(layer); }
  void compute(const ExpertRequest& r) override;
  // The bank processes copy the ids to the host themselves where they group there (the default, true).

 private:
  const proto::WorkerSpec& spec_;
  BankCaller banks_;
  cuda::Context& ctx_;
  int64_t hidden_;
  DType dt_;
  char *x_, *experts_, *weights_, *slots_;
};

}  // namespace segpipe
