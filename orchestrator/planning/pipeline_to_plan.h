// Pipeline YAML -> RunPlan. Kept apart from the model headers: the pipeline library is model-free.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "orchestrator/planning/run_plan.h"
#include "segments/model/config.h"

namespace segpipe {

// Parses the YAML, reads the model's config.json, validates every rule, and resolves the plan.
// generation receives the pipeline's `generation:` keys that were set.
RunPlan plan_from_pipeline_file(const std::string& path, ModelConfig& cfg, nlohmann::json& generation);

}  // namespace segpipe
