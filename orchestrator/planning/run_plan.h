// A resolved plan: which segments exist, what each holds, how they are connected. Built from a
// pipeline YAML (orchestrator/pipeline) or, for the model form of the commands, from the checkpoint
// alone (one embeddings, one layers segment over all layers with local experts, one lm_head).
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "segments/core/segment_params.h"
#include "segments/core/segment_types.h"
#include "segments/model/config.h"

namespace segpipe {

// A segment of the plan: what it is (SegmentParams: kind, ranges, device, dtype), and what only the plan
// needs besides. The params are a base, not a member, so that every reader keeps writing d.kind,
// d.layer_first ... and a SegmentDesc is passed where SegmentParams are wanted (make_segment, a
// worker's spec).
struct SegmentDesc : SegmentParams {
  SegmentDesc() = default;
  SegmentDesc(std::string name_, SegmentKind kind_) : name(std::move(name_)) { kind = kind_; }
  std::string name;
  int threads = 0;  // CPU threads (0: the plan's default)
  int host = 0;     // index into RunPlan::hosts: the machine whose processes run it
};

// A machine of the run (pipeline key `hosts`). hosts[0] is where segpipe runs; a plan without `hosts`
// has that one only.
struct HostDesc {
  std::string name = "local";
  std::string address;  // for the launcher (empty: this machine)
};

struct RunPlan {
  std::string model_dir;
  std::string tokenizer_dir;
  std::string source;                // the YAML file, or the model folder for the model form
  std::vector<SegmentDesc> segments;
  std::vector<HostDesc> hosts{HostDesc{}};
  bool inproc = true;                // transport: inproc (one process) or shm (one process per segment)
  int64_t max_seq = 4096;            // KV-cache positions
  int threads = 2;                   // default CPU threads per segment
  GpuKernels gpu_kernels = GpuKernels::automatic;  // GPU segments: which kernels (segment_types.h)
  GpuMemory gpu_memory = GpuMemory::automatic;     // GPU segments: where shared state lives
  bool restart = false;              // restart a failed segment process and continue
  int timeout_ms = 10000;            // a segment silent this long is hung
};

// Whether some segment runs on another machine than this one.
inline bool spans_hosts(const RunPlan& p) {
  for (const SegmentDesc& d : p.segments)
    if (d.host != 0) return true;
  return false;
}

RunPlan default_plan(const std::string& model_dir, const ModelConfig& cfg);
int default_threads();

}  // namespace segpipe
