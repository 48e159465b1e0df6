// Helpers shared by the model-side unit tests: temporary folders, raw safetensors files (valid and
// deliberately broken), InputError expectations, float64 reference conversions.
#pragma once
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

#include "segments/core/errors.h"

namespace segpipe::testing {

namespace fs = std::filesystem;

// A fresh folder under the system temp dir, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "segpipe-test-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; i++) s[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}

// A safetensors file spelled out by hand: 8-byte length, the header text exactly as given, then
// `data_bytes` bytes of data (a repeating pattern).
inline std::string raw_safetensors(const std::string& header, uint64_t data_bytes) {
  std::string s = le64(header.size()) + header;
  for (uint64_t i = 0; i < data_bytes; i++) s.push_back(static_cast<char>(i * 7 + 1));
  return s;
}

// Runs `fn`, expects an InputError whose message contains every one of `needles`.
inline void expect_input_error(const std::function<void()>& fn, const std::vector<std::string>& needles) {
  try {
    fn();
  } catch (const InputError& e) {
    std::string msg = e.what();
    for (const std::string& n : needles)
      EXPECT_NE(msg.find(n), std::string::npos) << "message does not name '" << n << "': " << msg;
    return;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected segpipe::InputError, got another exception: " << e.what();
    return;
  }
  ADD_FAILURE() << "expected segpipe::InputError, nothing was thrown";
}

// Reference decoders written from the IEEE / bfloat16 definitions (value = sign * significand *
// 2^exponent), independent of the bit tricks in segments/core/dtype. Both are 16-bit floats that differ
// only in how the 15 bits after the sign split into exponent and mantissa.
inline double ref_float16(uint16_t h, int exp_bits, int man_bits) {
  const int max_exp = (1 << exp_bits) - 1, bias = max_exp / 2;
  int sign = (h >> 15) & 1, exp = (h >> man_bits) & max_exp, man = h & ((1 << man_bits) - 1);
  double v;
  if (exp == 0)
    v = std::ldexp(static_cast<double>(man), 1 - bias - man_bits);  // subnormal: man / 2^man_bits * 2^(1-bias)
  else if (exp == max_exp)
    v = man ? std::nan("") : INFINITY;
  else
    v = std::ldexp(1.0 + std::ldexp(static_cast<double>(man), -man_bits), exp - bias);
  return sign ? -v : v;
}

inline double ref_f16(uint16_t h) { return ref_float16(h, 5, 10); }
inline double ref_bf16(uint16_t h) { return ref_float16(h, 8, 7); }

inline std::string source_dir() { return SEGPIPE_SOURCE_DIR; }
inline std::string model_dir(const std::string& name) { return source_dir() + "/models/" + name; }

}  // namespace segpipe::testing
