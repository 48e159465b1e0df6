// A RunPlan as JSON: how the orchestrator of a multi-host run hands its plan to the agents on the
// other hosts, so that every host runs exactly the plan the orchestrator built (a command may have
// changed it after the YAML: --restart, the reference plan of verify and bisect).
#pragma once
#include <nlohmann/json.hpp>

#include "orchestrator/planning/run_plan.h"

namespace segpipe {

nlohmann::json to_json(const RunPlan& p);
// Throws InputError naming the field for a malformed plan (it crossed a network).
RunPlan run_plan_from_json(const nlohmann::json& j);

}  // namespace segpipe
