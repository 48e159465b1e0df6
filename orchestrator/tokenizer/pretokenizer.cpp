#include "orchestrator/tokenizer/pretokenizer.h"

#include <algorithm>
#include <utility>

namespace segpipe::tok {
namespace {

// The regex ByteLevel applies when use_regex is true (GPT-2's, as in tokenizers' byte_level.rs).
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

struct Span {
  size_t start, end;
  bool is_match;
};

// Hugging Face's NormalizedString::split: turns (range, is_match) runs into pieces per behavior.
void apply_behavior(std::vector<Span>& spans, SplitBehavior b) {
  std::vector<Span> acc;
  acc.reserve(spans.size());
  bool previous_match = false;
  switch (b) {
    case SplitBehavior::Isolated:
      return;
    case SplitBehavior::Removed:
      for (const Span& s : spans)
        if (!s.is_match) acc.push_back(s);
      break;
    case SplitBehavior::MergedWithPrevious:
      for (const Span& s : spans) {
        if (s.is_match && !previous_match && !acc.empty()) acc.back().end = s.end;
        else acc.push_back(s);
        previous_match = s.is_match;
      }
      break;
    case SplitBehavior::MergedWithNext:
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->is_match && !previous_match && !acc.empty()) acc.back().start = it->start;
        else acc.push_back(*it);
        previous_match = it->is_match;
      }
      std::reverse(acc.begin(), acc.end());
      break;
    case SplitBehavior::Contiguous:
      for (const Span& s : spans) {
        if (s.is_match == previous_match && !acc.empty()) acc.back().end = s.end;
        else acc.push_back(s);
        previous_match = s.is_match;
      }
      break;
  }
  spans = std::move(acc);
}

void split_with(const Regex& re, SplitBehavior behavior, bool invert, std::string_view piece,
                std::vector<std::string_view>& out) {
  std::vector<std::pair<size_t, size_t>> matches;
  re.find_all(piece, matches);
  if (behavior == SplitBehavior::Isolated && !invert) {
    // The common case (Qwen, GPT-2): every gap and every match is a piece; no need to build spans.
    size_t prev = 0;
    for (auto [s, e] : matches) {
      if (s != prev) out.push_back(piece.substr(prev, s - prev));
      if (e != s) out.push_back(piece.substr(s, e - s));
      prev = e;
    }
    if (prev != piece.size()) out.push_back(piece.substr(prev));
    return;
  }
  std::vector<Span> spans;
  spans.reserve(matches.size() * 2 + 1);
  size_t prev = 0;
  for (auto [s, e] : matches) {
    if (s != prev) spans.push_back({prev, s, false});
    spans.push_back({s, e, true});
    prev = e;
  }
  if (prev != piece.size()) spans.push_back({prev, piece.size(), false});
  if (invert)
    for (Span& s : spans) s.is_match = !s.is_match;
  apply_behavior(spans, behavior);
  for (const Span& s : spans)
    if (s.end > s.start) out.push_back(piece.substr(s.start, s.end - s.start));
}

}  // namespace

PreTokenizer::PreTokenizer(const std::vector<PreTokenizerStep>& steps, const std::string& path) {
  for (size_t i = 0; i < steps.size(); ++i) {
    Step s{steps[i], nullptr};
    const std::string origin = path + ": key 'pre_tokenizer' step " + std::to_string(i);
    if (s.config.kind == PreTokenizerStep::Kind::Split) {
      s.regex = std::make_unique<Regex>(s.config.pattern, s.config.pattern_is_regex, origin);
    } else if (s.config.use_regex) {
      s.regex = std::make_unique<Regex>(kGpt2Pattern, true, origin);
    } else if (!s.config.add_prefix_space) {
      continue;  // ByteLevel without regex or prefix only maps bytes, which BPE does on its own
    }
    steps_.push_back(std::move(s));
  }
}

void PreTokenizer::split(std::string_view text, std::vector<std::string_view>& out,
                         std::deque<std::string>& storage) const {
  if (text.empty()) return;
  std::vector<std::string_view> cur{text}, next;
  for (const Step& step : steps_) {
    next.clear();
    for (std::string_view piece : cur) {
      if (step.config.kind == PreTokenizerStep::Kind::Split) {
        split_with(*step.regex, step.config.behavior, step.config.invert, piece, next);
        continue;
      }
      // ByteLevel: optional prefix space (per piece, as tokenizers does), then optional GPT-2 split.
      if (step.config.add_prefix_space && piece.front() != ' ') {
        std::string& spaced = storage.emplace_back();
        spaced.reserve(piece.size() + 1);
        spaced.push_back(' ');
        spaced.append(piece);
        piece = spaced;
      }
      if (step.regex) split_with(*step.regex, SplitBehavior::Isolated, false, piece, next);
      else next.push_back(piece);
    }
    std::swap(cur, next);
  }
  out.insert(out.end(), cur.begin(), cur.end());
}

}  // namespace segpipe::tok
