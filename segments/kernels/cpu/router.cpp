#include "segments/kernels/cpu/router.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace segpipe {

void route_topk(const float* logits, int64_t T, int E, int k, bool renormalize, int32_t* experts, float* weights) {
  std::vector<float> p(static_cast<size_t>(E));
  std::vector<int32_t> idx(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; t++) {
    const float* l = logits + t * E;
    float mx = -INFINITY;
    for (int e = 0; e < E; e++) mx = std::max(mx, l[e]);
    float sum = 0.f;
    for (int e = 0; e < E; e++) {
      p[static_cast<size_t>(e)] = std::exp(l[e] - mx);
      sum += p[static_cast<size_t>(e)];
    }
    for (int e = 0; e < E; e++) p[static_cast<size_t>(e)] /= sum;
    std::iota(idx.begin(), idx.end(), 0);
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int32_t a, int32_t b) {
      float pa = p[static_cast<size_t>(a)], pb = p[static_cast<size_t>(b)];
      return pa != pb ? pa > pb : a < b;
    });
    float s = 0.f;
    for (int j = 0; j < k; j++) s += p[static_cast<size_t>(idx[static_cast<size_t>(j)])];
    for (int j = 0; j < k; j++) {
      int32_t e = idx[static_cast<size_t>(j)];
      experts[t * k + j] = e;
      weights[t * k + j] = renormalize ? p[static_cast<size_t>(e)] / s : p[static_cast<size_t>(e)];
    }
  }
}

}  // namespace segpipe
