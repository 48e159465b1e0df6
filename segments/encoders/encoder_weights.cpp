#include "segments/encoders/encoder_weights.h"

#include "segments/core/dtype.h"
#include "segments/core/errors.h"
#include "segments/core/tensor.h"

namespace segpipe {

TensorView checked_tower_tensor(Checkpoint& ck, const std::string& full, const std::vector<int64_t>& shape,
                                const char* tower, const std::string& config_where, std::vector<LoadedTensor>& loaded) {
  if (!ck.has(full))
    throw InputError(ck.dir() + ": tensor " + full + " is missing (the " + tower + " tower's weights)");
  TensorView v = ck.view(full);
  if (v.shape != shape)
    throw InputError(ck.dir() + ": tensor " + full + " has shape " + shape_str(v.shape) + ", expected " +
                     shape_str(shape) + " from " + config_where);
  if (v.dtype != DType::F32 && v.dtype != DType::BF16 && v.dtype != DType::F16)
    throw InputError(ck.dir() + ": tensor " + full + " is " + dtype_name(v.dtype) + " (F32, BF16 or F16 expected)");
  loaded.push_back({full, v.nbytes});
  return v;
}

std::vector<float> tensor_to_f32(const TensorView& t) {
  std::vector<float> out(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); i++) {
    switch (t.dtype) {
      case DType::F32: out[static_cast<size_t>(i)] = static_cast<const float*>(t.data)[i]; break;
      case DType::BF16: out[static_cast<size_t>(i)] = bf16_to_f32(static_cast<const uint16_t*>(t.data)[i]); break;
      case DType::F16: out[static_cast<size_t>(i)] = f16_to_f32(static_cast<const uint16_t*>(t.data)[i]); break;
      default: SEGPIPE_ASSERT(false);
    }
  }
  return out;
}

}  // namespace segpipe
