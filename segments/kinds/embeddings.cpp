#include "segments/kinds/embeddings.h"

#include <cstring>

#include "segments/core/errors.h"
#include "segments/core/finite.h"
#include "segments/kinds/media_rows.h"

namespace segpipe {

EmbeddingsSegment::EmbeddingsSegment(const SegmentParams& params, SegmentEnv& env) : Segment(params) {
  WeightBinder b(*env.checkpoint, *env.cfg);
  table_ = b.mat(embed_role(*env.cfg));
  loaded_ = b.loaded();
}

void EmbeddingsSegment::step(const StepIO& io) {
  check_media_rows(io.media, io.T, "media rows for the embeddings");
  forward(io.ids(), io.T, io.out);
  // The encoders' rows replace the placeholders' own embeddings (the reference's masked_scatter).
  const int64_t H = table_.cols;
  for (int64_t i = 0; i < io.media.n; i++)
    std::memcpy(io.out + io.media.index[i] * H, io.media.rows + i * H, static_cast<size_t>(H) * sizeof(float));
  if (io.media.n > 0) check_finite(io.out, io.T, H, "embeddings with the media rows");
  if (io.observer) io.observer->on_tensor(Boundary::embeddings(), io.out, io.T, table_.cols);
}

void EmbeddingsSegment::forward(const int32_t* ids, int64_t T, float* out) const {
  for (int64_t t = 0; t < T; t++) {
    if (ids[t] < 0 || ids[t] >= table_.rows)
      throw InputError("token id " + std::to_string(ids[t]) + " is out of range (vocabulary size " +
                       std::to_string(table_.rows) + ")");
    mat_row_to_f32(table_, ids[t], out + t * table_.cols);
  }
  check_finite(out, T, table_.cols, "embeddings");
}

}  // namespace segpipe
