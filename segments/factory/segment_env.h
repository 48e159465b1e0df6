// What the caller of the segment factory (segment_factory.h) provides to the segments it makes: the
// model, the threads, the KV storage, the way to the expert banks. Forward declarations only, so that
// the backend-neutral headers need no checkpoint or kernel header.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

namespace segpipe {

struct ModelConfig;
class Checkpoint;
class ThreadPool;
class ExpertExecutor;
class ExpertBank;

namespace cuda {
class Context;
class WeightSource;
struct EngineOptions;
}  // namespace cuda

// The caller keeps every pointee alive as long as the segments made with it.
struct SegmentEnv {
  const ModelConfig* cfg = nullptr;
  // CPU: the weights (the CPU segments compute on views of its mapped files). A GPU reads them through
  // cuda_weights.
  Checkpoint* checkpoint = nullptr;
  ThreadPool* pool = nullptr;        // the CPU kernels' threads
  // layers: KV-cache positions.
  int64_t max_seq = 0;
  // layers: KV storage the caller owns, in the memory of the segment's backend (a CPU segment process's
  // lives in the shared arena, a GPU one's in the device arena, so that a restarted process finds its
  // cache as the last one left it): layer first+i at i * 2 * max_seq * kv_dim floats, its K rows then
  // its V rows. Empty: the segment allocates its own (on the CPU lazily: the pages cost memory only
  // once written).
  std::span<float> kv;
  // CPU layers whose routed experts live in banks (params.banks): reaches them, in this process or in
  // bank processes.
  ExpertExecutor* experts = nullptr;

  // The GPU backend (segments/cuda/cuda_makers.h).
  cuda::Context* cuda_context = nullptr;      // the device, its stream and cuBLAS handle
  cuda::WeightSource* cuda_weights = nullptr;  // the weights (checkpoint or synthetic), in the compute dtype
  const cuda::EngineOptions* cuda_options = nullptr;  // the kernels' choices; null: the defaults
  // GPU layers whose routed experts live in banks: the banks it calls (banks of this process, or the
  // bank processes behind one workers/cuda_remote_banks.h), each layer those holding it.
  std::vector<ExpertBank*> banks;
  // GPU lm_head of a model that ties its embeddings: the embedding table to share (device memory, the
  // compute dtype) rather than upload a second copy; null: its own copy. The GPU embeddings maker sets
  // it to its table, for an lm_head made later with this env (a GPU runner's segments on one device).
  const void* cuda_tied_embeddings = nullptr;
};

}  // namespace segpipe
