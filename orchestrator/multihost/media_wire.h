// A step's media (step_media.h) and an encoder's input as bytes for the network transport: what rank 0
// sends with a step's ids (kBegin) and with an encode request (kEncode), and what an agent reads back.
// Same binary on every host, so native layout; every count is checked on arrival (untrusted bytes).
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "orchestrator/drivers/step_media.h"
#include "segments/core/encoder_io.h"

namespace segpipe::multihost {

std::vector<std::byte> pack_step_media(const StepMedia& m, int64_t T, int64_t H);

// The media of a step of T tokens, owning its arrays (media points into them). InputError when the bytes
// do not hold what their counts say.
struct UnpackedMedia {
  StepMedia media;
  std::vector<int32_t> rope, embed_index, ds_index;
  std::vector<float> embed_rows, ds_rows;
};
void unpack_step_media(std::span<const std::byte> bytes, int64_t T, int64_t H, UnpackedMedia& out);

// One piece of media for a remote encoder: its floats (frames x width of them), its grids, and the
// room its rows take.
std::vector<std::byte> pack_encode(const EncoderIO& io, int64_t in_floats);
struct UnpackedEncode {
  EncoderIO io;  // in, grids into the arrays below; out into `rows`
  std::vector<float> in, rows;
  std::vector<int32_t> grids;
};
// max_out: the floats the encoder's output block holds on this host (a larger request is refused
// before anything is allocated for it).
void unpack_encode(std::span<const std::byte> bytes, int64_t frames, int64_t n_grids, int64_t max_out,
                   UnpackedEncode& out);

}  // namespace segpipe::multihost
