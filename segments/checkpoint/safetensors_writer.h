// Writes a safetensors file whose tensor bytes are produced on the fly, chunk by chunk, so that
// checkpoints larger than memory can be written (the synthetic-weight generator's full-size preset).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "segments/core/dtype.h"

namespace segpipe {

struct TensorSpec {
  std::string name;
  DType dtype = DType::BF16;
  std::vector<int64_t> shape;
  uint64_t nbytes() const;
};

// fill(spec, first_element, count, out) writes `count` elements starting at `first_element`.
using TensorFiller = std::function<void(const TensorSpec&, uint64_t, uint64_t, void*)>;

void write_safetensors(const std::string& path, const std::vector<TensorSpec>& tensors,
                       const std::map<std::string, std::string>& metadata, const TensorFiller& fill);

}  // namespace segpipe
