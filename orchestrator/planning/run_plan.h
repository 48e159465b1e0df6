// A resolved plan: which segments exist, what each holds, how they are connected. Built from a
// pipeline YAML (orchestrator/pipeline) or, for the model form of the commands, from the checkpoint
// alone (one embeddings, one layers segment over all layers with local experts, one lm_head).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "segments/core/segment_types.h"
#include "segments/model/config.h"

namespace segpipe {


struct SegmentDesc {
  std::string name;
  SegmentKind kind = SegmentKind::layers;
  int layer_first = -1, layer_last = -1;    // layers, experts
  bool banks = false;                       // layers: routed experts live in experts segments
  int expert_first = -1, expert_last = -1;  // experts
  int threads = 0;                          // CPU threads (0: the plan's default)
  int max_resident_experts = 0;             // layers (local experts), experts: at most this many experts
                                            // resident per layer, loaded on demand (0: all)
  Device device{};                          // cpu or cuda:N
  ComputeDType dtype = ComputeDType::float32;
};

struct RunPlan {
  std::string model_dir;
  std::string tokenizer_dir;
  std::string source;                // the YAML file, or the model folder for the model form
  std::vector<SegmentDesc> segments;
  bool inproc = true;                // transport: inproc (one process) or shm (one process per segment)
  int64_t max_seq = 4096;            // KV-cache positions
  int threads = 2;                   // default CPU threads per segment
  GpuKernels gpu_kernels = GpuKernels::automatic;  // GPU segments: which kernels (segment_types.h)
  GpuMemory gpu_memory = GpuMemory::automatic;     // GPU segments: where shared state lives
  bool restart = false;              // restart a failed segment process and continue
  int timeout_ms = 10000;            // a segment silent this long is hung
};

RunPlan default_plan(const std::string& model_dir, const ModelConfig& cfg);
int default_threads();

}  // namespace segpipe
