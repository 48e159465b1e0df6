// Small safetensors files of named tensors (F32, I32, I64, U8) for dumps and run-segment: written
// whole from memory, read whole into memory. Loadable with numpy/PyTorch (safetensors format).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "segments/core/dtype.h"

namespace segpipe {

struct DumpTensor {
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;  // little-endian, row-major

  int64_t numel() const;
  const float* f32() const { return reinterpret_cast<const float*>(bytes.data()); }
  const int32_t* i32() const { return reinterpret_cast<const int32_t*>(bytes.data()); }
  const int64_t* i64() const { return reinterpret_cast<const int64_t*>(bytes.data()); }
  static DumpTensor from_f32(const float* p, std::vector<int64_t> shape);
  static DumpTensor from_i32(const int32_t* p, std::vector<int64_t> shape);
  static DumpTensor from_i64(const std::vector<int64_t>& v, std::vector<int64_t> shape);
  static DumpTensor from_u8(const std::vector<uint8_t>& v, std::vector<int64_t> shape);
};

struct DumpFile {
  std::map<std::string, DumpTensor> tensors;
  std::map<std::string, std::string> metadata;
  bool has(const std::string& n) const { return tensors.count(n) != 0; }
  // The tensor, checked for dtype (and rank when rank >= 0); InputError naming the file otherwise.
  const DumpTensor& get(const std::string& n, DType dt, int rank = -1) const;
  std::string path;  // where it was read from (for messages)
};

void write_dump_file(const std::string& path, const DumpFile& f);
DumpFile read_dump_file(const std::string& path);

// Element-wise comparison of two tensors of the same dtype and shape: bitwise equality, max abs
// error and relative L2 error (floats; integer tensors count differing elements as max_abs).
struct TensorDiff {
  bool same_shape = true, bitwise = true;
  double max_abs = 0, rel_l2 = 0;
  int64_t first_diff = -1;  // flat index of the first differing element
};
TensorDiff diff_tensors(const DumpTensor& ours, const DumpTensor& ref);

}  // namespace segpipe
