// segpipe plan --model DIR [--layer-groups N] [--expert-banks K] [--max-segment-bytes B]
#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "orchestrator/commands/cli_args.h"
#include "orchestrator/commands/commands.h"
#include "orchestrator/planning/plan_builder.h"
#include "segments/checkpoint/checkpoint.h"
#include "segments/core/errors.h"
#include "orchestrator/pipeline/hf_cache.h"
#include "segments/model/tensor_map.h"

namespace segpipe {

namespace {

uint64_t role_bytes(Checkpoint& ck, const std::vector<TensorRole>& roles) {
  uint64_t b = 0;
  for (auto& r : roles)
    if (ck.has(r.name)) {
      const TensorEntry& e = ck.entry(r.name);
      b += e.end - e.begin;
    }
  return b;
}

// Contiguous groups of layers with balanced bytes: cut where the running sum crosses i/N of the total.
std::vector<std::pair<int, int>> balance(const std::vector<uint64_t>& bytes, int n) {
  uint64_t total = 0;
  for (auto b : bytes) total += b;
  std::vector<std::pair<int, int>> g;
  int L = static_cast<int>(bytes.size()), start = 0;
  uint64_t run = 0;
  for (int i = 0; i < L; i++) {
    run += bytes[static_cast<size_t>(i)];
    int groups_left = n - static_cast<int>(g.size());
    int layers_left = L - i - 1;
    bool cut = static_cast<long double>(run) >= static_cast<long double>(total) * (g.size() + 1) / n;
    if (groups_left > 1 && (cut || layers_left < groups_left)) {
      g.push_back({start, i});
      start = i + 1;
    }
  }
  g.push_back({start, L - 1});
  return g;
}

}  // namespace

int cmd_plan(const Args& args) {
  CliArgs a("plan", args, {"--model", "--layer-groups", "--expert-banks", "--max-segment-bytes"}, {});
  if (a.help()) {
    std::printf(
        "usage: segpipe plan --model DIR [--layer-groups N] [--expert-banks K] [--max-segment-bytes BYTES]\n"
        "prints a valid pipeline YAML: embeddings, N layer groups balanced by weight bytes, K expert banks\n"
        "(over every MoE layer), lm_head. --max-segment-bytes raises N (and K) until every segment fits.\n");
    return 0;
  }
  if (!a.get("--model")) throw InputError("plan: --model DIR is required");
  // A folder, or a Hugging Face repository id in the local cache (the plan then names its snapshot).
  std::string dir = hf::resolve_model(*a.get("--model"));
  auto ck = Checkpoint::open(dir);
  ModelConfig c = parse_model_config(ck->config_json(), dir + "/config.json");
  int n = static_cast<int>(a.get_int("--layer-groups", 0, 1, c.num_layers));
  int k = static_cast<int>(a.get_int("--expert-banks", 0, 0, std::max(0, c.num_experts)));
  if (k > 0 && c.num_experts == 0) throw InputError("plan: --expert-banks: the model has no routed experts");
  uint64_t maxb = static_cast<uint64_t>(a.get_int("--max-segment-bytes", 0, 1, (1ll << 62)));

  std::vector<uint64_t> attn(static_cast<size_t>(c.num_layers)), experts(static_cast<size_t>(c.num_layers));
  for (int l = 0; l < c.num_layers; l++) {
    attn[static_cast<size_t>(l)] = role_bytes(*ck, layer_roles(c, l));
    if (c.is_moe_layer(l)) {
      ExpertLayout lay = expert_layout(*ck, c, l);
      if (lay == ExpertLayout::Fused)
        experts[static_cast<size_t>(l)] = role_bytes(*ck, expert_roles(c, l, 0, lay));
      else
        for (int e = 0; e < c.num_experts; e++) experts[static_cast<size_t>(l)] += role_bytes(*ck, expert_roles(c, l, e, lay));
    }
  }
  uint64_t all_experts = 0;
  for (auto b : experts) all_experts += b;
  int moe_first = -1, moe_last = -1;
  for (int l = 0; l < c.num_layers; l++)
    if (c.is_moe_layer(l)) {
      if (moe_first < 0) moe_first = l;
      moe_last = l;
    }
  auto layer_bytes = [&](bool banks) {
    std::vector<uint64_t> v(attn);
    if (!banks)
      for (size_t i = 0; i < v.size(); i++) v[i] += experts[i];
    return v;
  };
  PlannedCut cut;
  cut.model = std::filesystem::absolute(dir).lexically_normal().string();
  cut.embed_bytes = role_bytes(*ck, {embed_role(c)});
  cut.head_bytes = role_bytes(*ck, lm_head_roles(c));
  if (n == 0) n = 1;
  for (;;) {
    auto lb = layer_bytes(k > 0);
    cut.groups = balance(lb, n);
    cut.group_bytes.clear();
    for (auto [f, l] : cut.groups) {
      uint64_t s = 0;
      for (int i = f; i <= l; i++) s += lb[static_cast<size_t>(i)];
      cut.group_bytes.push_back(s);
    }
    uint64_t worst = *std::max_element(cut.group_bytes.begin(), cut.group_bytes.end());
    uint64_t bank = k > 0 ? all_experts / static_cast<uint64_t>(k) + 1 : 0;
    if (!maxb || (worst <= maxb && bank <= maxb)) break;
    if (worst > maxb && n < c.num_layers && !a.has("--layer-groups")) {
      n++;
      continue;
    }
    if (c.num_experts > 0 && !a.has("--expert-banks") && k < c.num_experts && (bank > maxb || worst > maxb)) {
      k = k == 0 ? 2 : k + 1;
      continue;
    }
    throw InputError("plan: --max-segment-bytes " + std::to_string(maxb) +
                     " cannot be met (a single layer or expert bank is larger); give more --expert-banks or a larger limit");
  }
  for (auto [f, l] : cut.groups) {
    bool any = false;
    for (int i = f; i <= l; i++) any |= c.is_moe_layer(i);
    cut.group_banks.push_back(k > 0 && any);
  }
  if (k > 0) {
    cut.bank_layer_first = moe_first;
    cut.bank_layer_last = moe_last;
    for (int b = 0; b < k; b++) {
      int e0 = c.num_experts * b / k, e1 = c.num_experts * (b + 1) / k - 1;
      cut.banks.push_back({e0, e1});
      cut.bank_bytes.push_back(all_experts * static_cast<uint64_t>(e1 - e0 + 1) / static_cast<uint64_t>(c.num_experts));
    }
  }
  std::fputs(emit_cut_yaml(cut).c_str(), stdout);
  return 0;
}

}  // namespace segpipe
