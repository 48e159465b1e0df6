// How many tokens the audio tower makes of n feature frames.
//
// The tower cuts the frames into chunks of 2 * n_window and runs three stride-2 convolutions (kernel 3,
// padding 1) over each, so a chunk of L frames gives conv_length(L) tokens. transformers counts them
// with _get_feat_extract_output_lengths, which hard-codes 13 tokens per full chunk: right for the real
// n_window 50 (100 -> 50 -> 25 -> 13), wrong for any n_window whose full chunk gives another count (the
// reference then fails inside the tower). Both are here: the tower encodes only inputs on which they
// agree, so that its output always fills the processor's placeholders exactly.
#pragma once
#include <cstdint>

namespace segpipe {

// (((L - 1) / 2 + 1 - 1) / 2 + 1 - 1) / 2 + 1 for L > 0; 0 for L = 0 (floor division, as Python's).
int64_t audio_conv_length(int64_t frames);

// What the tower really makes of `frames`: full chunks and the tail chunk through the convolutions.
int64_t audio_encoder_tokens(int64_t frames, int n_window);

// transformers' _get_feat_extract_output_lengths(frames, n_window): the placeholder count the
// processor inserts (the processor calls it with the default n_window = 50).
int64_t audio_placeholder_tokens(int64_t frames, int n_window = 50);

}  // namespace segpipe
