// Non-finite values (NaN, Inf) in activations and logits: a checkpoint with NaN or Inf in its weights
// otherwise yields NaN logits, which greedy decoding turns into token 0 forever with exit 0. The
// segments check their outputs (a scan of T x H or T x V floats, small beside the matrix products
// that make them) and stop with a RuntimeFailure naming where the first one appeared.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>

#include "segments/core/errors.h"

namespace segpipe {

// Index of the first NaN or Inf in p[0..n), or -1.
inline int64_t first_non_finite(const float* p, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    if (!std::isfinite(p[i])) return i;
  return -1;
}

// Throws RuntimeFailure "non-finite <what> (NaN at token t, element j)" if rows [T, width] hold one.
inline void check_finite(const float* p, int64_t T, int64_t width, const std::string& what) {
  const int64_t i = first_non_finite(p, T * width);
  if (i < 0) return;
  throw RuntimeFailure("non-finite " + what + " (" + (std::isnan(p[i]) ? "NaN" : "Inf") + " at token " +
                       std::to_string(i / width) + ", element " + std::to_string(i % width) +
                       "): the weights or the input hold NaN or Inf");
}

}  // namespace segpipe
