// segpipe inspect DIR: architecture, shapes, dtypes, bytes; missing, extra and malformed tensors.
#include <cstdio>
#include <cstring>
#include <map>
#include <set>

#include "orchestrator/commands/cli_args.h"
#include "orchestrator/commands/commands.h"
#include "segments/checkpoint/checkpoint.h"
#include "segments/core/errors.h"
#include "segments/model/tensor_map.h"

namespace segpipe {

namespace {

std::string human_bytes(uint64_t b) {
  char buf[32];
  if (b >= (1ull << 30))
    std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(b) / (1ull << 30));
  else if (b >= (1ull << 20))
    std::snprintf(buf, sizeof buf, "%.2f MiB", static_cast<double>(b) / (1ull << 20));
  else
    std::snprintf(buf, sizeof buf, "%.1f KiB", static_cast<double>(b) / 1024);
  return buf;
}

// "thinker.audio_tower.conv2d1.weight" -> "thinker.audio_tower"; "talker.model.x" -> "talker"
std::string part_of(const std::string& name) {
  for (const char* p : {"thinker.audio_tower", "thinker.visual", "talker", "code2wav", "thinker.model", "thinker"})
    if (name.rfind(std::string(p) + ".", 0) == 0) return p;
  auto dot = name.find('.');
  return dot == std::string::npos ? name : name.substr(0, dot);
}

// NaN and Inf of every float dtype have all exponent bits set; the check reads the bits, so it needs
// no conversion and treats the three dtypes alike.
struct NonFinite {
  uint64_t count = 0;
  int64_t first = -1;  // flat index of the first one
};
NonFinite non_finite(const TensorView& v) {
  NonFinite r;
  const int64_t n = v.numel();
  auto scan = [&](auto word, auto exp_mask) {
    using W = decltype(word);
    const W* p = static_cast<const W*>(v.data);
    for (int64_t i = 0; i < n; i++) {
      W w;
      std::memcpy(&w, p + i, sizeof w);
      if ((w & exp_mask) == exp_mask && r.count++ == 0) r.first = i;
    }
  };
  if (v.dtype == DType::F32) scan(uint32_t{0}, uint32_t{0x7f800000u});
  if (v.dtype == DType::BF16) scan(uint16_t{0}, uint16_t{0x7f80u});
  if (v.dtype == DType::F16) scan(uint16_t{0}, uint16_t{0x7c00u});
  return r;
}

}  // namespace

int cmd_inspect(const Args& args) {
  CliArgs a("inspect", args, {}, {"--check-values"});
  if (a.help() || a.positional().size() != 1) {
    std::fputs("usage: segpipe inspect DIR [--check-values]\n  summarizes a checkpoint: architecture, shapes, dtypes, bytes, and any\n"
               "  missing, extra or malformed tensors (exit 1 when the text model is incomplete)\n"
               "  --check-values   also read every weight of the text model: NaN or Inf makes it exit 1\n",
               a.help() ? stdout : stderr);
    return a.help() ? 0 : 2;
  }
  const std::string dir = a.positional()[0];
  auto ck = Checkpoint::open(dir);
  ck->validate_all();
  ModelConfig c = parse_model_config(ck->config_json(), dir + "/config.json");
  std::printf("checkpoint   %s\n", dir.c_str());
  std::printf("architecture %s (model_type %s)\n", c.arch_name(), c.model_type.c_str());
  std::printf("text model   %d layers, hidden %d, %d query / %d kv heads, head_dim %d, vocab %d\n", c.num_layers,
              c.hidden, c.num_heads, c.num_kv_heads, c.head_dim, c.vocab);
  if (c.num_experts > 0) {
    int moe = 0;
    for (int i = 0; i < c.num_layers; i++) moe += c.is_moe_layer(i);
    std::printf("experts      %d routed, top-%d, moe_intermediate %d, norm_topk_prob %s; %d MoE / %d dense layers\n",
                c.num_experts, c.top_k, c.moe_intermediate, c.norm_topk_prob ? "true" : "false", moe,
                c.num_layers - moe);
  }
  if (c.shared_expert_intermediate > 0)
    std::printf("shared       one shared expert per MoE layer, intermediate %d, sigmoid gate\n",
                c.shared_expert_intermediate);
  std::printf("attention    %s, %s\n", c.qk_norm ? "q/k RMSNorm" : "no q/k norm",
              c.qkv_bias ? "q/k/v biases" : "no biases");
  if (c.intermediate > 0) std::printf("dense MLP    intermediate %d\n", c.intermediate);
  std::printf("rope         theta %g%s%s\n", c.rope_theta, c.mrope_section.empty() ? "" : ", M-RoPE sections",
              c.mrope_section.empty() ? "" : (c.mrope_interleaved ? " (interleaved)" : ""));
  std::printf("embeddings   %s\n", c.tie_word_embeddings ? "tied to lm_head" : "separate lm_head");
  std::printf("files        %zu\n", ck->files().size());

  // Roles of the text model vs what the files hold.
  std::set<std::string> expected;
  std::vector<std::string> missing, malformed, non_finite_values;
  uint64_t text_bytes = 0;
  std::map<std::string, uint64_t> by_dtype;
  for (const TensorRole& r : all_roles(*ck, c)) {
    expected.insert(r.name);
    if (!ck->has(r.name)) {
      missing.push_back(r.name + " (expected " + shape_str(r.shape) + ")");
      continue;
    }
    const TensorEntry& e = ck->entry(r.name);
    // Say which is wrong: "I32 [700, 64], expected [700, 64]" left the reader to guess it was the dtype.
    std::string why;
    if (!is_float_dtype(e.dtype)) why = "dtype " + std::string(dtype_name(e.dtype)) + ", expected F32, BF16 or F16";
    if (e.shape != r.shape)
      why += (why.empty() ? "" : "; ") + std::string("shape ") + shape_str(e.shape) + ", expected " + shape_str(r.shape);
    if (!why.empty()) malformed.push_back(r.name + ": " + dtype_name(e.dtype) + " " + shape_str(e.shape) + ": " + why);
    else if (a.has("--check-values"))
      if (NonFinite nf = non_finite(ck->view(r.name)); nf.count)
        non_finite_values.push_back(r.name + ": " + std::to_string(nf.count) + " NaN/Inf value" + (nf.count == 1 ? "" : "s") +
                                    " (first at element " + std::to_string(nf.first) + ")");
    text_bytes += e.end - e.begin;
    by_dtype[dtype_name(e.dtype)] += e.end - e.begin;
  }
  std::map<std::string, std::pair<size_t, uint64_t>> extra;  // part -> (count, bytes)
  for (const std::string& n : ck->tensor_names()) {
    if (expected.count(n)) continue;
    const TensorEntry& e = ck->entry(n);
    auto& x = extra[part_of(n)];
    x.first++;
    x.second += e.end - e.begin;
  }
  std::printf("text model tensors: %zu, %s", expected.size() - missing.size(), human_bytes(text_bytes).c_str());
  for (auto& [d, b] : by_dtype) std::printf(" [%s %s]", d.c_str(), human_bytes(b).c_str());
  std::printf("\n");
  for (auto& [part, x] : extra)
    std::printf("ignored      %-22s %6zu tensors, %s (not part of the text model)\n", part.c_str(), x.first,
                human_bytes(x.second).c_str());
  for (auto& m : missing) std::printf("MISSING      %s\n", m.c_str());
  for (auto& m : malformed) std::printf("MALFORMED    %s\n", m.c_str());
  for (auto& m : non_finite_values) std::printf("NON-FINITE   %s\n", m.c_str());
  if (!missing.empty() || !malformed.empty()) {
    std::printf("=> incomplete: %zu missing, %zu malformed\n", missing.size(), malformed.size());
    return 1;
  }
  if (!non_finite_values.empty()) {
    std::printf("=> complete, but %zu tensors hold NaN or Inf\n", non_finite_values.size());
    return 1;
  }
  std::printf(a.has("--check-values") ? "=> complete, every weight finite\n" : "=> complete\n");
  return 0;
}

}  // namespace segpipe
