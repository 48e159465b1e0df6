// Runs the pipeline fuzz target without libFuzzer, so that gcc builds exercise it in ctest: a fixed
// number of deterministic mutations of the valid examples (byte edits, YAML punctuation, swapped and
// duplicated lines, extreme numbers). Same seed, same inputs, so a failure reproduces.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "tests/pipeline/pipeline_examples.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

struct Rng {  // xorshift64*: deterministic across compilers, unlike std::uniform_int_distribution
  std::uint64_t s;
  std::uint64_t next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 2685821657736338717ull;
  }
  size_t below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(next() % n); }
};

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    lines.push_back(text.substr(start, end - start + 1));
    start = end + 1;
  }
  return lines;
}

std::string join(const std::vector<std::string>& lines) {
  std::string out;
  for (const std::string& l : lines) out += l;
  return out;
}

void mutate(std::string& text, Rng& rng) {
  static const std::string kTokens[] = {
      ":", "-", "[", "]", "{", "}", ",", "#", "&a", "*a", "!", "|", ">", "'", "\"", "\n", "  ", "\t", "~", "null",
      "0", "1", "-1", "99999999999", "1e9", "0x10", ".inf", "true", "banks", "local", "cuda:1", "cuda:7", "bfloat16",
      "kind", "layers", "experts", "name", "device", "segments", "version: 2", "max_resident_experts", "? ", "%YAML",
      "---", "...", "\xff", std::string("\0", 1)};
  size_t pos = rng.below(text.size() + 1);
  switch (rng.below(7)) {
    case 0:  // flip one byte
      if (!text.empty()) text[rng.below(text.size())] ^= static_cast<char>(1u << rng.below(8));
      break;
    case 1:  // insert a YAML-significant token
      text.insert(pos, kTokens[rng.below(sizeof kTokens / sizeof kTokens[0])]);
      break;
    case 2:  // delete a span
      text.erase(pos, rng.below(16) + 1);
      break;
    case 3: {  // replace a number by another (ranges, bounds, counts)
      size_t d = text.find_first_of("0123456789", pos);
      if (d == std::string::npos) break;
      size_t e = text.find_first_not_of("0123456789", d);
      static const char* const kNumbers[] = {"0", "1", "2", "3", "4", "7", "8", "23", "24", "47", "48", "63",
                                             "64", "127", "128", "-1", "2147483647", "2147483648"};
      text.replace(d, (e == std::string::npos ? text.size() : e) - d,
                   kNumbers[rng.below(sizeof kNumbers / sizeof kNumbers[0])]);
      break;
    }
    case 4: {  // duplicate a line (duplicate keys, extra segments)
      auto lines = split_lines(text);
      if (lines.empty()) break;
      size_t i = rng.below(lines.size());
      lines.insert(lines.begin() + static_cast<long>(rng.below(lines.size() + 1)), lines[i]);
      text = join(lines);
      break;
    }
    case 5: {  // swap two lines (order rules, indentation)
      auto lines = split_lines(text);
      if (lines.size() < 2) break;
      std::swap(lines[rng.below(lines.size())], lines[rng.below(lines.size())]);
      text = join(lines);
      break;
    }
    case 6:  // truncate
      text.resize(pos);
      break;
  }
}

}  // namespace

int main(int argc, char** argv) {
  long iterations = argc > 1 ? std::atol(argv[1]) : 3000;
  std::vector<std::string> seeds;
  for (const auto& ex : segpipe::test::valid_examples()) seeds.emplace_back(ex.yaml);
  Rng rng{0x5e9b1be5ull};
  // Each seed unmutated first: the valid examples must pass the target's own checks too.
  for (const std::string& s : seeds) LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
  for (long i = 0; i < iterations; ++i) {
    std::string text = seeds[rng.below(seeds.size())];
    size_t edits = 1 + rng.below(4);
    for (size_t k = 0; k < edits; ++k) mutate(text, rng);
    LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
  }
  std::printf("fuzz_pipeline_replay: %ld mutated inputs, no crash\n", iterations);
  return 0;
}
