// verify --pipeline without goldens: the segmented run against the same pipeline in-process,
// every boundary and every greedy step's logits bit for bit.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "orchestrator/drivers/step_media.h"

#include "orchestrator/planning/pipeline_loader.h"

namespace segpipe {

std::vector<int32_t> default_verify_prompt(const ModelConfig& cfg);
// Why the plan has no in-process baseline to be bit-identical to (GPU segments on more than one
// backend, device or dtype: no single in-process runner computes it), as an InputError message
// suggesting --golden; empty when it has one.
std::string inproc_baseline_problem(const RunPlan& plan);
// Throws InputError (inproc_baseline_problem) before anything is loaded when there is no baseline.
// Prints one row per boundary; fills report["segments"], report["boundaries"]; true when identical.
// With media (a Qwen3-Omni prompt: `prompt` holds their placeholder blocks), the encoders' rows are
// compared too, and the decode steps go on at the prompt's rope delta.
bool compare_segmented_with_inproc(const LoadedPlan& lp, const std::vector<int32_t>& prompt, int new_tokens,
                                   nlohmann::json& report, const std::vector<MediaInput>& media = {});

}  // namespace segpipe
