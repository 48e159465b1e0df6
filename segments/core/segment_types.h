// The typed vocabulary every layer uses to name a segment: its kind, its device and its compute dtype.
// One definition from the pipeline YAML to the worker: text appears only where these are read from or
// written to a file or a command line (to_string / parse_* below).
#pragma once
#include <optional>
#include <string>
#include <string_view>

namespace segpipe {

enum class SegmentKind { embeddings, layers, experts, lm_head };
enum class ComputeDType { float32, bfloat16 };  // compute dtype of a segment

struct Device {
  enum class Type { cpu, cuda };
  Type type = Type::cpu;
  int index = 0;  // N of cuda:N; 0 for cpu
  bool is_cuda() const { return type == Type::cuda; }
  friend bool operator==(const Device&, const Device&) = default;
};

inline const char* to_string(SegmentKind kind) {
  switch (kind) {
    case SegmentKind::embeddings: return "embeddings";
    case SegmentKind::layers: return "layers";
    case SegmentKind::experts: return "experts";
    case SegmentKind::lm_head: return "lm_head";
  }
  return "?";
}
inline const char* to_string(ComputeDType dtype) { return dtype == ComputeDType::float32 ? "float32" : "bfloat16"; }
inline std::string to_string(const Device& device) {
  return device.type == Device::Type::cpu ? "cpu" : "cuda:" + std::to_string(device.index);
}

inline std::optional<SegmentKind> parse_segment_kind(std::string_view s) {
  for (SegmentKind k : {SegmentKind::embeddings, SegmentKind::layers, SegmentKind::experts, SegmentKind::lm_head})
    if (s == to_string(k)) return k;
  return std::nullopt;
}
inline std::optional<ComputeDType> parse_compute_dtype(std::string_view s) {
  if (s == "float32") return ComputeDType::float32;
  if (s == "bfloat16") return ComputeDType::bfloat16;
  return std::nullopt;
}
// "cpu" or "cuda:N" with N a decimal in [0, 1023].
inline std::optional<Device> parse_device(std::string_view s) {
  if (s == "cpu") return Device{};
  if (s.substr(0, 5) != "cuda:" || s.size() < 6 || s.size() > 9) return std::nullopt;
  int n = 0;
  for (char c : s.substr(5)) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + (c - '0');
  }
  if (n > 1023 || (s.size() > 6 && s[5] == '0')) return std::nullopt;
  return Device{Device::Type::cuda, n};
}

}  // namespace segpipe
