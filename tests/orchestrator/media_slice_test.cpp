// A prompt with media prefilled in chunks (one process per segment holds 512 tokens a step): each chunk's
// slice of the media (orchestrator/drivers/step_media.h MediaSlice) must give, position by position, what
// the whole step gives: the same rotary positions, the same row over the same token, the same DeepStack
// rows at every level. Checked by applying both as the segments do (rows written over the embeddings,
// DeepStack rows added per level) and comparing every position.
#include <gtest/gtest.h>

#include <vector>

#include "orchestrator/drivers/step_media.h"

namespace segpipe {
namespace {

// What a step's media make of positions [0, T): per position its three rotary positions, the row written
// over its embedding (or zeros), and per level the DeepStack row added there (or zeros).
struct Applied {
  std::vector<int32_t> rope;      // [T, 3]
  std::vector<float> embed, ds;   // [T, H], [levels, T, H]
};

void apply(const StepMedia& m, int64_t T, int64_t H, int levels, int64_t pos0, int64_t T_all, Applied& out) {
  for (int64_t t = 0; t < T; t++)
    for (int a = 0; a < 3; a++)
      out.rope[static_cast<size_t>((pos0 + t) * 3 + a)] =
          m.rope_positions ? m.rope_positions[a * T + t] : static_cast<int32_t>(pos0 + t + m.rope_delta);
  for (int64_t i = 0; i < m.embed.n; i++)
    for (int64_t h = 0; h < H; h++)
      out.embed[static_cast<size_t>((pos0 + m.embed.index[i]) * H + h)] = m.embed.rows[i * H + h];
  for (int l = 0; l < (m.deepstack.n ? m.deepstack.levels : 0); l++)
    for (int64_t i = 0; i < m.deepstack.n; i++)
      for (int64_t h = 0; h < H; h++)
        out.ds[static_cast<size_t>((l * T_all + pos0 + m.deepstack.index[i]) * H + h)] +=
            m.deepstack.rows[(l * m.deepstack.n + i) * H + h];
  (void)levels;
}

TEST(MediaSlice, ChunksGiveWhatTheWholeStepGives) {
  const int64_t T = 23, H = 3;
  const int levels = 2;
  std::vector<int32_t> rope(3 * T);
  for (int64_t i = 0; i < 3 * T; i++) rope[size_t(i)] = static_cast<int32_t>(1000 * (i / T) + 7 * (i % T) + 1);
  const std::vector<int32_t> at = {0, 3, 4, 5, 11, 12, 13, 14, 22}, ds_at = {3, 4, 5, 12, 13};
  std::vector<float> rows(at.size() * H), ds(levels * ds_at.size() * H);
  for (size_t i = 0; i < rows.size(); i++) rows[i] = 0.25f * static_cast<float>(i + 1);
  for (size_t i = 0; i < ds.size(); i++) ds[i] = -0.5f * static_cast<float>(i + 1);
  StepMedia whole;
  whole.rope_positions = rope.data();
  whole.rope_delta = -4;
  whole.embed = MediaRows{at.data(), static_cast<int64_t>(at.size()), rows.data(), 1};
  whole.deepstack = MediaRows{ds_at.data(), static_cast<int64_t>(ds_at.size()), ds.data(), levels};
  auto fresh = [&] {
    return Applied{std::vector<int32_t>(size_t(3 * T), -1), std::vector<float>(size_t(T * H), 0.f),
                   std::vector<float>(size_t(levels * T * H), 0.f)};
  };
  Applied want = fresh();
  apply(whole, T, H, levels, 0, T, want);
  for (int64_t chunk : {1, 2, 4, 5, 11, 22, 23}) {
    Applied got = fresh();
    for (int64_t b = 0; b < T; b += chunk) {
      const int64_t n = std::min(chunk, T - b);
      MediaSlice part(whole, T, b, n, H);
      EXPECT_EQ(part.media.rope_delta, whole.rope_delta);
      for (int64_t i = 0; i < part.media.embed.n; i++) EXPECT_TRUE(part.media.embed.index[i] >= 0 && part.media.embed.index[i] < n);
      apply(part.media, n, H, levels, b, T, got);
    }
    EXPECT_EQ(got.rope, want.rope) << "chunks of " << chunk;
    EXPECT_EQ(got.embed, want.embed) << "chunks of " << chunk;
    EXPECT_EQ(got.ds, want.ds) << "chunks of " << chunk;
  }
  // Without explicit positions (a decode step after the prompt), only the delta goes on.
  StepMedia delta;
  delta.rope_delta = -4;
  MediaSlice d(delta, 1, 0, 1, H);
  EXPECT_EQ(d.media.rope_positions, nullptr);
  EXPECT_EQ(d.media.embed.n, 0);
  EXPECT_EQ(d.media.deepstack.n, 0);
  EXPECT_EQ(d.media.rope_delta, -4);
}

}  // namespace
}  // namespace segpipe
