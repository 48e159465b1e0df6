// Reading the vision goldens (tools/goldens/media/README-vision.md) in tests: tensors by name as plain
// vectors, metadata as JSON, and error summaries for the comparisons.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "segments/checkpoint/safetensors.h"

namespace segpipe::testing {

inline std::string source_path(const std::string& rel) { return std::string(SEGPIPE_SOURCE_DIR) + "/" + rel; }

class VisionGolden {
 public:
  // Fails the calling test (not skips it) when the file is absent: the goldens are committed.
  static std::unique_ptr<VisionGolden> open(const std::string& rel) {
    const std::string path = source_path(rel);
    if (!std::filesystem::exists(path)) {
      ADD_FAILURE() << "golden file " << path << " is missing (tools/goldens/media/vision.py makes it)";
      return nullptr;
    }
    auto g = std::make_unique<VisionGolden>();
    g->file_ = SafetensorsFile::open(path);
    return g;
  }
  bool has(const std::string& name) const { return file_->has(name); }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& [k, v] : file_->header().tensors) out.push_back(k);
    return out;
  }
  std::vector<int64_t> shape(const std::string& name) const { return file_->header().tensors.at(name).shape; }
  std::vector<float> f32(const std::string& name) const { return as<float>(name, DType::F32); }
  std::vector<int64_t> i64(const std::string& name) const { return as<int64_t>(name, DType::I64); }
  std::vector<uint8_t> u8(const std::string& name) const { return as<uint8_t>(name, DType::U8); }
  std::string meta(const std::string& key) const {
    const auto& m = file_->header().metadata;
    auto it = m.find(key);
    return it == m.end() ? std::string() : it->second;
  }
  nlohmann::json meta_json(const std::string& key) const { return nlohmann::json::parse(meta(key)); }
  const std::map<std::string, std::string>& metadata() const { return file_->header().metadata; }

 private:
  template <typename T>
  std::vector<T> as(const std::string& name, DType want) const {
    TensorView v = file_->view(name);
    EXPECT_EQ(v.dtype, want) << name;
    std::vector<T> out(static_cast<size_t>(v.numel()));
    if (v.dtype == want) std::memcpy(out.data(), v.data, out.size() * sizeof(T));
    return out;
  }
  std::shared_ptr<SafetensorsFile> file_;
};

// Max absolute error, the reference's largest magnitude and the relative L2 error ||a - b|| / ||b||.
struct ErrorStats {
  double max_abs = 0.0, ref_max = 0.0, rel_l2 = 0.0;
  int64_t worst = -1;
};

inline ErrorStats compare(const float* ours, const float* ref, size_t n) {
  ErrorStats s;
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < n; i++) {
    const double d = std::abs(static_cast<double>(ours[i]) - ref[i]);
    if (!(d <= s.max_abs)) {  // NaN counts as the worst
      s.max_abs = std::isnan(d) ? INFINITY : d;
      s.worst = static_cast<int64_t>(i);
    }
    s.ref_max = std::max(s.ref_max, std::abs(static_cast<double>(ref[i])));
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  s.rel_l2 = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  return s;
}

}  // namespace segpipe::testing
