#include "segments/kinds/experts.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <sys/mman.h>
#include <unistd.h>

#include "segments/core/errors.h"
#include "segments/kernels/cpu/swiglu.h"

namespace segpipe {

ExpertsSegment::ExpertsSegment(const SegmentParams& params, SegmentEnv& env)
    : Segment(params), cfg_(*env.cfg), pool_(*env.pool), l0_(params.layer_first), l1_(params.layer_last),
      e0_(params.expert_first), e1_(params.expert_last) {
  const ModelConfig& cfg = cfg_;
  stats_.max_resident = std::max(0, params.max_resident_experts);
  WeightBinder b(*env.checkpoint, cfg);
  for (int l = l0_; l <= l1_; l++) {
    if (!cfg.is_moe_layer(l)) continue;
    auto& v = mats_[l];
    // With selective loading nothing of an expert is resident before its first use (no populate):
    // the bound max_resident experts per layer then holds from load on, not only after evictions.
    for (int e = e0_; e <= e1_; e++) v.push_back(b.expert(l, e, stats_.max_resident == 0));
  }
  loaded_ = b.loaded();
}

void ExpertsSegment::step(const StepIO&) { throw RuntimeFailure("an expert bank does not run steps"); }

bool ExpertsSegment::owns(int layer, int expert) const {
  return mats_.count(layer) && expert >= e0_ && expert <= e1_;
}

void ExpertsSegment::compute(const ExpertRequest& req) {
  auto it = mats_.find(req.layer);
  SEGPIPE_ASSERT_MSG(it != mats_.end(), "expert bank asked for a layer it does not hold");
  if (req.x_dtype != DType::F32 || req.slot_dtype != DType::F32)
    throw RuntimeFailure("an expert request in " + std::string(dtype_name(req.x_dtype)) + " / " +
                         dtype_name(req.slot_dtype) + ": the CPU bank computes in float32");
  const float* x = req.x_f32();
  float* out = req.slots_f32();
  const int64_t H = cfg_.hidden, I = cfg_.moe_intermediate;
  const int64_t slots = req.T * req.k;
  // Group the slots by expert so each expert's weights stream once per step (prefill batches its
  // tokens; a row's result does not depend on the batch, see linear.h).
  std::vector<int64_t> order;
  for (int64_t s = 0; s < slots; s++)
    if (req.experts[s] >= e0_ && req.experts[s] <= e1_) order.push_back(s);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return req.experts[a] < req.experts[b]; });
  size_t i = 0;
  while (i < order.size()) {
    int e = req.experts[order[i]];
    size_t j = i;
    while (j < order.size() && req.experts[order[j]] == e) j++;
    int64_t n = static_cast<int64_t>(j - i);
    xs_.resize(static_cast<size_t>(n * H));
    g_.resize(static_cast<size_t>(n * I));
    u_.resize(static_cast<size_t>(n * I));
    d_.resize(static_cast<size_t>(n * H));
    for (int64_t r = 0; r < n; r++) {
      int64_t t = order[i + static_cast<size_t>(r)] / req.k;
      std::copy(x + t * H, x + (t + 1) * H, xs_.begin() + r * H);
    }
    const auto& m = it->second[static_cast<size_t>(e - e0_)];
    touch(req.layer, e);
    linear(pool_, xs_.data(), n, m.gate, g_.data());
    linear(pool_, xs_.data(), n, m.up, u_.data());
    swiglu(g_.data(), u_.data(), n * I, g_.data());
    linear(pool_, g_.data(), n, m.down, d_.data());
    for (int64_t r = 0; r < n; r++) {
      int64_t s = order[i + static_cast<size_t>(r)];
      float w = req.weights[s];
      float* o = out + s * H;
      const float* dr = d_.data() + r * H;
      for (int64_t c = 0; c < H; c++) o[c] = dr[c] * w;
    }
    i = j;
  }
}

namespace {

// Page-aligned span covering a matrix's bytes (the pages it touches).
void advise(const Mat& m, int advice) {
  static const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  if (!m.data || m.bytes() == 0) return;
  uintptr_t b = reinterpret_cast<uintptr_t>(m.data), e = b + m.bytes();
  b = b / page * page;
  e = (e + page - 1) / page * page;
  madvise(reinterpret_cast<void*>(b), e - b, advice);
}

}  // namespace

void ExpertsSegment::release(const WeightBinder::ExpertMats& m) {
  // A shared read-only file mapping: dropping the pages frees them from this process; the bytes
  // stay in the file (and maybe the page cache) for the next load. In the fused layout an edge
  // page may hold a neighbour expert's bytes; that neighbour just faults it in again if it runs.
  for (const Mat* x : {&m.gate, &m.up, &m.down}) advise(*x, MADV_DONTNEED);
}

void ExpertsSegment::touch(int layer, int e) {
  stats_.uses++;
  if (stats_.max_resident == 0) return;
  auto& lru = lru_[layer];
  auto it = std::find(lru.begin(), lru.end(), e);
  if (it != lru.end()) {
    stats_.hits++;
    lru.erase(it);
    lru.push_back(e);
    return;
  }
  auto& mats = mats_.at(layer);
  while (static_cast<int>(lru.size()) >= stats_.max_resident) {
    release(mats[static_cast<size_t>(lru.front() - e0_)]);
    lru.erase(lru.begin());
    stats_.evictions++;
    stats_.resident_experts--;
  }
  const auto& m = mats[static_cast<size_t>(e - e0_)];
  for (const Mat* x : {&m.gate, &m.up, &m.down}) advise(*x, MADV_WILLNEED);
  stats_.loads++;
  stats_.bytes_loaded += m.gate.bytes() + m.up.bytes() + m.down.bytes();
  stats_.resident_experts++;
  lru.push_back(e);
}

void combine_expert_outputs(const float* slots, const int32_t* experts, int64_t T, int k, int H, float* out) {
  std::vector<int> ord(static_cast<size_t>(k));
  for (int64_t t = 0; t < T; t++) {
    std::iota(ord.begin(), ord.end(), 0);
    std::sort(ord.begin(), ord.end(), [&](int a, int b) { return experts[t * k + a] < experts[t * k + b]; });
    float* o = out + t * H;
    for (int c = 0; c < H; c++) o[c] = 0.f;
    for (int j : ord) {
      const float* s = slots + (t * k + j) * H;
      for (int c = 0; c < H; c++) o[c] += s[c];
    }
  }
}

}  // namespace segpipe
