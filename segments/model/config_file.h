// Reads <dir>/config.json into a ModelConfig (header free of tensor types, so model-free code such
// as the pipeline planner can include it).
#pragma once
#include <string>

#include "segments/model/config.h"

namespace segpipe {

ModelConfig read_model_config(const std::string& model_dir);

}  // namespace segpipe
