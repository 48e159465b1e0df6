// Eight float lanes for the CPU kernels, on x86-64 (AVX2 + FMA + F16C) and on ARM64 (NEON, two
// 4-lane registers). Both give the same bits for the same operations: the multiply-add is fused
// (one rounding) on both, the horizontal sum adds in one fixed order,
//   ((v0 + v4) + (v1 + v5)) + ((v2 + v6) + (v3 + v7)),
// and the loads of bf16 and f16 are exact conversions. So a dot product computed with these gives
// the same result on either architecture (with -ffp-contract=off for the scalar code around them).
#pragma once
#include <cstdint>

#if defined(__x86_64__)
#include <immintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#else
#error "segpipe's CPU kernels need x86-64 (AVX2) or ARM64 (NEON)"
#endif

namespace segpipe::simd {

// An IEEE half in memory (a distinct type so that overloads tell it from bf16's uint16_t).
struct F16 {
  uint16_t bits;
};

// Spinning while waiting for another core: tells the core (and a sibling hyper-thread) so.
inline void cpu_relax() {
#if defined(__x86_64__)
  _mm_pause();
#else
  asm volatile("yield" ::: "memory");
#endif
}

#if defined(__x86_64__)

struct V8 {
  __m256 v;
};
inline V8 zero8() { return {_mm256_setzero_ps()}; }
inline V8 load8(const float* p) { return {_mm256_loadu_ps(p)}; }
inline V8 load8(const uint16_t* p) {  // bf16: the high half of a float32
  const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return {_mm256_castsi256_ps(_mm256_slli_epi32(w, 16))};
}
inline V8 load8(const F16* p) { return {_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)))}; }
inline void store8(float* p, V8 a) { _mm256_storeu_ps(p, a.v); }
inline V8 add8(V8 a, V8 b) { return {_mm256_add_ps(a.v, b.v)}; }
// acc + a * b, rounded once
inline V8 fma8(V8 a, V8 b, V8 acc) { return {_mm256_fmadd_ps(a.v, b.v, acc.v)}; }
inline float hsum8(V8 a) {
  __m128 lo = _mm_add_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));  // l_i = v_i + v_(i+4)
  __m128 sh = _mm_movehdup_ps(lo);                                                     // l1 l1 l3 l3
  __m128 s = _mm_add_ps(lo, sh);                                                       // l0+l1 . l2+l3 .
  sh = _mm_movehl_ps(sh, s);                                                           // l2+l3 ...
  return _mm_cvtss_f32(_mm_add_ss(s, sh));                                             // (l0+l1) + (l2+l3)
}

#else  // __aarch64__

struct V8 {
  float32x4_t lo, hi;  // lanes 0-3, 4-7
};
inline V8 zero8() { return {vdupq_n_f32(0.f), vdupq_n_f32(0.f)}; }
inline V8 load8(const float* p) { return {vld1q_f32(p), vld1q_f32(p + 4)}; }
inline V8 load8(const uint16_t* p) {  // bf16: the high half of a float32
  const uint16x8_t w = vld1q_u16(p);
  return {vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(w), 16)),
          vreinterpretq_f32_u32(vshll_n_u16(vget_high_u16(w), 16))};
}
inline V8 load8(const F16* p) {
  const float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(reinterpret_cast<const uint16_t*>(p)));
  return {vcvt_f32_f16(vget_low_f16(h)), vcvt_f32_f16(vget_high_f16(h))};
}
inline void store8(float* p, V8 a) {
  vst1q_f32(p, a.lo);
  vst1q_f32(p + 4, a.hi);
}
inline V8 add8(V8 a, V8 b) { return {vaddq_f32(a.lo, b.lo), vaddq_f32(a.hi, b.hi)}; }
// acc + a * b, rounded once (FMLA), as _mm256_fmadd_ps
inline V8 fma8(V8 a, V8 b, V8 acc) { return {vfmaq_f32(acc.lo, a.lo, b.lo), vfmaq_f32(acc.hi, a.hi, b.hi)}; }
inline float hsum8(V8 a) {
  const float32x4_t l = vaddq_f32(a.lo, a.hi);           // l_i = v_i + v_(i+4)
  const float32x2_t p = vpadd_f32(vget_low_f32(l), vget_high_f32(l));  // l0+l1, l2+l3
  return vget_lane_f32(p, 0) + vget_lane_f32(p, 1);     // (l0+l1) + (l2+l3)
}

#endif

}  // namespace segpipe::simd
