// StreamDecoder: fed one id at a time it must never return broken UTF-8, and everything it returns
// must add up to Tokenizer::decode of the whole sequence (which itself is checked against HF).
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "orchestrator/tokenizer/byte_level.h"
#include "orchestrator/tokenizer/stream_decoder.h"
#include "orchestrator/tokenizer/tokenizer.h"
#include "orchestrator/tokenizer/utf8.h"
#include "segments/core/errors.h"

namespace {

const segpipe::Tokenizer& qwen3() {
  static const segpipe::Tokenizer t = segpipe::Tokenizer::load(SEGPIPE_TOKENIZER_DIR);
  return t;
}

constexpr const char* kReplacement = "\xEF\xBF\xBD";

// The id of the one-byte token for byte b (many bytes alone are partial UTF-8).
int32_t byte_token(unsigned char b) {
  return qwen3().token_to_id(segpipe::byte_level::bytes_to_token(std::string(1, static_cast<char>(b)))).value();
}

void check_stream(const std::vector<int32_t>& ids, const std::string& label) {
  segpipe::StreamDecoder d(qwen3());
  std::string all;
  for (int32_t id : ids) {
    const std::string chunk = d.push(id);
    ASSERT_TRUE(segpipe::utf8::is_valid(chunk)) << label << ": broken UTF-8 after id " << id;
    all += chunk;
  }
  all += d.finish();
  EXPECT_EQ(all, qwen3().decode(ids)) << label;
}

TEST(StreamDecoder, CorpusStreamsWithoutBrokenCharacters) {
  std::ifstream f(std::string(SEGPIPE_TOKENIZER_FIXTURES) + "/corpus.json");
  const auto corpus = nlohmann::json::parse(f);
  for (size_t i = 0; i < corpus.size(); ++i) {
    const std::string s = corpus[i].get<std::string>();
    const auto ids = qwen3().encode(s);
    segpipe::StreamDecoder d(qwen3());
    std::string all;
    for (int32_t id : ids) {
      const std::string chunk = d.push(id);
      ASSERT_TRUE(segpipe::utf8::is_valid(chunk)) << "string " << i;
      // Valid input never needs a replacement character: a partial sequence is held back instead.
      if (s.find(kReplacement) == std::string::npos) {
        ASSERT_EQ(chunk.find(kReplacement), std::string::npos) << "string " << i;
      }
      all += chunk;
    }
    EXPECT_EQ(d.pending_bytes(), 0u) << "string " << i;
    all += d.finish();
    ASSERT_EQ(all, qwen3().decode(ids)) << "string " << i;
  }
}

TEST(StreamDecoder, RandomIdsAddUpToDecode) {
  // Random ids make invalid and truncated byte sequences: the stream must agree with the lossy decode.
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int32_t> any(0, qwen3().vocab_size() - 1);
  for (int round = 0; round < 300; ++round) {
    std::vector<int32_t> ids;
    const int n = 1 + round % 40;
    for (int k = 0; k < n; ++k) ids.push_back(rng() % 3 == 0 ? any(rng) : byte_token(static_cast<unsigned char>(rng())));
    check_stream(ids, "round " + std::to_string(round));
  }
}

TEST(StreamDecoder, HoldsBackSplitCharacter) {
  // "€" is E2 82 AC; feed its three byte tokens one by one.
  const std::vector<int32_t> ids = {byte_token(0xE2), byte_token(0x82), byte_token(0xAC)};
  segpipe::StreamDecoder d(qwen3());
  EXPECT_EQ(d.push(ids[0]), "");
  EXPECT_EQ(d.push(ids[1]), "");
  EXPECT_EQ(d.push(ids[2]), "\xE2\x82\xAC");
  EXPECT_EQ(d.push(ids[0]), "");
  EXPECT_EQ(d.finish(), kReplacement);  // a truncated sequence at the end becomes one U+FFFD
}

TEST(StreamDecoder, OutOfRangeIdThrowsAndKeepsState) {
  segpipe::StreamDecoder d(qwen3());
  EXPECT_THROW(d.push(qwen3().vocab_size()), segpipe::InputError);
  EXPECT_THROW(d.push(-1), segpipe::InputError);
  EXPECT_EQ(d.pending_bytes(), 0u);
}

}  // namespace
