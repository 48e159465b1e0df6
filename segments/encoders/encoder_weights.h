// How both Qwen3-Omni towers read their tensors: each checked against the shape their config gives and
// for a float dtype, with an InputError naming the checkpoint, the tensor and the config otherwise; and
// small tensors (norms, biases) widened to float32.
#pragma once
#include <string>
#include <vector>

#include "segments/checkpoint/checkpoint.h"
#include "segments/core/loaded_tensor.h"

namespace segpipe {

// `full`: the tensor's name; `tower`: "audio" or "vision" (for the message); `config_where`: the config
// the expected shape comes from. Appends the tensor to `loaded`.
TensorView checked_tower_tensor(Checkpoint& ck, const std::string& full, const std::vector<int64_t>& shape,
                                const char* tower, const std::string& config_where, std::vector<LoadedTensor>& loaded);

// F32, BF16 or F16 values as float32.
std::vector<float> tensor_to_f32(const TensorView& t);

}  // namespace segpipe
