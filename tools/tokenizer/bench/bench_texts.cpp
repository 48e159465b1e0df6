#include "bench_texts.h"

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "orchestrator/tokenizer/utf8.h"

namespace segpipe::bench {
namespace {

// splitmix64: fixed output on every platform, unlike std:: distributions.
struct Rng {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  size_t below(size_t n) { return static_cast<size_t>(next() % n); }
  // Roughly Zipfian index in [0, n): frequent words dominate, as in real text.
  size_t zipf(size_t n) {
    const double u = static_cast<double>(next() >> 11) / 9007199254740992.0;
    return static_cast<size_t>(static_cast<double>(n) * u * u * u) % n;
  }
};

constexpr std::string_view kWords[] = {
    "the", "of", "and", "to", "a", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on", "not",
    "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "had", "they", "you", "were",
    "their", "one", "all", "we", "can", "her", "has", "there", "been", "if", "more", "when", "will", "would",
    "who", "so", "no", "she", "other", "its", "may", "these", "about", "than", "into", "time", "could", "them",
    "people", "only", "new", "some", "what", "two", "first", "then", "do", "any", "like", "my", "now", "over",
    "such", "our", "man", "me", "even", "most", "made", "after", "also", "did", "many", "before", "must",
    "through", "back", "years", "where", "much", "your", "way", "well", "down", "should", "because", "each",
    "just", "those", "how", "too", "little", "state", "good", "very", "make", "world", "still", "own", "see",
    "men", "work", "long", "get", "here", "between", "both", "life", "being", "under", "never", "day", "same",
    "another", "know", "while", "last", "might", "us", "great", "old", "year", "off", "come", "since", "against",
    "go", "came", "right", "used", "take", "three", "government", "development", "understanding", "information",
    "international", "responsibility", "characteristics", "photosynthesis", "tokenization", "transformer",
    "experiment", "measurement", "language", "mountain", "river", "library", "computer", "morning", "question"};

constexpr std::string_view kCode[] = {
    "for (size_t i = 0; i < n; ++i) {\n", "  sum += values[i] * weights[i];\n", "}\n", "if (ptr == nullptr) {\n",
    "  return std::nullopt;\n", "def forward(self, x):\n", "    h = self.norm(x)\n", "    return self.proj(h) + x\n",
    "#include <vector>\n", "import numpy as np\n", "const auto it = map.find(key);\n", "    # TODO: handle overflow\n",
    "struct Config {\n  int hidden_size = 4096;  // model width\n};\n", "let mut buf = Vec::with_capacity(1024);\n",
    "    for name, param in model.named_parameters():\n        print(f\"{name}: {param.shape}\")\n",
    "SELECT user_id, COUNT(*) FROM events WHERE ts >= '2026-01-01' GROUP BY user_id;\n",
    "    if err != nil {\n        return fmt.Errorf(\"open %s: %w\", path, err)\n    }\n",
    "function debounce(fn, ms) { let t; return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); }; }\n",
    "\n", "\t\treturn EXIT_FAILURE;\n", "    assert x.shape == (batch, seq, 128), x.shape\n",
    "  std::printf(\"%d tokens in %.3f s\\n\", count, seconds);\n", "class Tokenizer:\n    \"\"\"BPE tokenizer.\"\"\"\n"};

}  // namespace

std::string english_text(size_t bytes) {
  Rng r{1};
  std::string out;
  out.reserve(bytes + 256);
  bool start = true;
  while (out.size() < bytes) {
    std::string w(kWords[r.zipf(std::size(kWords))]);
    if (start) w[0] = static_cast<char>(w[0] - 'a' + 'A');
    out += w;
    start = false;
    const size_t p = r.below(100);
    if (p < 7) {
      out += ". ";
      start = true;
      if (r.below(8) == 0) out += "\n\n";
    } else if (p < 12) {
      out += ", ";
    } else if (p < 13) {
      out += ' ';
      out += std::to_string(r.below(100000));
      out += ' ';
    } else if (p < 14) {
      out += "'s ";
    } else {
      out += ' ';
    }
  }
  return out;
}

std::string code_text(size_t bytes) {
  Rng r{2};
  std::string out;
  out.reserve(bytes + 256);
  while (out.size() < bytes) out += kCode[r.below(std::size(kCode))];
  return out;
}

std::string cjk_text(size_t bytes) {
  Rng r{3};
  // A frequent-character core (the first few hundred in the CJK block are common enough) plus rarer ones.
  std::string out;
  out.reserve(bytes + 256);
  while (out.size() < bytes) {
    const size_t len = 5 + r.below(25);
    for (size_t i = 0; i < len; ++i) {
      const char32_t cp = r.below(4) ? 0x4E00 + static_cast<char32_t>(r.zipf(600)) : 0x4E00 + static_cast<char32_t>(r.below(0x5000));
      utf8::append_code_point(out, cp);
    }
    const size_t p = r.below(10);
    if (p < 6) out += "，";
    else if (p < 9) out += "。";
    else out += "（2026年）";
    if (r.below(30) == 0) out += "\n";
  }
  return out;
}

}  // namespace segpipe::bench
