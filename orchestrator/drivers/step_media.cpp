#include "orchestrator/drivers/step_media.h"

#include <algorithm>

namespace segpipe {

namespace {

// The rows of m whose positions are in [b, b + n): [first, last) of its index (ascending: media_rows.h).
std::pair<int64_t, int64_t> rows_within(const MediaRows& m, int64_t b, int64_t n) {
  if (m.n == 0) return {0, 0};
  const int32_t* first = std::lower_bound(m.index, m.index + m.n, b);
  const int32_t* last = std::lower_bound(first, m.index + m.n, b + n);
  return {first - m.index, last - m.index};
}

}  // namespace

MediaSlice::MediaSlice(const StepMedia& whole, int64_t T, int64_t b, int64_t n, int64_t H) {
  media.rope_delta = whole.rope_delta;
  if (whole.rope_positions) {
    pos_.resize(static_cast<size_t>(3 * n));
    for (int64_t a = 0; a < 3; a++)
      std::copy(whole.rope_positions + a * T + b, whole.rope_positions + a * T + b + n, pos_.begin() + a * n);
    media.rope_positions = pos_.data();
  }
  const auto [e0, e1] = rows_within(whole.embed, b, n);
  if (e1 > e0) {
    for (int64_t i = e0; i < e1; i++) embed_index_.push_back(static_cast<int32_t>(whole.embed.index[i] - b));
    // One level: the rows of the slice are contiguous in the whole.
    media.embed = MediaRows{embed_index_.data(), e1 - e0, whole.embed.rows + e0 * H, 1};
  }
  const auto [d0, d1] = rows_within(whole.deepstack, b, n);
  if (d1 > d0) {
    for (int64_t i = d0; i < d1; i++) ds_index_.push_back(static_cast<int32_t>(whole.deepstack.index[i] - b));
    // [levels][N, H]: each level's rows of the slice, one level after another.
    const int64_t N = whole.deepstack.n, m = d1 - d0;
    ds_rows_.resize(static_cast<size_t>(whole.deepstack.levels * m * H));
    for (int l = 0; l < whole.deepstack.levels; l++)
      std::copy(whole.deepstack.rows + (l * N + d0) * H, whole.deepstack.rows + (l * N + d1) * H, ds_rows_.begin() + l * m * H);
    media.deepstack = MediaRows{ds_index_.data(), m, ds_rows_.data(), whole.deepstack.levels};
  }
}

}  // namespace segpipe
