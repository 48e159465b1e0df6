// Shared by dump, run-segment, memory and bisect: prompts from the command line, the segment that
// owns a boundary, greedy argmax.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "orchestrator/commands/cli_args.h"
#include "orchestrator/planning/pipeline_loader.h"

namespace segpipe {

// Every --prompt TEXT (tokenized with the plan's tokenizer) and --tokens "ID ..." given, in that
// order; `fallback` when none is given (empty fallback: InputError naming the command).
std::vector<std::vector<int32_t>> prompts_from_args(const CliArgs& a, const LoadedPlan& lp, const std::string& command,
                                                    const std::vector<int32_t>& fallback = {});

// The segment holding a boundary name (embeddings, layers.{i}.*, norm, logits); "" when none.
std::string segment_of_boundary(const RunPlan& plan, const std::string& boundary);
// Layer index of "layers.{i}...." or -1.
int layer_of_boundary(const std::string& boundary);

int32_t argmax_row(const float* v, int64_t n);

}  // namespace segpipe
