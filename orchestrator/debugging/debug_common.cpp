#include "orchestrator/debugging/debug_common.h"

#include <filesystem>

#include "orchestrator/tokenizer/tokenizer.h"
#include "segments/core/errors.h"

namespace segpipe {

namespace fs = std::filesystem;

std::vector<std::vector<int32_t>> prompts_from_args(const CliArgs& a, const LoadedPlan& lp, const std::string& command,
                                                    const std::vector<int32_t>& fallback) {
  std::vector<std::vector<int32_t>> out;
  std::vector<std::string> texts = a.all("--prompt");
  if (!texts.empty()) {
    const std::string& td = lp.plan.tokenizer_dir;
    bool have = fs::exists(fs::path(td) / "tokenizer.json") ||
                (fs::is_regular_file(td) && fs::path(td).extension() == ".json");
    if (!have) throw InputError(command + ": --prompt needs a tokenizer, but " + td + " has no tokenizer.json; pass --tokens \"ID ...\"");
    Tokenizer tok = Tokenizer::load(td);
    for (auto& t : texts) {
      out.push_back(tok.encode(t));
      if (out.back().empty()) throw InputError(command + ": --prompt '" + t + "' encodes to no tokens");
    }
  }
  for (auto& t : a.all("--tokens")) {
    out.push_back(parse_id_list(t, "--tokens"));
    if (out.back().empty()) throw InputError(command + ": --tokens is empty");
  }
  for (auto& p : out)
    for (int32_t id : p)
      if (id < 0 || id >= lp.cfg.vocab)
        throw InputError(command + ": token id " + std::to_string(id) + " is out of range (vocabulary size " +
                         std::to_string(lp.cfg.vocab) + ")");
  if (out.empty()) {
    if (fallback.empty()) throw InputError(command + ": give --prompt TEXT or --tokens \"ID ...\"");
    out.push_back(fallback);
  }
  return out;
}

int layer_of_boundary(const std::string& b) {
  if (b.rfind("layers.", 0) != 0) return -1;
  return std::stoi(b.substr(7));
}

std::string segment_of_boundary(const RunPlan& plan, const std::string& b) {
  int layer = layer_of_boundary(b);
  for (const SegmentDesc& s : plan.segments) {
    // An encoder's rows: "<kind>.<j>" (the j-th piece of media of the prompt).
    if (is_encoder(s.kind) && b.rfind(std::string(to_string(s.kind)) + ".", 0) == 0) return s.name;
    if (b == "embeddings" && s.kind == SegmentKind::embeddings) return s.name;
    if ((b == "norm" || b == "logits") && s.kind == SegmentKind::lm_head) return s.name;
    if (layer >= 0 && s.kind == SegmentKind::layers && layer >= s.layer_first && layer <= s.layer_last) return s.name;
  }
  return "";
}

int32_t argmax_row(const float* v, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; i++)
    if (v[i] > v[best]) best = i;
  return static_cast<int32_t>(best);
}

}  // namespace segpipe
