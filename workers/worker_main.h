// The segment process: `segpipe __worker SPEC_JSON`. Attaches to the run's arena, loads only its own
// segment's weights, answers the orchestrator's handshake, then serves steps until told to stop or
// until its parent dies.
#pragma once
#include <cstdio>
#include <exception>
#include <optional>
#include <string>
#include <vector>

namespace segpipe {

inline constexpr const char* kWorkerCommand = "__worker";
int worker_main(const std::vector<std::string>& args);

// For a test or tool binary that starts its segment processes as copies of itself (spawn_self): when
// its command line is `BINARY __worker ...`, runs the worker and gives its exit code (2, with the
// message printed, for an exception); nothing for any other command line.
inline std::optional<int> run_if_worker(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) != kWorkerCommand) return std::nullopt;
  try {
    return worker_main(std::vector<std::string>(argv + 2, argv + argc));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "worker: %s\n", e.what());
    return 2;
  }
}

}  // namespace segpipe
