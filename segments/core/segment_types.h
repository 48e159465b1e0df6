// The typed vocabulary every layer uses to name a segment: its kind, its device and its compute dtype.
// One definition from the pipeline YAML to the worker: text appears only where these are read from or
// written to a file or a command line (to_string / parse_* below).
#pragma once
#include <optional>
#include <string>
#include <string_view>

namespace segpipe {

// audio_encoder, vision_encoder: Qwen3-Omni's audio and vision towers; they run on a prompt's media before
// its step, outside the token chain (chain.h).
enum class SegmentKind { embeddings, layers, experts, lm_head, audio_encoder, vision_encoder };
enum class ComputeDType { float32, bfloat16 };  // compute dtype of a segment

// Which GPU kernels a run uses (pipeline key `gpu_kernels`). automatic: the fastest the device can run
// (the sm_90a wgmma kernels, programmatic dependent launch and bulk L2 prefetches on compute capability
// 9.0; their portable counterparts elsewhere). portable: the portable kernels on every device, the code
// an Ampere or Ada GPU runs; for checking and measuring that path on a Hopper card.
enum class GpuKernels { automatic, portable };

// Where a GPU segment keeps what it shares with other segments (pipeline key `gpu_memory`). device:
// device memory (activation slots between GPU segments, KV caches and the bank exchange in one device
// arena per GPU, shared through CUDA IPC). unified: the shared host arena, mapped for the GPU and read
// in place (integrated GPUs such as Jetson Thor and Orin share one memory with the CPU; a copy would
// hold the same bytes twice). automatic: unified where the device reports it shares the host's memory
// (integrated, or reads pageable host memory through the host's page tables), device elsewhere.
enum class GpuMemory { automatic, device, unified };

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
    case SegmentKind::audio_encoder: return "audio_encoder";
    case SegmentKind::vision_encoder: return "vision_encoder";
  }
  return "?";
}
// An encoder runs on a prompt's media, outside the token chain.
inline bool is_encoder(SegmentKind k) { return k == SegmentKind::audio_encoder || k == SegmentKind::vision_encoder; }
inline const char* to_string(ComputeDType dtype) { return dtype == ComputeDType::float32 ? "float32" : "bfloat16"; }
inline const char* to_string(GpuKernels k) { return k == GpuKernels::automatic ? "auto" : "portable"; }
inline const char* to_string(GpuMemory m) {
  return m == GpuMemory::automatic ? "auto" : m == GpuMemory::device ? "device" : "unified";
}
inline std::string to_string(const Device& device) {
  return device.type == Device::Type::cpu ? "cpu" : "cuda:" + std::to_string(device.index);
}

inline std::optional<SegmentKind> parse_segment_kind(std::string_view s) {
  for (SegmentKind k : {SegmentKind::embeddings, SegmentKind::layers, SegmentKind::experts, SegmentKind::lm_head,
                        SegmentKind::audio_encoder, SegmentKind::vision_encoder})
    if (s == to_string(k)) return k;
  return std::nullopt;
}
inline std::optional<ComputeDType> parse_compute_dtype(std::string_view s) {
  if (s == "float32") return ComputeDType::float32;
  if (s == "bfloat16") return ComputeDType::bfloat16;
  return std::nullopt;
}
inline std::optional<GpuKernels> parse_gpu_kernels(std::string_view s) {
  if (s == "auto") return GpuKernels::automatic;
  if (s == "portable") return GpuKernels::portable;
  return std::nullopt;
}
inline std::optional<GpuMemory> parse_gpu_memory(std::string_view s) {
  for (GpuMemory m : {GpuMemory::automatic, GpuMemory::device, GpuMemory::unified})
    if (s == to_string(m)) return m;
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
