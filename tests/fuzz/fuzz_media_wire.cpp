// Fuzz target: the media of a step and an encoder's input as an agent of a run across hosts reads them
// from rank 0's messages (orchestrator/multihost/media_wire.h). The first byte picks the message (even: a
// step's media, odd: an encode request), the next two its step's tokens T (1..64) and hidden size H
// (1..32), the rest is the message. Only InputError may escape; what is accepted has arrays of the sizes
// its counts say (the agent's transport copies them by those counts), and packs back to the same bytes.
#include <cstdint>
#include <cstring>
#include <span>

#include "fuzz_support.h"
#include "orchestrator/multihost/media_wire.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace segpipe;
  using namespace segpipe::multihost;
  if (size < 3) return 0;
  const bool encode = data[0] & 1;
  const int64_t T = 1 + data[1] % 64, H = 1 + data[2] % 32;
  const std::span<const std::byte> msg(reinterpret_cast<const std::byte*>(data + 3), size - 3);
  if (!encode) {
    fuzz::only_input_errors("step media", [&] {
      UnpackedMedia u;
      unpack_step_media(msg, T, H, u);
      const StepMedia& m = u.media;
      FUZZ_INVARIANT(m.embed.n >= 0 && m.embed.n <= T && m.deepstack.n >= 0 && m.deepstack.n <= T);
      FUZZ_INVARIANT(u.embed_rows.size() == static_cast<size_t>(m.embed.n * H));
      FUZZ_INVARIANT(u.ds_rows.size() == static_cast<size_t>(m.deepstack.n * m.deepstack.levels * H));
      FUZZ_INVARIANT(!m.rope_positions || u.rope.size() == static_cast<size_t>(3 * T));
      const std::vector<std::byte> again = pack_step_media(m, T, H);
      FUZZ_INVARIANT(again.size() == msg.size() && std::memcmp(again.data(), msg.data(), msg.size()) == 0);
    });
  } else {
    const int64_t frames = 1 + data[1] % 16, grids = data[2] % 4;
    fuzz::only_input_errors("encode request", [&] {
      UnpackedEncode u;
      unpack_encode(msg, frames, grids, int64_t{1} << 16, u);
      FUZZ_INVARIANT(u.io.out_floats >= 1 && u.rows.size() == static_cast<size_t>(u.io.out_floats));
      FUZZ_INVARIANT(u.grids.size() == static_cast<size_t>(3 * grids));
      const std::vector<std::byte> again = pack_encode(u.io, static_cast<int64_t>(u.in.size()));
      FUZZ_INVARIANT(again.size() == msg.size() && std::memcmp(again.data(), msg.data(), msg.size()) == 0);
    });
  }
  return 0;
}
