// What the caller of the segment factory (segment_factory.h) provides to the segments it makes: the
// model, the threads, the KV storage, the way to the expert banks. Forward declarations only, so that
// the backend-neutral headers need no checkpoint or kernel header.
#pragma once
#include <cstdint>
#include <span>

namespace segpipe {

struct ModelConfig;
class Checkpoint;
class ThreadPool;
class ExpertExecutor;

// The caller keeps every pointee alive as long as the segments made with it.
struct SegmentEnv {
  const ModelConfig* cfg = nullptr;
  Checkpoint* checkpoint = nullptr;  // the weights (the CPU segments compute on views of its mapped files)
  ThreadPool* pool = nullptr;        // the CPU kernels' threads
  // layers: KV-cache positions.
  int64_t max_seq = 0;
  // layers: KV storage the caller owns (a segment process's lives in the shared arena, so that a
  // restarted process finds its cache as the last one left it): layer first+i at i * 2 * max_seq *
  // kv_dim floats, its K rows then its V rows. Empty: the segment allocates its own, lazily (the pages
  // cost memory only once written).
  std::span<float> kv;
  // layers whose routed experts live in banks (params.banks): reaches them, in this process or in
  // bank processes.
  ExpertExecutor* experts = nullptr;
  // The GPU backend adds what its segments need (its context, its weight source) as pointers to types
  // forward-declared here, when its makers join the registry.
};

}  // namespace segpipe
