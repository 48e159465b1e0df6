#include "segments/kinds/embeddings.h"

#include "segments/core/errors.h"
#include "segments/core/finite.h"

namespace segpipe {

EmbeddingsSegment::EmbeddingsSegment(const SegmentParams& params, SegmentEnv& env) : Segment(params) {
  WeightBinder b(*env.checkpoint, *env.cfg);
  table_ = b.mat(embed_role(*env.cfg));
  loaded_ = b.loaded();
}

void EmbeddingsSegment::step(const StepIO& io) {
  forward(io.ids(), io.T, io.out);
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
