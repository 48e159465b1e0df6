// Turns a pipeline YAML or a bare checkpoint folder into a validated RunPlan plus the model config,
// before any process starts.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "orchestrator/planning/run_plan.h"
#include "orchestrator/drivers/runner.h"
#include "orchestrator/drivers/shm_runner.h"
#include "segments/model/config.h"

namespace segpipe {

struct LoadedPlan {
  RunPlan plan;
  ModelConfig cfg;
  nlohmann::json generation;  // the pipeline's generation: block (may be null)
};

ModelConfig load_model_config(const std::string& model_dir);
// model: a checkpoint folder, or a Hugging Face repository id in the local cache (no download).
LoadedPlan load_model_plan(const std::string& model);
LoadedPlan load_pipeline_plan(const std::string& yaml_path);
// The runner the plan asks for: in-process, or one process per segment.
std::unique_ptr<Runner> make_runner(const RunPlan& plan, const ShmOptions& opt = {});
nlohmann::json segment_reports_json(const std::vector<SegmentReport>& r);

}  // namespace segpipe
