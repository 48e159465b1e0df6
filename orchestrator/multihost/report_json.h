// A segment's report (runner.h) as JSON, for an agent to send its host's reports to rank 0.
#pragma once
#include <array>
#include <nlohmann/json.hpp>

#include "orchestrator/drivers/runner.h"

namespace segpipe::multihost {

// The report's fields that travel under their own key, listed once for both directions: calls
// f(key, member) on each (Report is SegmentReport or const SegmentReport). `host` does not travel: rank 0
// sets it. The expert counters travel as one array, "expert".
template <class Report, class F>
void each_report_field(Report& r, F&& f) {
  f("name", r.name);
  f("kind", r.kind);
  f("pid", r.pid);
  f("tensors", r.tensors);
  f("weight_bytes", r.weight_bytes);
  f("peak_rss_bytes", r.peak_rss_bytes);
  f("tensor_names", r.tensor_names);
  f("max_resident_experts", r.max_resident_experts);
  f("gpu_memory", r.gpu_memory);
  f("weights_in_place", r.weights_in_place);
}

// The expert counters in the order of the "expert" array.
template <class Report>
auto expert_counters(Report& r) {
  return std::array{&r.expert_uses, &r.expert_hits, &r.expert_loads, &r.expert_evictions, &r.expert_bytes_loaded};
}

inline nlohmann::json report_to_json(const SegmentReport& r) {
  nlohmann::json expert = nlohmann::json::array();
  for (const uint64_t* c : expert_counters(r)) expert.push_back(*c);
  nlohmann::json j = {{"expert", expert}};
  each_report_field(r, [&](const char* key, const auto& v) { j[key] = v; });
  return j;
}

// Throws nlohmann::json::exception for a malformed report (the caller names the host).
inline SegmentReport report_from_json(const nlohmann::json& j) {
  SegmentReport r;
  each_report_field(r, [&](const char* key, auto& v) { j.at(key).get_to(v); });
  const auto& e = j.at("expert");
  const auto counters = expert_counters(r);
  for (size_t i = 0; i < counters.size(); i++) e.at(i).get_to(*counters[i]);
  return r;
}

}  // namespace segpipe::multihost
