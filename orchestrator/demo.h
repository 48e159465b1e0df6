// The built-in demo: a pipeline of several processes with expert banks over a synthetic checkpoint in
// the real Qwen3-Omni layout (scaled down, real vocabulary) with the real Qwen3 tokenizer.
#pragma once
#include <string>

namespace segpipe {

// The demo pipeline YAML; creates the demo checkpoint first when it is missing.
std::string ensure_demo_pipeline();

}  // namespace segpipe
