#include "workers/protocol.h"

#include <algorithm>
#include <iterator>

#include "segments/core/errors.h"
#include "segments/core/segment_params_json.h"

namespace segpipe::proto {

nlohmann::json to_json(const WorkerSpec& s) {
  nlohmann::json banks = nlohmann::json::array();
  for (auto& b : s.bank_list) banks.push_back({b.index, b.channel_block, b.layer_first, b.layer_last, b.name});
  nlohmann::json j = {{"arena", s.arena},
                      {"index", s.index},
                      {"name", s.name},
                      {"model_dir", s.model_dir},
                      {"threads", s.threads},
                      {"max_seq", s.max_seq},
                      {"max_tokens", s.max_tokens},
                      {"capture_tokens", s.capture_tokens},
                      {"timeout_ms", s.timeout_ms},
                      {"parent_pid", s.parent_pid},
                      {"blocks",
                       {s.status_block, s.channel_block, s.kv_block, s.capture_block, s.norm_block, s.moe_x,
                        s.moe_experts, s.moe_weights, s.moe_slots}},
                      {"bank_list", banks}};
  write_segment_params(j, s);
  return j;
}

namespace {

// The spec's values the worker sizes and indexes with: a spec that breaks one is refused here, before
// anything is opened (the spec comes from the orchestrator, but it is a command line all the same).
void check_spec(const WorkerSpec& s) {
  auto bad = [](const std::string& why) { throw InputError("worker spec: " + why); };
  if (s.index < 0) bad("'index' is negative");
  if (s.threads < 1) bad("'threads' must be >= 1");
  if (s.max_seq < 1 || s.max_tokens < 1) bad("'max_seq' and 'max_tokens' must be >= 1");
  if (s.capture_tokens < 0) bad("'capture_tokens' is negative");
  if (s.timeout_ms < 1) bad("'timeout_ms' must be >= 1");
  if (s.max_resident_experts < 0) bad("'max_resident_experts' is negative");
  if (s.layer_first > s.layer_last || s.layer_first < -1) bad("'layers' is not a range");
  if (s.expert_first > s.expert_last || s.expert_first < -1) bad("'experts' is not a range");
  for (const auto& b : s.bank_list)
    if (b.index < 0 || b.layer_first > b.layer_last || b.layer_first < 0) bad("bank '" + b.name + "' out of range");
}

}  // namespace

WorkerSpec worker_spec_from_json(const nlohmann::json& j) {
  // A missing key, a value of the wrong type or out of its integer's range is a bad spec (InputError),
  // not a json exception escaping from the worker's start.
  try {
    WorkerSpec s = worker_spec_from_json_unchecked(j);
    check_spec(s);
    return s;
  } catch (const nlohmann::json::exception& e) {
    throw InputError(std::string("worker spec: ") + e.what());
  }
}

WorkerSpec worker_spec_from_json_unchecked(const nlohmann::json& j) {
  WorkerSpec s;
  s.arena = j.at("arena");
  s.index = j.at("index");
  s.name = j.at("name");
  read_segment_params(j, s, "worker spec");
  s.model_dir = j.at("model_dir");
  s.threads = j.at("threads");
  s.max_seq = j.at("max_seq");
  s.max_tokens = j.at("max_tokens");
  s.capture_tokens = j.at("capture_tokens");
  s.timeout_ms = j.at("timeout_ms");
  s.parent_pid = j.at("parent_pid");
  // .at(): operator[] on a const json does not check its index.
  const auto& b = j.at("blocks");
  s.status_block = b.at(0);
  s.channel_block = b.at(1);
  s.kv_block = b.at(2);
  s.capture_block = b.at(3);
  s.norm_block = b.at(4);
  s.moe_x = b.at(5);
  s.moe_experts = b.at(6);
  s.moe_weights = b.at(7);
  s.moe_slots = b.at(8);
  for (auto& x : j.at("bank_list"))
    s.bank_list.push_back({x.at(0), x.at(1), x.at(2), x.at(3), x.size() > 4 ? x.at(4).get<std::string>() : std::string()});
  return s;
}

}  // namespace segpipe::proto
