// A main() for fuzz_tokenizer.cpp where libFuzzer is not available (gcc CI): feeds the parity corpus,
// mutations of it, and deterministic pseudo-random byte strings and code point strings.
// usage: tokenizer_fuzz_standalone CORPUS.json [ROUNDS]
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "orchestrator/tokenizer/utf8.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

int feed(const std::string& s) { return LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(s.data()), s.size()); }

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s CORPUS.json [ROUNDS]\n", argv[0]);
    return 2;
  }
  std::ifstream f(argv[1]);
  const auto corpus = nlohmann::json::parse(f);
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 600;
  size_t inputs = 0;
  for (const auto& s : corpus) inputs += (feed(s.get<std::string>()), 1);

  std::mt19937_64 rng(20261126);
  // Code points that stress the pipeline: ASCII, combining marks, Hangul jamo, CJK, emoji, the
  // characters of the added tokens, whitespace of every kind.
  const char32_t interesting[] = {'<', '|', '>', 'i', 'm', '_', 's', 't', 'a', 'r', 'e', 'n', 'd', ' ', '\n', '\r',
                                  '\t', '\'', 'S', 'T', '0', '9', 0x0301, 0x0338, 0x0308, 0x1100, 0x1161, 0x11A8,
                                  0xAC00, 0x4E2D, 0x1F600, 0x1F3FD, 0x200D, 0x00A0, 0x3000, 0x0085, 0x180E, 0xFEFF};
  for (int r = 0; r < rounds; ++r) {
    std::string s;
    const size_t n = rng() % 64;
    switch (r % 3) {
      case 0:  // raw bytes, mostly invalid UTF-8
        for (size_t i = 0; i < n; ++i) s.push_back(static_cast<char>(rng()));
        break;
      case 1:  // valid UTF-8 from the interesting set and random planes (no surrogates)
        for (size_t i = 0; i < n; ++i) {
          char32_t cp = rng() % 2 ? interesting[rng() % std::size(interesting)] : static_cast<char32_t>(rng() % 0x30000);
          if (cp >= 0xD800 && cp <= 0xDFFF) cp = 'x';
          segpipe::utf8::append_code_point(s, cp);
        }
        if (rng() % 4 == 0) s.insert(rng() % (s.size() + 1), rng() % 2 ? "<|im_start|>" : "<think>");
        break;
      default: {  // a corpus string with a few bytes flipped, inserted or removed
        s = corpus[rng() % corpus.size()].get<std::string>();
        for (int k = 0, m = 1 + static_cast<int>(rng() % 3); k < m && !s.empty(); ++k) {
          const size_t at = rng() % s.size();
          switch (rng() % 3) {
            case 0: s[at] = static_cast<char>(rng()); break;
            case 1: s.insert(at, 1, static_cast<char>(rng())); break;
            default: s.erase(at, 1);
          }
        }
      }
    }
    feed(s);
    ++inputs;
  }
  std::printf("tokenizer fuzz (standalone): %zu inputs, no failures\n", inputs);
  return 0;
}
