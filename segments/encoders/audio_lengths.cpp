#include "segments/encoders/audio_lengths.h"

namespace segpipe {

namespace {
// Python's floor division (the reference's //), for the negative intermediate values at L = 0.
int64_t floordiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) q--;
  return q;
}
int64_t conv_step(int64_t len) { return floordiv(len - 1, 2) + 1; }
}  // namespace

int64_t audio_conv_length(int64_t frames) { return conv_step(conv_step(conv_step(frames))); }

int64_t audio_encoder_tokens(int64_t frames, int n_window) {
  const int64_t chunk = 2 * static_cast<int64_t>(n_window);
  return (frames / chunk) * audio_conv_length(chunk) + audio_conv_length(frames % chunk);
}

int64_t audio_placeholder_tokens(int64_t frames, int n_window) {
  const int64_t chunk = 2 * static_cast<int64_t>(n_window);
  // The reference's literal 13 tokens per full chunk.
  return audio_conv_length(frames % chunk) + (frames / chunk) * 13;
}

}  // namespace segpipe
