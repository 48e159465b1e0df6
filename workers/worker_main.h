// The segment process: `segpipe __worker SPEC_JSON`. Attaches to the run's arena, loads only its own
// segment's weights, answers the orchestrator's handshake, then serves steps until told to stop or
// until its parent dies.
#pragma once
#include <string>
#include <vector>

namespace segpipe {

inline constexpr const char* kWorkerCommand = "__worker";
int worker_main(const std::vector<std::string>& args);

}  // namespace segpipe
