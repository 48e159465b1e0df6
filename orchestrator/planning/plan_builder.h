// segpipe plan: cut a checkpoint into a pipeline balanced by weight bytes. The cut is computed here
// from the checkpoint headers (no tensor bytes read) and printed through the pipeline library's
// emitter, so the output always parses and validates.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace segpipe {

struct PlannedCut {
  std::string model;                       // as printed in the YAML
  std::vector<std::pair<int, int>> groups; // layer ranges of the layers segments
  std::vector<bool> group_banks;           // per group: experts in banks
  std::vector<std::pair<int, int>> banks;  // expert ranges; each bank spans all MoE layers
  int bank_layer_first = 0, bank_layer_last = 0;
  std::vector<uint64_t> group_bytes;       // for the comments
  std::vector<uint64_t> bank_bytes;
  uint64_t embed_bytes = 0, head_bytes = 0;
};

// Emits the pipeline YAML of a cut (pipeline library; see plan_emit.cpp).
std::string emit_cut_yaml(const PlannedCut& cut);

}  // namespace segpipe
