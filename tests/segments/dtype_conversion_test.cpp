// f16 / bf16 <-> f32 conversions (segments/core/dtype.h): all 65536 bit patterns against the format
// definitions; f32 -> 16-bit rounds to the nearest representable value, ties to even; NaN stays NaN.
#include <gtest/gtest.h>

#include <random>

#include "segments/core/dtype.h"
#include "segments_test_support.h"

namespace segpipe {
namespace {

bool same_value(double ref, float got) {
  if (std::isnan(ref)) return std::isnan(got);
  if (ref == 0) return got == 0 && std::signbit(got) == std::signbit(ref);
  return static_cast<double>(got) == ref;
}

TEST(DtypeConversion, F16ToF32AllBitPatterns) {
  for (uint32_t h = 0; h < 65536; h++) {
    double ref = testing::ref_f16(static_cast<uint16_t>(h));
    float got = f16_to_f32(static_cast<uint16_t>(h));
    ASSERT_TRUE(same_value(ref, got)) << std::hex << "f16 0x" << h << ": got " << got << ", expected " << ref;
  }
}

TEST(DtypeConversion, Bf16ToF32AllBitPatterns) {
  for (uint32_t h = 0; h < 65536; h++) {
    double ref = testing::ref_bf16(static_cast<uint16_t>(h));
    float got = bf16_to_f32(static_cast<uint16_t>(h));
    ASSERT_TRUE(same_value(ref, got)) << std::hex << "bf16 0x" << h << ": got " << got << ", expected " << ref;
  }
}

TEST(DtypeConversion, SixteenBitValuesRoundTripExactly) {
  for (uint32_t h = 0; h < 65536; h++) {
    uint16_t b = static_cast<uint16_t>(h);
    if (std::isnan(testing::ref_f16(b))) {
      EXPECT_TRUE(std::isnan(testing::ref_f16(f32_to_f16(f16_to_f32(b))))) << std::hex << "f16 NaN 0x" << h;
    } else {
      ASSERT_EQ(f32_to_f16(f16_to_f32(b)), b) << std::hex << "f16 0x" << h;
    }
    if (std::isnan(testing::ref_bf16(b))) {
      EXPECT_TRUE(std::isnan(testing::ref_bf16(f32_to_bf16(bf16_to_f32(b))))) << std::hex << "bf16 NaN 0x" << h;
    } else {
      ASSERT_EQ(f32_to_bf16(bf16_to_f32(b)), b) << std::hex << "bf16 0x" << h;
    }
  }
}

// Nearest 16-bit value to x by the definition: among all finite patterns of the sign of x (plus
// infinity for overflow), the one closest to x; on a tie, the even mantissa. Found by binary search
// over the ordered magnitudes of the format.
uint16_t ref_round(float x, double (*decode)(uint16_t), uint16_t inf_bits) {
  uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  double a = std::fabs(static_cast<double>(x));
  // Magnitudes are increasing in the bit pattern from 0 up to inf_bits.
  uint16_t lo = 0, hi = inf_bits;
  while (hi - lo > 1) {
    uint16_t mid = static_cast<uint16_t>((lo + hi) / 2);
    if (decode(mid) <= a) lo = mid; else hi = mid;
  }
  // a lies in [decode(lo), decode(hi)); candidates lo and hi.
  double dl = a - decode(lo);
  double dh = (hi == inf_bits) ? INFINITY : decode(hi) - a;
  uint16_t pick;
  if (hi == inf_bits) {
    // Overflow rule (IEEE): round to infinity when |x| >= max + half an ulp of max.
    double ulp = decode(lo) - decode(static_cast<uint16_t>(lo - 1));
    pick = a >= decode(lo) + ulp / 2 ? inf_bits : lo;
  } else if (dl < dh) {
    pick = lo;
  } else if (dh < dl) {
    pick = hi;
  } else {
    pick = (lo & 1) ? hi : lo;
  }
  return static_cast<uint16_t>(sign | pick);
}

TEST(DtypeConversion, F32ToSixteenBitRoundsToNearestEven) {
  std::mt19937_64 rng(2024);
  std::vector<float> xs = {0.f, -0.f, 1.f, -1.f, 65504.f, 65519.f, 65520.f, 1e-8f, 5.960464477539063e-08f,
                           2.9802322387695312e-08f, 2.98023259e-08f, 6.0975551605224609e-05f, 3.0e38f, -3.4e38f,
                           1.00048828125f /* f16 tie: 1 + 2^-11 */, 1.00390625f /* bf16 tie: 1 + 2^-8 */,
                           1.01171875f /* bf16 tie to even, upward */};
  for (int i = 0; i < 200000; i++) {
    uint32_t u = static_cast<uint32_t>(rng());
    if (i % 2) u = (u & 0x807fffffu) | ((100u + static_cast<uint32_t>(rng() % 60)) << 23);  // near the f16 range
    float f;
    std::memcpy(&f, &u, 4);
    if (!std::isnan(f)) xs.push_back(f);
  }
  for (float x : xs) {
    if (std::isinf(x)) continue;
    ASSERT_EQ(f32_to_f16(x), ref_round(x, testing::ref_f16, 0x7c00)) << "f16 of " << x;
    ASSERT_EQ(f32_to_bf16(x), ref_round(x, testing::ref_bf16, 0x7f80)) << "bf16 of " << x;
  }
  EXPECT_EQ(f32_to_f16(INFINITY), 0x7c00);
  EXPECT_EQ(f32_to_f16(-INFINITY), 0xfc00);
  EXPECT_EQ(f32_to_bf16(INFINITY), 0x7f80);
  EXPECT_TRUE(std::isnan(testing::ref_f16(f32_to_f16(NAN))));
  EXPECT_TRUE(std::isnan(testing::ref_bf16(f32_to_bf16(NAN))));
  // A NaN whose payload sits only in the low 16 bits must not become infinity when truncated.
  uint32_t quiet_low = 0x7f800001u;
  float snan;
  std::memcpy(&snan, &quiet_low, 4);
  EXPECT_TRUE(std::isnan(testing::ref_bf16(f32_to_bf16(snan))));
  EXPECT_TRUE(std::isnan(testing::ref_f16(f32_to_f16(snan))));
}

}  // namespace
}  // namespace segpipe
