// verify --pipeline without goldens: the segmented run against the same pipeline in-process,
// every boundary and every greedy step's logits bit for bit.
#pragma once
#include <nlohmann/json.hpp>
#include <vector>

#include "orchestrator/pipeline_loader.h"

namespace segpipe {

std::vector<int32_t> default_verify_prompt(const ModelConfig& cfg);
// Prints one row per boundary; fills report["segments"], report["boundaries"]; true when identical.
bool compare_segmented_with_inproc(const LoadedPlan& lp, const std::vector<int32_t>& prompt, int new_tokens,
                                   nlohmann::json& report);

}  // namespace segpipe
