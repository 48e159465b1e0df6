// One step of one segment: what it reads and writes, the positions, and who watches. The pointers are
// where the segment's backend computes: host memory on the CPU; device memory, or host memory mapped
// for the device, on a GPU. The caller owns them; they need to live for the step only.
#pragma once
#include <cstdint>

#include "segments/core/boundary_observer.h"
#include "segments/core/encoder_io.h"

namespace segpipe {

// Rows placed at some of a step's token positions (Qwen3-Omni's media): index [n] ascending, distinct,
// each in [0, T); rows [levels, n, H] (one level for the media embeddings, one per DeepStack layer).
struct MediaRows {
  const int32_t* index = nullptr;
  int64_t n = 0;
  const float* rows = nullptr;
  int levels = 0;  // DeepStack: rows of levels 0..levels-1 go after global decoder layers 0..levels-1
};

struct StepIO {
  // embeddings: int32 token ids [T]; layers, lm_head: float32 hidden states [T, H].
  const void* in = nullptr;
  // audio_encoder, vision_encoder: the media in and the rows out (in, out and T are unused).
  const EncoderIO* encode = nullptr;
  // embeddings, layers: float32 hidden states [T, H]. lm_head: float32 logits, [T, V] when
  // all_positions, else [1, V] (the last position's).
  // layers: in == out computes in place; otherwise in is copied to out first and the step computes in
  // out, so that in survives a step that fails halfway (a segment process repeats it after a restart).
  // (A GPU segment process stages both through a device buffer of its own: its blocks may be host
  // memory mapped for the device, too slow to compute in.)
  float* out = nullptr;
  // lm_head, optional: receives the final norm's output [T, H]. Other kinds ignore it.
  float* normed = nullptr;
  int64_t T = 0;     // tokens in this step
  int64_t pos0 = 0;  // position of the first token; a layers segment's KV cache holds every position < pos0
  // layers, optional: where the step reads its first position while it runs (int32, memory of the
  // segment's backend). pos0 above is what the host checks (the KV cache's capacity) and sizes with;
  // this address is what the computation reads, so that a step recorded once can be replayed at every
  // position with only this int changed (a GPU's decode step captured into a CUDA graph). It must hold
  // pos0 when the step runs. Null: the segment takes pos0 itself (a GPU segment copies it to the device).
  const int32_t* pos0_at = nullptr;
  bool all_positions = false;  // lm_head: logits of every position (else the last only)
  // Optional: sees the boundaries as the segment computes them, in the order of a whole step:
  // embeddings; each layer's router logits, routes and output; the final norm; the logits (when
  // all_positions).
  BoundaryObserver* observer = nullptr;
  // Qwen3-Omni with audio or images; every field below left empty is today's text-only step, bit for bit.
  // Their pointers are, like in and out, memory of the segment's backend.
  // embeddings, optional: the encoders' rows, written over the looked-up embeddings at media.index (the
  // reference's masked_scatter: audio rows at the audio placeholders, image rows at the image ones).
  MediaRows media{};
  // layers, optional: M-RoPE positions int32 [3, T] (time, height, width rows), for a prompt with images
  // (segments/model/mrope_positions.h). Null: every axis at pos0 + t + rope_delta.
  const int32_t* rope_positions = nullptr;
  // layers: added to pos0 + t on every axis when rope_positions is null: the decode steps after a prompt
  // with images continue at the reference's position (its rope_deltas, <= 0). The KV cache slot stays pos0 + t.
  int64_t rope_delta = 0;
  // layers, optional: DeepStack features, added to the residual stream after decoder layer i (global
  // index, i < deepstack.levels) at the image positions deepstack.index, as the reference adds them after
  // the layer's own residual (so layer i's reported output includes them).
  MediaRows deepstack{};

  const int32_t* ids() const { return static_cast<const int32_t*>(in); }
  const float* hidden() const { return static_cast<const float*>(in); }
};

}  // namespace segpipe
