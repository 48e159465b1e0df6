#include "segments/kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "segments/kernels/cpu/linear.h"

namespace segpipe {

void attention(ThreadPool& pool, const AttentionShape& s, const float* q, int64_t T, int64_t pos0,
               const float* k_cache, const float* v_cache, float* out) {
  const int hd = s.head_dim;
  const int group = s.num_heads / s.num_kv_heads;
  const int64_t qdim = static_cast<int64_t>(s.num_heads) * hd;
  const int64_t kvdim = static_cast<int64_t>(s.num_kv_heads) * hd;
  const float scale = static_cast<float>(std::pow(static_cast<double>(hd), -0.5));
  pool.parallel_for(T * s.num_heads, [&](int64_t b, int64_t e) {
    thread_local std::vector<float> scores;
    for (int64_t idx = b; idx < e; idx++) {
      int64_t t = idx / s.num_heads;
      int h = static_cast<int>(idx % s.num_heads);
      int g = h / group;
      int64_t p = pos0 + t;
      const float* qv = q + t * qdim + static_cast<int64_t>(h) * hd;
      scores.resize(static_cast<size_t>(p + 1));
      float mx = -INFINITY;
      for (int64_t j = 0; j <= p; j++) {
        float sc = dot_f32(qv, k_cache + j * kvdim + static_cast<int64_t>(g) * hd, hd) * scale;
        scores[static_cast<size_t>(j)] = sc;
        mx = std::max(mx, sc);
      }
      float sum = 0.f;
      for (int64_t j = 0; j <= p; j++) {
        float ex = std::exp(scores[static_cast<size_t>(j)] - mx);
        scores[static_cast<size_t>(j)] = ex;
        sum += ex;
      }
      float* o = out + t * qdim + static_cast<int64_t>(h) * hd;
      for (int i = 0; i < hd; i++) o[i] = 0.f;
      for (int64_t j = 0; j <= p; j++) {
        float w = scores[static_cast<size_t>(j)] / sum;
        const float* vv = v_cache + j * kvdim + static_cast<int64_t>(g) * hd;
        for (int i = 0; i < hd; i++) o[i] += w * vv[i];
      }
    }
  });
}

}  // namespace segpipe
