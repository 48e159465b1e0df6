// Reading the audio goldens (tools/goldens/media/README-audio.md) in the tests: typed copies of their
// tensors, and the two error measures the tests state their tolerances in.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "segments/checkpoint/safetensors.h"

namespace segpipe::testing_audio {

inline std::string source_path(const std::string& rel) { return std::string(SEGPIPE_SOURCE_DIR) + "/" + rel; }
inline std::string goldens_dir() { return source_path("tests/data/media/goldens"); }

class Golden {
 public:
  explicit Golden(const std::string& path) : path_(path) {
    if (std::filesystem::exists(path)) file_ = SafetensorsFile::open(path);
  }
  // The goldens are made by tools/goldens/media/audio.py with transformers; a missing file is a failure
  // (the test cannot show anything without its reference), reported with the path.
  bool ok() const { return file_ != nullptr; }
  const std::string& path() const { return path_; }
  bool has(const std::string& name) const { return file_ && file_->header().tensors.count(name) != 0; }
  std::string meta(const std::string& key) const {
    auto it = file_->header().metadata.find(key);
    return it == file_->header().metadata.end() ? "" : it->second;
  }
  std::vector<int64_t> shape(const std::string& name) const { return file_->header().tensors.at(name).shape; }
  template <typename T>
  std::vector<T> get(const std::string& name, DType want) const {
    TensorView v = file_->view(name);
    EXPECT_EQ(v.dtype, want) << path_ << ": " << name;
    std::vector<T> out(static_cast<size_t>(v.numel()));
    if (v.dtype == want && v.nbytes == out.size() * sizeof(T)) std::memcpy(out.data(), v.data, v.nbytes);
    return out;
  }
  std::vector<float> f32(const std::string& name) const { return get<float>(name, DType::F32); }
  std::vector<double> f64(const std::string& name) const { return get<double>(name, DType::F64); }
  std::vector<int64_t> i64(const std::string& name) const { return get<int64_t>(name, DType::I64); }

 private:
  std::string path_;
  std::shared_ptr<SafetensorsFile> file_;
};

struct Diff {
  double max_abs = 0;  // max |ours - ref|
  double rel_l2 = 0;   // ||ours - ref|| / ||ref||
  double ref_max = 0;  // max |ref|
};

template <typename A, typename B>
Diff diff(const std::vector<A>& ours, const std::vector<B>& ref) {
  Diff d;
  double num = 0, den = 0;
  const size_t n = std::min(ours.size(), ref.size());
  for (size_t i = 0; i < n; i++) {
    const double e = static_cast<double>(ours[i]) - static_cast<double>(ref[i]);
    d.max_abs = std::max(d.max_abs, std::fabs(e));
    d.ref_max = std::max(d.ref_max, std::fabs(static_cast<double>(ref[i])));
    num += e * e;
    den += static_cast<double>(ref[i]) * static_cast<double>(ref[i]);
  }
  d.rel_l2 = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  return d;
}

inline std::string describe(const Diff& d) {
  char b[160];
  std::snprintf(b, sizeof b, "max abs %.3g, rel L2 %.3g (ref max %.3g)", d.max_abs, d.rel_l2, d.ref_max);
  return b;
}

}  // namespace segpipe::testing_audio
