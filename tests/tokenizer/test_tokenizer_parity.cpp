// Offline parity with Hugging Face tokenizers: every corpus string's ids and decoded text must equal
// fixtures/corpus_hf_ids.json, written by tools/tokenizer/make_fixtures.py from the reference.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "orchestrator/tokenizer/normalizer.h"
#include "orchestrator/tokenizer/tokenizer.h"

namespace {

nlohmann::json load_json(const std::string& path) {
  std::ifstream f(path);
  EXPECT_TRUE(f.good()) << path;
  return nlohmann::json::parse(f);
}

const segpipe::Tokenizer& qwen3() {
  static const segpipe::Tokenizer t = segpipe::Tokenizer::load(SEGPIPE_TOKENIZER_DIR);
  return t;
}

std::string show(const std::string& s) { return nlohmann::json(s).dump().substr(0, 200); }

template <class T>
std::string show_ids(const std::vector<T>& v) {
  std::string out;
  for (size_t i = 0; i < v.size() && i < 40; ++i) {
    if (i) out += ' ';
    out += std::to_string(v[i]);
  }
  return out + (v.size() > 40 ? " ..." : "");
}

TEST(TokenizerParity, CorpusIdsMatchHuggingFace) {
  const auto corpus = load_json(std::string(SEGPIPE_TOKENIZER_FIXTURES) + "/corpus.json");
  const auto ref = load_json(std::string(SEGPIPE_TOKENIZER_FIXTURES) + "/corpus_hf_ids.json");
  ASSERT_GE(corpus.size(), 1000u);
  ASSERT_EQ(corpus.size(), ref["ids"].size());
  int mismatches = 0;
  for (size_t i = 0; i < corpus.size(); ++i) {
    const std::string s = corpus[i].get<std::string>();
    const auto expected = ref["ids"][i].get<std::vector<int32_t>>();
    const auto got = qwen3().encode(s);
    if (got != expected && ++mismatches <= 5)
      ADD_FAILURE() << "string " << i << ": " << show(s) << "\n  ours: " << show_ids(got)
                    << "\n  HF:   " << show_ids(expected);
  }
  EXPECT_EQ(mismatches, 0) << "of " << corpus.size() << " strings";
}

TEST(TokenizerParity, DecodeMatchesHuggingFaceAndRoundTripsToNfc) {
  const auto corpus = load_json(std::string(SEGPIPE_TOKENIZER_FIXTURES) + "/corpus.json");
  const auto ref = load_json(std::string(SEGPIPE_TOKENIZER_FIXTURES) + "/corpus_hf_ids.json");
  int mismatches = 0;
  for (size_t i = 0; i < corpus.size(); ++i) {
    const std::string s = corpus[i].get<std::string>();
    const auto ids = ref["ids"][i].get<std::vector<int32_t>>();
    const std::string decoded = qwen3().decode(ids);
    const std::string expected = ref["decoded"][i].get<std::string>();
    if (decoded != expected && ++mismatches <= 5)
      ADD_FAILURE() << "string " << i << ": decode " << show(decoded) << " != HF " << show(expected);
    const std::string round = qwen3().decode(qwen3().encode(s));
    if (round != segpipe::tok::nfc(s) && ++mismatches <= 5)
      ADD_FAILURE() << "string " << i << ": decode(encode(s)) " << show(round) << " != NFC(s)";
  }
  EXPECT_EQ(mismatches, 0);
}

}  // namespace
