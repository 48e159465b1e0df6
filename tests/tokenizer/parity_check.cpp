// Compares our ids with a reference's for every corpus string; prints the first differing strings.
// usage: tokenizer_parity_check TOKENIZER CORPUS.json IDS.json [NAME]
//   IDS.json: a JSON array of id arrays, one per corpus string (as tools/tokenizer/reference_encode.js writes).
// Exit 0 when all match, 1 on any mismatch, 2 on bad input.
#include <cstdio>
#include <exception>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "orchestrator/tokenizer/tokenizer.h"

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s TOKENIZER CORPUS.json IDS.json [NAME]\n", argv[0]);
    return 2;
  }
  const std::string name = argc > 4 ? argv[4] : "reference";
  try {
    const auto tok = segpipe::Tokenizer::load(argv[1]);
    std::ifstream fc(argv[2]), fi(argv[3]);
    const auto corpus = nlohmann::json::parse(fc);
    const auto ref = nlohmann::json::parse(fi);
    if (!corpus.is_array() || !ref.is_array() || corpus.size() != ref.size()) {
      std::fprintf(stderr, "parity: %s has %zu entries for %zu corpus strings\n", argv[3], ref.size(), corpus.size());
      return 2;
    }
    if (corpus.size() < 1000) {
      std::fprintf(stderr, "parity: corpus has only %zu strings (need >= 1000)\n", corpus.size());
      return 2;
    }
    size_t bad = 0;
    for (size_t i = 0; i < corpus.size(); ++i) {
      const auto want = ref[i].get<std::vector<int32_t>>();
      const auto got = tok.encode(corpus[i].get<std::string>());
      if (got == want) continue;
      if (++bad <= 10) {
        std::printf("MISMATCH string %zu: %s\n  ours: %s\n  %s: %s\n", i, corpus[i].dump().substr(0, 300).c_str(),
                    nlohmann::json(got).dump().substr(0, 300).c_str(), name.c_str(),
                    nlohmann::json(want).dump().substr(0, 300).c_str());
      }
    }
    std::printf("parity with %s: %zu/%zu strings identical\n", name.c_str(), corpus.size() - bad, corpus.size());
    return bad == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "parity: %s\n", e.what());
    return 2;
  }
}
