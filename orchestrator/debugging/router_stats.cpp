#include "orchestrator/debugging/router_stats.h"

#include <algorithm>
#include <cstdio>
#include <numeric>
#include <string>

namespace segpipe {

void RouterStats::add(int layer, const int32_t* experts, int64_t T, int k) {
  auto& c = counts_[layer];
  c.resize(static_cast<size_t>(E_), 0);
  for (int64_t i = 0; i < T * k; i++)
    if (experts[i] >= 0 && experts[i] < E_) c[static_cast<size_t>(experts[i])]++;
  tokens_[layer] += static_cast<uint64_t>(T);
}

namespace {
struct LayerSummary {
  uint64_t slots = 0;
  std::vector<int> by_use;  // experts, most used first (ties: lower id first)
  std::vector<int> never;
  double top1 = 0, topk = 0;
};
LayerSummary summarize(const std::vector<uint64_t>& c, int k) {
  LayerSummary s;
  s.slots = std::accumulate(c.begin(), c.end(), uint64_t{0});
  s.by_use.resize(c.size());
  std::iota(s.by_use.begin(), s.by_use.end(), 0);
  std::stable_sort(s.by_use.begin(), s.by_use.end(), [&](int a, int b) { return c[static_cast<size_t>(a)] > c[static_cast<size_t>(b)]; });
  for (size_t e = 0; e < c.size(); e++)
    if (c[e] == 0) s.never.push_back(static_cast<int>(e));
  if (s.slots) {
    s.top1 = static_cast<double>(c[static_cast<size_t>(s.by_use[0])]) / static_cast<double>(s.slots);
    uint64_t t = 0;
    for (int i = 0; i < std::min<int>(k, static_cast<int>(c.size())); i++) t += c[static_cast<size_t>(s.by_use[static_cast<size_t>(i)])];
    s.topk = static_cast<double>(t) / static_cast<double>(s.slots);
  }
  return s;
}
}  // namespace

nlohmann::json RouterStats::to_json() const {
  nlohmann::json layers = nlohmann::json::array();
  for (auto& [l, c] : counts_) {
    LayerSummary s = summarize(c, k_);
    std::vector<int> top(s.by_use.begin(), s.by_use.begin() + std::min<size_t>(s.by_use.size(), static_cast<size_t>(k_)));
    layers.push_back({{"layer", l},
                      {"tokens", tokens_.at(l)},
                      {"slots", s.slots},
                      {"counts", c},
                      {"experts_used", static_cast<int>(c.size() - s.never.size())},
                      {"most_used", top},
                      {"top1_share", s.top1},
                      {"topk_share", s.topk},
                      {"never_used", s.never}});
  }
  return {{"num_experts", E_}, {"top_k", k_}, {"layers", layers}};
}

void RouterStats::print(FILE* out) const {
  for (auto& [l, c] : counts_) {
    LayerSummary s = summarize(c, k_);
    std::string top;
    for (int i = 0; i < std::min<int>(k_, static_cast<int>(c.size())); i++) {
      int e = s.by_use[static_cast<size_t>(i)];
      char buf[64];
      std::snprintf(buf, sizeof buf, "%se%d %.0f%%", i ? ", " : "", e,
                    s.slots ? 100.0 * static_cast<double>(c[static_cast<size_t>(e)]) / static_cast<double>(s.slots) : 0.0);
      top += buf;
    }
    std::string never;
    for (int e : s.never) never += " " + std::to_string(e);
    std::fprintf(out, "  layer %-3d %5llu tokens  %3d/%d experts used  top-%d take %5.1f%% (%s)  never used:%s\n", l,
                 static_cast<unsigned long long>(tokens_.at(l)), static_cast<int>(c.size() - s.never.size()), E_, k_,
                 100.0 * s.topk, top.c_str(), never.empty() ? " -" : never.c_str());
  }
}

}  // namespace segpipe
