#include "orchestrator/multihost/media_wire.h"

#include <cstring>
#include <string>

#include "segments/core/errors.h"

namespace segpipe::multihost {

namespace {

struct Writer {
  std::vector<std::byte> b;
  template <class T>
  void put(const T* p, int64_t n) {
    const size_t at = b.size();
    b.resize(at + static_cast<size_t>(n) * sizeof(T));
    if (n) std::memcpy(b.data() + at, p, static_cast<size_t>(n) * sizeof(T));
  }
};

struct Reader {
  std::span<const std::byte> b;
  const char* what;
  size_t at = 0;
  template <class T>
  void get(std::vector<T>& v, int64_t n) {
    if (n < 0 || static_cast<uint64_t>(n) > (b.size() - at) / sizeof(T))
      throw InputError(std::string(what) + ": the message is shorter than its counts say");
    v.resize(static_cast<size_t>(n));
    if (n) std::memcpy(v.data(), b.data() + at, static_cast<size_t>(n) * sizeof(T));
    at += static_cast<size_t>(n) * sizeof(T);
  }
  void done() const {
    if (at != b.size()) throw InputError(std::string(what) + ": the message is longer than its counts say");
  }
};

}  // namespace

std::vector<std::byte> pack_step_media(const StepMedia& m, int64_t T, int64_t H) {
  Writer w;
  const int64_t head[5] = {m.rope_positions ? 1 : 0, m.rope_delta, m.embed.n, m.deepstack.n, m.deepstack.n ? m.deepstack.levels : 0};
  w.put(head, 5);
  if (m.rope_positions) w.put(m.rope_positions, 3 * T);
  w.put(m.embed.index, m.embed.n);
  w.put(m.embed.rows, m.embed.n * H);
  w.put(m.deepstack.index, m.deepstack.n);
  w.put(m.deepstack.rows, head[4] * m.deepstack.n * H);
  return w.b;
}

void unpack_step_media(std::span<const std::byte> bytes, int64_t T, int64_t H, UnpackedMedia& out) {
  Reader r{bytes, "a step's media from the orchestrator"};
  std::vector<int64_t> head;
  r.get(head, 5);
  const int64_t embed_n = head[2], ds_n = head[3], levels = head[4];
  if ((head[0] != 0 && head[0] != 1) || embed_n < 0 || embed_n > T || ds_n < 0 || ds_n > T || levels < 0 ||
      levels > 64 || (ds_n > 0) != (levels > 0))
    throw InputError("a step's media from the orchestrator: counts out of range");
  if (head[0]) r.get(out.rope, 3 * T);
  r.get(out.embed_index, embed_n);
  r.get(out.embed_rows, embed_n * H);
  r.get(out.ds_index, ds_n);
  r.get(out.ds_rows, levels * ds_n * H);
  r.done();
  StepMedia& m = out.media;
  m = StepMedia{};
  m.rope_positions = head[0] ? out.rope.data() : nullptr;
  m.rope_delta = head[1];
  if (embed_n) m.embed = MediaRows{out.embed_index.data(), embed_n, out.embed_rows.data(), 1};
  if (ds_n) m.deepstack = MediaRows{out.ds_index.data(), ds_n, out.ds_rows.data(), static_cast<int>(levels)};
}

std::vector<std::byte> pack_encode(const EncoderIO& io, int64_t in_floats) {
  Writer w;
  const int64_t head[2] = {in_floats, io.out_floats};
  w.put(head, 2);
  w.put(io.in, in_floats);
  w.put(io.grids, 3 * io.n_grids);
  return w.b;
}

void unpack_encode(std::span<const std::byte> bytes, int64_t frames, int64_t n_grids, int64_t max_out,
                   UnpackedEncode& out) {
  Reader r{bytes, "an encode request from the orchestrator"};
  std::vector<int64_t> head;
  r.get(head, 2);
  // Bounded by the message itself (its floats are in it); the rows by the encoder's block on this host.
  if (frames < 1 || n_grids < 0 || head[1] < 1 || head[1] > max_out)
    throw InputError("an encode request from the orchestrator: counts out of range");
  r.get(out.in, head[0]);
  r.get(out.grids, 3 * n_grids);
  r.done();
  out.rows.assign(static_cast<size_t>(head[1]), 0.f);
  out.io = EncoderIO{};
  out.io.in = out.in.data();
  out.io.frames = frames;
  out.io.grids = n_grids ? out.grids.data() : nullptr;
  out.io.n_grids = n_grids;
  out.io.out = out.rows.data();
  out.io.out_floats = head[1];
}

}  // namespace segpipe::multihost
