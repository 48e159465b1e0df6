// The built-in demo: a pipeline of several processes with expert banks over the committed demo model
// (models/qwen3-moe-demo: a small Qwen3-MoE trained to answer arithmetic in the real Qwen3 tokenizer and
// chat template; tools/demo_model/ trains it).
#pragma once
#include <string>

namespace segpipe {

// The demo pipeline YAML (pipelines/demo.yaml), checked to exist with its model.
std::string demo_pipeline();

}  // namespace segpipe
