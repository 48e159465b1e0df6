#include "segments/kinds/lm_head.h"

#include "segments/core/finite.h"
#include "segments/kernels/cpu/rmsnorm.h"

namespace segpipe {

LmHeadSegment::LmHeadSegment(const SegmentParams& params, SegmentEnv& env)
    : Segment(params), cfg_(*env.cfg), pool_(*env.pool) {
  const ModelConfig& cfg = cfg_;
  WeightBinder b(*env.checkpoint, cfg);
  norm_ = b.vec(final_norm_role(cfg));
  // Tied: the embedding table is this segment's lm_head weight (transformers ties them whenever
  // tie_word_embeddings is set, whatever the file holds).
  head_ = cfg.tie_word_embeddings ? b.mat(embed_role(cfg)) : b.mat(lm_head_roles(cfg).back());
  loaded_ = b.loaded();
}

void LmHeadSegment::step(const StepIO& io) {
  forward(io.hidden(), io.T, io.all_positions, io.normed, io.out);
  if (io.observer) {
    io.observer->on_tensor(Boundary::norm(), h_.data(), io.T, cfg_.hidden);  // h_: the norm's output
    if (io.all_positions) io.observer->on_tensor(Boundary::logits(), io.out, io.T, vocab());
  }
}

void LmHeadSegment::forward(const float* x, int64_t T, bool all_positions, float* normed, float* logits) {
  const int64_t H = cfg_.hidden;
  h_.resize(static_cast<size_t>(T * H));
  rmsnorm(x, T, H, norm_.data(), cfg_.rms_eps, h_.data());
  if (normed) std::copy(h_.begin(), h_.end(), normed);
  if (all_positions)
    linear(pool_, h_.data(), T, head_, logits);
  else
    linear(pool_, h_.data() + (T - 1) * H, 1, head_, logits);
  // Always: sampling from NaN logits picks token 0 forever, and says nothing.
  check_finite(logits, all_positions ? T : 1, cfg_.vocab, "logits");
}

}  // namespace segpipe
