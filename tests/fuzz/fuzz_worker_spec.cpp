// Fuzz target: the worker protocol's spec, the JSON a segment process gets on its command line
// (workers/protocol.h worker_spec_from_json). Only InputError may escape (a json type or range error
// once escaped as an nlohmann exception), and an accepted spec holds the ranges the worker sizes with.
#include <cstdint>
#include <nlohmann/json.hpp>

#include "fuzz_support.h"
#include "workers/protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace segpipe;
  const auto parsed = fuzz::parse_json_input<nlohmann::json>(data, size);
  if (!parsed) return 0;  // not JSON: the worker's start reports it (exit 2)
  const nlohmann::json& j = *parsed;
  fuzz::only_input_errors("worker spec", [&] {
    const proto::WorkerSpec s = proto::worker_spec_from_json(j);
    FUZZ_INVARIANT(s.threads >= 1 && s.max_seq >= 1 && s.max_tokens >= 1 && s.timeout_ms >= 1);
    FUZZ_INVARIANT(s.layer_first <= s.layer_last && s.expert_first <= s.expert_last);
    // What it accepts, it writes back unchanged.
    FUZZ_INVARIANT(proto::worker_spec_from_json(proto::to_json(s)).name == s.name);
  });
  return 0;
}
