// The GPU kinds as Segments (segments/core/segment.h): each kind's step() over its fast paths
// (kinds.cpp), and the params they report. Apart from kinds.cpp so that the kinds' computation and
// their place in the segment interface change independently.
#include <string>
#include <vector>

#include "segments/core/errors.h"
#include "segments/cuda/kinds.h"

namespace segpipe::cuda {

SegmentParams gpu_segment_params(SegmentKind kind, const Context& ctx, const WeightSource& w, int layer_first,
                                 int layer_last, bool banks, int expert_first, int expert_last) {
  SegmentParams p;
  p.kind = kind;
  p.layer_first = layer_first;
  p.layer_last = layer_last;
  p.banks = banks;
  p.expert_first = expert_first;
  p.expert_last = expert_last;
  p.device = Device{Device::Type::cuda, ctx.device()};
  p.dtype = w.options().compute == DType::BF16 ? ComputeDType::bfloat16 : ComputeDType::float32;
  return p;
}

namespace {

// A device tensor [rows, cols] float32 copied to the host (synchronizing), handed to the observer.
void observe(const Context& ctx, BoundaryObserver& obs, const Boundary& b, const float* d, int64_t rows,
             int64_t cols) {
  std::vector<float> h(static_cast<size_t>(rows * cols));
  SEGPIPE_CUDA_CHECK(cudaMemcpyAsync(h.data(), d, h.size() * 4, cudaMemcpyDeviceToHost, ctx.stream()));
  ctx.sync();
  obs.on_tensor(b, h.data(), rows, cols);
}

}  // namespace

void Embeddings::step(const StepIO& io) {
  forward(io.ids(), io.T, io.out);
  if (io.observer) observe(ctx_, *io.observer, Boundary::embeddings(), io.out, io.T, hidden_);
}

void Experts::step(const StepIO&) { throw RuntimeFailure("an expert bank does not run steps"); }

bool Experts::owns(int layer, int expert) const { return holds_layer(layer) && expert >= e0_ && expert <= e1_; }

void Layers::step(const StepIO& io) {
  cudaStream_t st = ctx_.stream();
  if (io.in != io.out && io.T > 0)
    SEGPIPE_CUDA_CHECK(cudaMemcpyAsync(io.out, io.in, static_cast<size_t>(io.T * cfg_.hidden) * 4, cudaMemcpyDefault,
                                       st));
  const int32_t* d_pos0 = io.pos0_at;
  if (!d_pos0 && io.pos0 >= 0 && io.pos0 <= max_seq_) {  // forward() refuses any other pos0
    pos0_.grow(1);
    const int32_t p = static_cast<int32_t>(io.pos0);
    SEGPIPE_CUDA_CHECK(cudaMemcpyAsync(pos0_.get(), &p, 4, cudaMemcpyHostToDevice, st));
    ctx_.sync();  // the pageable source must outlive the copy
    d_pos0 = pos0_.get();
  }
  forward(io.out, io.T, io.pos0, d_pos0, banks_, io.observer);
}

void LmHead::step(const StepIO& io) {
  const int64_t H = cfg_.hidden;
  float* normed = io.normed;
  if (io.observer && !normed) {
    normed_.grow(static_cast<size_t>(io.T * H));
    normed = normed_.get();
  }
  forward(io.hidden(), io.T, io.all_positions, normed, io.out);
  if (io.observer) {
    observe(ctx_, *io.observer, Boundary::norm(), normed, io.T, H);
    if (io.all_positions) observe(ctx_, *io.observer, Boundary::logits(), io.out, io.T, vocab_);
  }
}

}  // namespace segpipe::cuda
