// verify --bisect: walks the boundaries of a run in data-flow order (embeddings, then per layer the
// router logits, the router's choices and the layer output, then the final norm and the logits) and
// names the first segment and the first layer inside it whose output diverges, with its errors.
// The reference is the in-process run of the same pipeline (bit for bit), the in-process run of
// another pipeline over the same architecture (e.g. the original checkpoint, --reference), or a
// transformers golden (within a tolerance). Against an in-process reference, a divergence in a layer
// whose experts live in banks is followed into the banks: which bank, which experts.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "orchestrator/planning/pipeline_loader.h"

#include "orchestrator/drivers/step_media.h"

namespace segpipe {

struct BisectOptions {
  std::vector<std::string> goldens;         // compare with these (tolerance); else with an in-process run
  std::optional<std::string> reference;     // pipeline whose in-process run is the reference
  std::vector<int32_t> prompt;              // for the in-process comparison
  std::vector<MediaInput> media;            // (Qwen3-Omni) its media; prompt holds their placeholder blocks
  double tolerance = 1e-4;
};

// Prints the walk and the verdict; fills report["bisect"]. Returns true when nothing diverges.
bool run_bisect(const LoadedPlan& lp, const BisectOptions& opt, nlohmann::json& report);

}  // namespace segpipe
