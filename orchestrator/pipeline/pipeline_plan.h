// A validated pipeline: every segment with its settings resolved, and who computes what.
// Built only by validate_pipeline(); holding one means every rule of pipeline-yaml.md passed.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "orchestrator/pipeline/pipeline_spec.h"

namespace segpipe {

namespace pipeline_detail {
class Validator;
}

// What validation needs to know about the checkpoint, filled by the caller from config.json. Kept this
// small so that the pipeline library does not depend on the model code.
struct ModelSummary {
  int num_layers = 0;           // decoder layers
  int num_experts = 0;          // routed experts per MoE layer (0: dense model)
  std::vector<bool> moe_layer;  // [num_layers]: true when layer i has routed experts
};

struct PlannedSegment {
  std::string name;
  SegmentKind kind = SegmentKind::layers;
  Device device;                                       // resolved: segment, else defaults, else cpu
  ComputeDType dtype = ComputeDType::float32;                        // resolved: segment, else defaults, else float32
  int threads = kDefaultThreads;                       // resolved: segment, else defaults, else kDefaultThreads
  std::optional<IndexRange> layers;                    // layers and experts kinds
  ExpertPlacement placement = ExpertPlacement::local;  // layers kind
  std::optional<IndexRange> experts;                   // experts kind
  std::vector<int> moe_layers;  // experts kind: the MoE layers of `layers` it serves (dense skipped)
  std::optional<int> max_resident_experts;
  int host = 0;  // index into PipelinePlan::hosts
};

// A machine of the run. Without `hosts:` the plan has one, this machine.
struct PlannedHost {
  std::string name;
  std::string address;  // for the launcher; empty for the implicit local host
  bool local = false;   // the first host: where segpipe itself runs
};

class PipelinePlan {
 public:
  std::string source;  // the pipeline file, for messages
  std::string model_dir;
  std::string tokenizer_dir;
  Transport transport = Transport::shm;
  GpuKernels gpu_kernels = GpuKernels::automatic;
  GpuMemory gpu_memory = GpuMemory::automatic;
  bool restart = false;
  int timeout_ms = kDefaultTimeoutMs;
  GenerationSpec generation;             // unset keys: the command's own defaults apply
  std::vector<PlannedSegment> segments;  // data-flow order, as in the file
  std::vector<PlannedHost> hosts;        // at least one; hosts[0] is this machine
  int num_layers = 0;
  int num_experts = 0;

  int embeddings_segment() const { return embeddings_; }
  int lm_head_segment() const { return lm_head_; }
  // The layers segment that runs decoder layer `layer`.
  int layer_owner(int layer) const;
  // The experts segment that holds expert `expert` of MoE layer `layer`, or -1 when that layer's
  // experts are computed by its layers segment (experts: local) or the layer is dense.
  int expert_owner(int layer, int expert) const;

 private:
  friend class pipeline_detail::Validator;  // the only writer of the tables below
  int embeddings_ = -1;
  int lm_head_ = -1;
  std::vector<int> layer_owner_;   // [num_layers]
  std::vector<int> expert_owner_;  // [num_layers * num_experts], row-major by layer; -1 = local/dense
};

}  // namespace segpipe
