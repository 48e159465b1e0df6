#include "workers/protocol.h"

namespace segpipe::proto {

nlohmann::json to_json(const WorkerSpec& s) {
  nlohmann::json banks = nlohmann::json::array();
  for (auto& b : s.bank_list) banks.push_back({b.index, b.channel_block, b.layer_first, b.layer_last, b.name});
  return {{"arena", s.arena},           {"index", s.index},
          {"name", s.name},             {"kind", s.kind},
          {"model_dir", s.model_dir},   {"layers", {s.layer_first, s.layer_last}},
          {"banks", s.banks},           {"experts", {s.expert_first, s.expert_last}},
          {"threads", s.threads},       {"max_seq", s.max_seq},
          {"max_tokens", s.max_tokens}, {"capture_tokens", s.capture_tokens},
          {"timeout_ms", s.timeout_ms}, {"parent_pid", s.parent_pid},
          {"blocks",
           {s.status_block, s.channel_block, s.kv_block, s.capture_block, s.norm_block, s.moe_x, s.moe_experts,
            s.moe_weights, s.moe_slots}},
          {"bank_list", banks},         {"max_resident_experts", s.max_resident_experts}};
}

WorkerSpec worker_spec_from_json(const nlohmann::json& j) {
  WorkerSpec s;
  s.arena = j.at("arena");
  s.index = j.at("index");
  s.name = j.at("name");
  s.kind = j.at("kind");
  s.model_dir = j.at("model_dir");
  s.layer_first = j.at("layers")[0];
  s.layer_last = j.at("layers")[1];
  s.banks = j.at("banks");
  s.expert_first = j.at("experts")[0];
  s.expert_last = j.at("experts")[1];
  s.threads = j.at("threads");
  s.max_seq = j.at("max_seq");
  s.max_tokens = j.at("max_tokens");
  s.capture_tokens = j.at("capture_tokens");
  s.timeout_ms = j.at("timeout_ms");
  s.parent_pid = j.at("parent_pid");
  const auto& b = j.at("blocks");
  s.status_block = b[0];
  s.channel_block = b[1];
  s.kv_block = b[2];
  s.capture_block = b[3];
  s.norm_block = b[4];
  s.moe_x = b[5];
  s.moe_experts = b[6];
  s.moe_weights = b[7];
  s.moe_slots = b[8];
  s.max_resident_experts = j.value("max_resident_experts", 0);
  for (auto& x : j.at("bank_list"))
    s.bank_list.push_back({x[0], x[1], x[2], x[3], x.size() > 4 ? x[4].get<std::string>() : std::string()});
  return s;
}

}  // namespace segpipe::proto
