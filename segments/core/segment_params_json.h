// SegmentParams as JSON, the one spelling shared by the edges that carry a segment's description as
// text: a worker's spec on its command line (workers/protocol.h) and the plan an orchestrator hands to
// the agents of other hosts (orchestrator/planning/run_plan_json.h).
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "segments/core/errors.h"
#include "segments/core/segment_params.h"

namespace segpipe {

inline void write_segment_params(nlohmann::json& j, const SegmentParams& p) {
  j["kind"] = to_string(p.kind);
  j["layers"] = {p.layer_first, p.layer_last};
  j["banks"] = p.banks;
  j["experts"] = {p.expert_first, p.expert_last};
  j["max_resident_experts"] = p.max_resident_experts;
  j["device"] = to_string(p.device);
  j["dtype"] = to_string(p.dtype);
}

// Throws InputError starting with `what` for a kind, device or dtype it does not know, and
// nlohmann::json::exception for a missing key or a value of the wrong type (callers turn it into an
// InputError naming what they read). device, dtype and max_resident_experts are optional: cpu,
// float32, 0.
inline void read_segment_params(const nlohmann::json& j, SegmentParams& p, const std::string& what) {
  const std::string kind = j.at("kind");
  const auto k = parse_segment_kind(kind);
  if (!k) throw InputError(what + ": unknown kind '" + kind + "'");
  p.kind = *k;
  p.layer_first = j.at("layers").at(0);
  p.layer_last = j.at("layers").at(1);
  p.banks = j.at("banks");
  p.expert_first = j.at("experts").at(0);
  p.expert_last = j.at("experts").at(1);
  p.max_resident_experts = j.value("max_resident_experts", 0);
  const std::string device = j.value("device", std::string("cpu")), dtype = j.value("dtype", std::string("float32"));
  const auto d = parse_device(device);
  const auto t = parse_compute_dtype(dtype);
  if (!d) throw InputError(what + ": device '" + device + "': expected cpu or cuda:N");
  if (!t) throw InputError(what + ": dtype '" + dtype + "': expected float32 or bfloat16");
  p.device = *d;
  p.dtype = *t;
}

}  // namespace segpipe
