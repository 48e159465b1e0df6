// Valid pipelines and the checkpoints they fit, shared by the unit tests and the fuzz seeds.
#pragma once
#include <ostream>
#include <string>
#include <vector>

#include "orchestrator/pipeline/pipeline.h"

namespace segpipe {
// GoogleTest prints a failed EXPECT_EQ on specs as YAML instead of raw bytes.
inline void PrintTo(const PipelineSpec& s, std::ostream* os) {
  *os << "model_dir=" << s.model_dir << " tokenizer_dir=" << s.tokenizer_dir << "\n" << emit_pipeline_yaml(s);
}
}  // namespace segpipe

namespace segpipe::test {

inline ModelSummary all_moe(int layers, int experts) {
  return ModelSummary{layers, experts, std::vector<bool>(static_cast<size_t>(layers), true)};
}
inline ModelSummary dense(int layers) {
  return ModelSummary{layers, 0, std::vector<bool>(static_cast<size_t>(layers), false)};
}
// decoder_sparse_step 2: layers 1, 3, ... have routed experts, 0, 2, ... a dense MLP.
inline ModelSummary sparse_step2(int layers, int experts) {
  ModelSummary m{layers, experts, {}};
  for (int l = 0; l < layers; ++l) m.moe_layer.push_back(l % 2 == 1);
  return m;
}

// The example of shared/docs/pipeline-yaml.md, for a Qwen3-30B-A3B-sized model (48 layers, 128 experts).
inline const char* const kDocExample = R"(version: 1
model: ../models/tiny-omni        # HF checkpoint folder: config.json + *.safetensors (+ model.safetensors.index.json)
tokenizer: ../models/tiny-omni    # optional; folder with tokenizer.json (+ tokenizer_config.json); default: model
defaults:                         # optional; any segment may override these keys
  device: cpu                     # cpu | cuda:N
  dtype: float32                  # compute dtype: float32 | bfloat16
  threads: 2                      # CPU threads per segment process
transport: shm                    # shm: one process per segment (default); inproc: all segments in one process
segments:                         # in data-flow order: embeddings, layers..., lm_head; expert banks anywhere
  - name: embed
    kind: embeddings
  - name: early
    kind: layers
    layers: [0, 23]               # first and last decoder layer, inclusive
  - name: late
    kind: layers
    layers: [24, 47]
    experts: banks                # local (default): this segment computes its MoE experts itself
  - name: bank-lo                 # banks: the experts of these layers live in `experts` segments
    kind: experts
    layers: [24, 47]
    experts: [0, 63]              # first and last expert id, inclusive
  - name: bank-hi
    kind: experts
    layers: [24, 47]
    experts: [64, 127]
  - name: head
    kind: lm_head                 # final RMSNorm + lm_head
generation:                       # optional defaults for `segpipe generate`; command-line flags win
  max_new_tokens: 64
  temperature: 0.0                # 0 = greedy
  top_k: 0
  top_p: 1.0
  seed: 0
)";
inline ModelSummary doc_model() { return all_moe(48, 128); }

// Every optional key at once, on a 4-layer, 8-expert model; a bank listed before the embeddings
// (experts segments may stand anywhere), per-segment overrides, failure-handling keys.
inline const char* const kTinyFull = R"(version: 1
model: tiny
tokenizer: /opt/tokenizers/qwen3
defaults:
  device: cuda:0
  dtype: bfloat16
  threads: 4
transport: inproc
gpu_kernels: portable
gpu_memory: unified
restart: true
timeout_ms: 2500
segments:
  - name: bank-b
    kind: experts
    layers: [2, 3]
    experts: [4, 7]
    device: cuda:1
    max_resident_experts: 2
  - name: embed
    kind: embeddings
    device: cpu
  - name: early
    kind: layers
    layers: [0, 1]
    experts: local
    max_resident_experts: 3
  - name: late
    kind: layers
    layers: [2, 3]
    experts: banks
    threads: 8
  - name: bank-a
    kind: experts
    layers: [2, 3]
    experts: [0, 3]
    dtype: float32
  - name: head
    kind: lm_head
generation:
  max_new_tokens: 16
  temperature: 0.7
  top_k: 40
  top_p: 0.95
  seed: 18446744073709551615
)";
inline ModelSummary tiny_model() { return all_moe(4, 8); }

// decoder_sparse_step 2: one bank range spans dense and MoE layers alike (dense ones are skipped).
inline const char* const kSparseStep = R"(version: 1
model: sparse
segments:
  - name: embed
    kind: embeddings
  - name: all
    kind: layers
    layers: [0, 3]
    experts: banks
  - name: bank
    kind: experts
    layers: [0, 3]
    experts: [0, 7]
  - name: head
    kind: lm_head
)";
inline ModelSummary sparse_model() { return sparse_step2(4, 8); }

// A dense checkpoint in one layers segment: the smallest valid pipeline.
inline const char* const kDenseMinimal = R"(version: 1
model: dense
segments:
  - {name: embed, kind: embeddings}
  - {name: body, kind: layers, layers: [0, 3]}
  - {name: head, kind: lm_head}
)";
inline ModelSummary dense_model() { return dense(4); }

// Three hosts: the embeddings and the first layers where segpipe runs, the later layers and their expert
// banks on a second machine, the lm_head on a third (by `defaults: host`).
inline const char* const kThreeHosts = R"(version: 1
model: hosts
defaults: {host: c}
hosts:
  - {name: a, address: 10.77.0.1}
  - {name: b, address: node-b.example}
  - {name: c}
segments:
  - {name: embed, kind: embeddings, host: a}
  - {name: early, kind: layers, layers: [0, 1], host: a}
  - {name: late, kind: layers, layers: [2, 3], experts: banks, host: b}
  - {name: bank-lo, kind: experts, layers: [2, 3], experts: [0, 3], host: b}
  - {name: bank-hi, kind: experts, layers: [2, 3], experts: [4, 7], host: b}
  - {name: head, kind: lm_head}
)";

struct Example {
  const char* name;
  const char* yaml;
  ModelSummary model;
};
inline std::vector<Example> valid_examples() {
  return {{"doc", kDocExample, doc_model()},
          {"tiny_full", kTinyFull, tiny_model()},
          {"sparse_step", kSparseStep, sparse_model()},
          {"dense_minimal", kDenseMinimal, dense_model()},
          {"three_hosts", kThreeHosts, tiny_model()}};
}

}  // namespace segpipe::test
