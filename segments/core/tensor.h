// A read-only view of one tensor's bytes (usually inside a mapped checkpoint file): no ownership.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "segments/core/dtype.h"

namespace segpipe {

struct TensorView {
  std::string name;            // full checkpoint name, for error messages
  DType dtype = DType::F32;
  std::vector<int64_t> shape;  // row-major
  const void* data = nullptr;  // first element
  uint64_t nbytes = 0;

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  int64_t dim(size_t i) const { return shape.at(i); }
};

std::string shape_str(const std::vector<int64_t>& shape);

}  // namespace segpipe
