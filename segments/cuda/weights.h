// Where a GPU segment's weights come from: a checkpoint (the same roles, shape and dtype checks as
// the CPU's WeightBinder; bytes uploaded, then converted on the device to the compute dtype) or the
// synthetic formula (segments/model/synthetic.h) evaluated on the device, bit for bit the checkpoint
// `segpipe make-model` would write, so that full-size presets need no files.
//
// Under gpu_memory: unified the device reads each tensor of the mapped checkpoint in place (no
// staging copy), one tensor at a time (unified_memory.h: HostRange), straight into the segment's
// device-layout buffer, and the file's pages are then given back (Checkpoint::release_pages), so the
// bytes are held once. That buffer is the one copy of each weight: the kernels read fused layouts the
// file does not have (q/k/v concatenated, gate/up concatenated, a layer's experts stacked), so they
// cannot read the file's tensors where they lie (that would need per-expert pointer tables in every
// kernel; not done).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "segments/checkpoint/checkpoint.h"
#include "segments/cuda/device.h"
#include "segments/cuda/unified_memory.h"
#include "segments/model/config.h"
#include "segments/model/tensor_map.h"

namespace segpipe::cuda {

struct WeightOptions {
  DType compute = DType::F32;           // dtype of the matrices on the device: F32 or BF16
  bool synthetic = false;               // the synthetic formula instead of checkpoint files
  uint64_t seed = 0;                    // synthetic: the make-model seed
  DType synthetic_dtype = DType::BF16;  // synthetic: the checkpoint dtype the weights stand for
  GpuMemory memory = GpuMemory::device;  // resolved (device or unified): unified reads the checkpoint in place
};

class WeightSource {
 public:
  // ck may be null when opts.synthetic.
  WeightSource(Context& ctx, const ModelConfig& cfg, Checkpoint* ck, const WeightOptions& opts);
  // Writes the whole tensor of `role` to dst (device) as dt (F32 or BF16).
  void matrix(const TensorRole& role, void* dst, DType dt);
  // A 1-D tensor (norm weights) as float32 on the device.
  void vector_f32(const TensorRole& role, float* dst);
  // Expert e of MoE layer l: gate and up into gate_up [2I, H] (gate rows first), down into [H, I].
  void expert(int layer, int e, void* gate_up, void* down, DType dt);
  const WeightOptions& options() const { return opts_; }
  const std::vector<LoadedTensor>& loaded() const { return loaded_; }
  uint64_t loaded_bytes() const;
  // gpu_memory: unified: checkpoint tensors (or expert slices) the device read in place, and those
  // it could not (HostAccess::copy, a refused registration, a misaligned tensor) and copied.
  uint64_t tensors_read_in_place() const { return in_place_; }
  uint64_t tensors_copied() const { return copied_; }

 private:
  // n elements of tensor `name` at host (in its mapped view), st -> dst as dt.
  void upload(const std::string& name, const void* host, DType st, int64_t n, void* dst, DType dt);
  void copy_upload(const void* host, DType st, int64_t n, void* dst, DType dt);
  void synth(const TensorRole& role, uint64_t first, int64_t n, void* dst, DType dt);
  Context& ctx_;
  const ModelConfig& cfg_;
  Checkpoint* ck_;
  WeightOptions opts_;
  std::unique_ptr<WeightBinder> binder_;
  Buffer<char> staging_;
  std::vector<LoadedTensor> loaded_;
  HostAccess access_ = HostAccess::copy;  // unified: how this device reads the mapped checkpoint
  uint64_t in_place_ = 0, copied_ = 0;
};

// The (scale, offset) of the uniform distribution make-model draws a role's elements from; must
// stay equal to segments/model/synthetic.cpp (checked by tests/cuda/test_cuda_synthetic).
std::pair<float, float> synthetic_distribution(const TensorRole& role);

}  // namespace segpipe::cuda
