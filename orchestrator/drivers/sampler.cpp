#include "orchestrator/drivers/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace segpipe {

double Sampler::uniform() {
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * (1.0 / 9007199254740992.0);  // [0, 1), 53 bits
}

int32_t Sampler::next(const float* logits, int vocab) {
  if (p_.temperature <= 0.0) {
    int32_t best = 0;
    for (int i = 1; i < vocab; i++)
      if (logits[i] > logits[best]) best = i;  // first maximum, as torch.argmax
    return best;
  }
  // Candidates sorted by logit (ties: lower id first), cut by top-k, softmax at temperature in double,
  // cut by top-p (smallest prefix whose mass reaches p, as transformers' TopPLogitsWarper keeps).
  std::vector<int32_t> idx(static_cast<size_t>(vocab));
  std::iota(idx.begin(), idx.end(), 0);
  size_t keep = p_.top_k > 0 ? std::min<size_t>(static_cast<size_t>(p_.top_k), idx.size()) : idx.size();
  auto cmp = [&](int32_t a, int32_t b) { return logits[a] != logits[b] ? logits[a] > logits[b] : a < b; };
  std::partial_sort(idx.begin(), idx.begin() + static_cast<long>(keep), idx.end(), cmp);
  idx.resize(keep);
  std::vector<double> pr(keep);
  double mx = logits[idx[0]] / p_.temperature, sum = 0;
  for (size_t i = 0; i < keep; i++) sum += (pr[i] = std::exp(logits[idx[i]] / p_.temperature - mx));
  for (auto& x : pr) x /= sum;
  if (p_.top_p < 1.0) {
    double c = 0;
    size_t n = 0;
    while (n < keep) {
      c += pr[n++];
      if (c >= p_.top_p) break;
    }
    keep = std::max<size_t>(1, n);
    sum = 0;
    for (size_t i = 0; i < keep; i++) sum += pr[i];
    for (size_t i = 0; i < keep; i++) pr[i] /= sum;
  }
  double u = uniform(), c = 0;
  for (size_t i = 0; i < keep; i++) {
    c += pr[i];
    if (u < c) return idx[i];
  }
  return idx[keep - 1];
}

}  // namespace segpipe
