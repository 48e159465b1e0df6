// Checks of StepIO::media / StepIO::deepstack before a segment writes through their indices: rows placed
// at positions outside the step, out of order or twice would write out of bounds or silently change
// which token gets which row.
#pragma once
#include <cstdint>
#include <string>

#include "segments/core/errors.h"
#include "segments/core/step_io.h"

namespace segpipe {

// Throws InputError naming `what` unless rows are given with n > 0, levels >= 1, and index ascending,
// distinct and in [0, T). An empty MediaRows (n == 0) passes.
inline void check_media_rows(const MediaRows& m, int64_t T, const std::string& what) {
  if (m.n == 0) return;
  if (m.n < 0 || m.n > T || !m.index || !m.rows || m.levels < 1)
    throw InputError(what + ": " + std::to_string(m.n) + " rows for a step of " + std::to_string(T) +
                     " tokens, or their index/rows/levels missing");
  for (int64_t i = 0; i < m.n; i++) {
    const int64_t p = m.index[i];
    if (p < 0 || p >= T || (i > 0 && p <= m.index[i - 1]))
      throw InputError(what + ": row " + std::to_string(i) + " is placed at position " + std::to_string(p) +
                       " (positions must be ascending, distinct and within the step's " + std::to_string(T) + " tokens)");
  }
}

}  // namespace segpipe
