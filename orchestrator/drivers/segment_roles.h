// The checkpoint tensors each segment of a plan will load, checked before any segment process starts:
// a missing or misshapen tensor is one InputError naming it, not a worker failing at start-up.
#pragma once
#include "orchestrator/planning/run_plan.h"
#include "segments/checkpoint/checkpoint.h"
#include "segments/model/config.h"

namespace segpipe {

// Throws InputError (check_roles, tensor_map.h) for the first tensor of a segment that is wrong.
void check_segment_roles(Checkpoint& ck, const ModelConfig& cfg, const RunPlan& plan);

}  // namespace segpipe
