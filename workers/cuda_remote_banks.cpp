#ifdef SEGPIPE_HAVE_CUDA

#include "workers/cuda_remote_banks.h"

#include "segments/core/errors.h"
#include "segments/kernels/cuda/moe.cuh"
#include "workers/cuda_worker.h"

namespace segpipe {

CudaRemoteBanks::CudaRemoteBanks(const proto::WorkerSpec& spec, const shm::Arena& arena, proto::SegmentStatus* status,
                                 cuda::Context& ctx, const ModelConfig& cfg, DType compute,
                                 const std::vector<char*>& exchange, uint32_t spin_count)
    : spec_(spec), banks_(spec, arena, status), ctx_(ctx), hidden_(cfg.hidden), dt_(compute) {
  if (spin_count) banks_.set_spin_count(spin_count);
  if (exchange.size() != 4) throw RuntimeFailure("layers segment '" + spec.name + "' has no bank exchange");
  x_ = exchange[0];
  experts_ = exchange[1];
  weights_ = exchange[2];
  slots_ = exchange[3];
}

void CudaRemoteBanks::compute(const ExpertRequest& r) {
  if (r.T <= 0 || r.T > spec_.max_tokens)
    throw RuntimeFailure("the bank exchange holds " + std::to_string(spec_.max_tokens) + " tokens, not " +
                         std::to_string(r.T));
  const size_t T = static_cast<size_t>(r.T), k = static_cast<size_t>(r.k), H = static_cast<size_t>(hidden_);
  cudaStream_t st = ctx_.stream();
  if (r.x_dtype != dt_ || r.slot_dtype != cuda::moe_slot_dtype(dt_, r.grouped))
    throw RuntimeFailure(std::string("an expert request in ") + dtype_name(r.x_dtype) + " / " +
                         dtype_name(r.slot_dtype) + " slots to banks computing in " + dtype_name(dt_));
  SEGPIPE_CUDA_CHECK(cudaMemcpyAsync(x_, r.x, T * H * dtype_size(dt_), cudaMemcpyDefault, st));
  SEGPIPE_CUDA_CHECK(cudaMemcpyAsync(experts_, r.experts, T * k * 4, cudaMemcpyDefault, st));
  SEGPIPE_CUDA_CHECK(cudaMemcpyAsync(weights_, r.weights, T * k * 4, cudaMemcpyDefault, st));
  ctx_.sync();  // the request is in the exchange before any bank is rung
  proto::CudaExpertArgs a{r.layer, r.k, r.T, r.grouped ? 1 : 0, 0};
  banks_.call(r.layer, std::as_bytes(std::span<const proto::CudaExpertArgs>(&a, 1)));
  // Every bank answered after synchronizing its own stream: the slots are complete.
  SEGPIPE_CUDA_CHECK(cudaMemcpyAsync(r.slots, slots_, T * k * H * dtype_size(r.slot_dtype), cudaMemcpyDefault, st));
}

}  // namespace segpipe

#endif
