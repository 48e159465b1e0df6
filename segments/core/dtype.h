// Element types of checkpoint tensors and their conversion to float32 (the compute type on the CPU).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace segpipe {

// All element types of the safetensors format, so that any valid file can be listed; the engine
// computes with F32, BF16 and F16 weights only (the tensor map checks that per role).
enum class DType : uint8_t { F32, BF16, F16, I64, I32, I16, I8, U8, BOOL, F64, F8_E4M3, F8_E5M2 };

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::BF16: return 2;
    case DType::F16: return 2;
    case DType::I64: return 8;
    case DType::I32: return 4;
    case DType::I16: return 2;
    case DType::I8: return 1;
    case DType::U8: return 1;
    case DType::BOOL: return 1;
    case DType::F64: return 8;
    case DType::F8_E4M3: return 1;
    case DType::F8_E5M2: return 1;
  }
  return 0;
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::BF16: return "BF16";
    case DType::F16: return "F16";
    case DType::I64: return "I64";
    case DType::I32: return "I32";
    case DType::I16: return "I16";
    case DType::I8: return "I8";
    case DType::U8: return "U8";
    case DType::BOOL: return "BOOL";
    case DType::F64: return "F64";
    case DType::F8_E4M3: return "F8_E4M3";
    case DType::F8_E5M2: return "F8_E5M2";
  }
  return "?";
}

// Names as the safetensors header spells them.
inline std::optional<DType> dtype_from_name(std::string_view s) {
  static constexpr DType all[] = {DType::F32, DType::BF16, DType::F16, DType::I64, DType::I32, DType::I16,
                                  DType::I8,  DType::U8,   DType::BOOL, DType::F64, DType::F8_E4M3,
                                  DType::F8_E5M2};
  for (DType t : all)
    if (s == dtype_name(t)) return t;
  return std::nullopt;
}

inline bool is_float_dtype(DType t) { return t == DType::F32 || t == DType::BF16 || t == DType::F16; }

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round-to-nearest-even, as torch's .to(torch.bfloat16) does; NaN stays NaN.
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  uint32_t lsb = (u >> 16) & 1u;
  u += 0x7fffu + lsb;
  return static_cast<uint16_t>(u >> 16);
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

}  // namespace segpipe
