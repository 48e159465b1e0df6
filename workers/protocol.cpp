#include "workers/protocol.h"

#include <algorithm>
#include <array>
#include <iterator>

#include "segments/core/errors.h"
#include "segments/core/segment_params_json.h"

namespace segpipe::proto {

namespace {

// The spec's fields that travel under their own key, listed once for both directions: calls
// f(key, member) on each (Spec is WorkerSpec or const WorkerSpec). The segment's params travel as
// segment_params_json.h writes them, the blocks as one array and the banks as an array of arrays.
template <class Spec, class F>
void each_spec_field(Spec& s, F&& f) {
  f("arena", s.arena);
  f("index", s.index);
  f("name", s.name);
  f("model_dir", s.model_dir);
  f("threads", s.threads);
  f("max_seq", s.max_seq);
  f("max_tokens", s.max_tokens);
  f("capture_tokens", s.capture_tokens);
  f("timeout_ms", s.timeout_ms);
  f("parent_pid", s.parent_pid);
}

// The spec's blocks in the order of its "blocks" array.
template <class Spec>
auto spec_blocks(Spec& s) {
  return std::array{&s.status_block,   &s.channel_block,     &s.kv_block,          &s.capture_block,
                    &s.norm_block,     &s.moe_x,             &s.moe_experts,       &s.moe_weights,
                    &s.moe_slots,      &s.media_rope,        &s.media_embed_index, &s.media_embed_rows,
                    &s.media_ds_index, &s.media_ds_rows,     &s.enc_in,            &s.enc_grids,
                    &s.enc_out};
}

}  // namespace

nlohmann::json to_json(const WorkerSpec& s) {
  nlohmann::json banks = nlohmann::json::array(), blocks = nlohmann::json::array();
  for (auto& b : s.bank_list) banks.push_back({b.index, b.channel_block, b.layer_first, b.layer_last, b.name});
  for (const uint32_t* b : spec_blocks(s)) blocks.push_back(*b);
  nlohmann::json j = {{"blocks", blocks}, {"bank_list", banks}};
  each_spec_field(s, [&](const char* key, const auto& v) { j[key] = v; });
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
  each_spec_field(s, [&](const char* key, auto& v) { j.at(key).get_to(v); });
  read_segment_params(j, s, "worker spec");
  // .at(): operator[] on a const json does not check its index.
  const auto& b = j.at("blocks");
  const auto blocks = spec_blocks(s);
  for (size_t i = 0; i < blocks.size(); i++) b.at(i).get_to(*blocks[i]);
  for (auto& x : j.at("bank_list"))
    s.bank_list.push_back({x.at(0), x.at(1), x.at(2), x.at(3), x.size() > 4 ? x.at(4).get<std::string>() : std::string()});
  return s;
}

}  // namespace segpipe::proto
