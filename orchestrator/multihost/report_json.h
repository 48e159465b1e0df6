// A segment's report (runner.h) as JSON, for an agent to send its host's reports to rank 0.
#pragma once
#include <nlohmann/json.hpp>

#include "orchestrator/drivers/runner.h"

namespace segpipe::multihost {

inline nlohmann::json report_to_json(const SegmentReport& r) {
  return {{"name", r.name},
          {"kind", r.kind},
          {"pid", r.pid},
          {"tensors", r.tensors},
          {"weight_bytes", r.weight_bytes},
          {"peak_rss_bytes", r.peak_rss_bytes},
          {"tensor_names", r.tensor_names},
          {"max_resident_experts", r.max_resident_experts},
          {"expert", {r.expert_uses, r.expert_hits, r.expert_loads, r.expert_evictions, r.expert_bytes_loaded}},
          {"gpu_memory", r.gpu_memory},
          {"weights_in_place", r.weights_in_place}};
}

// Throws nlohmann::json::exception for a malformed report (the caller names the host).
inline SegmentReport report_from_json(const nlohmann::json& j) {
  SegmentReport r;
  r.name = j.at("name");
  r.kind = j.at("kind");
  r.pid = j.at("pid");
  r.tensors = j.at("tensors");
  r.weight_bytes = j.at("weight_bytes");
  r.peak_rss_bytes = j.at("peak_rss_bytes");
  r.tensor_names = j.at("tensor_names").get<std::vector<std::string>>();
  r.max_resident_experts = j.at("max_resident_experts");
  const auto& e = j.at("expert");
  r.expert_uses = e.at(0);
  r.expert_hits = e.at(1);
  r.expert_loads = e.at(2);
  r.expert_evictions = e.at(3);
  r.expert_bytes_loaded = e.at(4);
  r.gpu_memory = j.at("gpu_memory");
  r.weights_in_place = j.at("weights_in_place");
  return r;
}

}  // namespace segpipe::multihost
