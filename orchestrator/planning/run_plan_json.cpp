#include "orchestrator/planning/run_plan_json.h"

#include "segments/core/errors.h"
#include "segments/core/segment_params_json.h"

namespace segpipe {

nlohmann::json to_json(const RunPlan& p) {
  nlohmann::json segs = nlohmann::json::array();
  for (const SegmentDesc& d : p.segments) {
    nlohmann::json j = {{"name", d.name}, {"threads", d.threads}, {"host", d.host}};
    write_segment_params(j, d);
    segs.push_back(j);
  }
  nlohmann::json hosts = nlohmann::json::array();
  for (const HostDesc& h : p.hosts) hosts.push_back({h.name, h.address});
  return {{"model_dir", p.model_dir},   {"tokenizer_dir", p.tokenizer_dir}, {"source", p.source},
          {"segments", segs},           {"hosts", hosts},                   {"inproc", p.inproc},
          {"max_seq", p.max_seq},       {"threads", p.threads},             {"gpu_kernels", to_string(p.gpu_kernels)},
          {"gpu_memory", to_string(p.gpu_memory)}, {"restart", p.restart},  {"timeout_ms", p.timeout_ms}};
}

RunPlan run_plan_from_json(const nlohmann::json& j) {
  auto bad = [](const std::string& why) -> InputError { return InputError("plan from the orchestrator: " + why); };
  try {
    RunPlan p;
    p.model_dir = j.at("model_dir");
    p.tokenizer_dir = j.at("tokenizer_dir");
    p.source = j.at("source");
    p.inproc = j.at("inproc");
    p.max_seq = j.at("max_seq");
    p.threads = j.at("threads");
    p.restart = j.at("restart");
    p.timeout_ms = j.at("timeout_ms");
    const auto k = parse_gpu_kernels(j.at("gpu_kernels").get<std::string>());
    const auto m = parse_gpu_memory(j.at("gpu_memory").get<std::string>());
    if (!k || !m) throw bad("gpu_kernels / gpu_memory");
    p.gpu_kernels = *k;
    p.gpu_memory = *m;
    p.hosts.clear();
    for (const auto& h : j.at("hosts")) p.hosts.push_back(HostDesc{h.at(0), h.at(1)});
    if (p.hosts.empty()) throw bad("no hosts");
    for (const auto& s : j.at("segments")) {
      SegmentDesc d;
      d.name = s.at("name");
      read_segment_params(s, d, "plan from the orchestrator: segment '" + d.name + "'");
      d.threads = s.at("threads");
      d.host = s.at("host");
      if (d.host < 0 || d.host >= static_cast<int>(p.hosts.size())) throw bad("segment '" + d.name + "': host");
      p.segments.push_back(d);
    }
    if (p.max_seq < 1 || p.threads < 1 || p.timeout_ms < 1) throw bad("max_seq, threads or timeout_ms");
    return p;
  } catch (const nlohmann::json::exception& e) {
    throw bad(e.what());
  }
}

}  // namespace segpipe
