// The resize of transformers 5's Qwen2VLImageProcessor (torchvision backend): torchvision's
// resize(uint8 image, size, BICUBIC, antialias=True), which on the CPU runs torch's native uint8 kernel
// (aten/src/ATen/native/cpu/UpSampleKernel.cpp, _upsample_bicubic2d_aa on kByte):
//  - separable: the width first (within rows), then the height, each pass rounding to uint8; a pass whose
//    size does not change is skipped, and an unchanged size returns the image as it is;
//  - antialiased Keys cubic with a = -0.5 (PIL's filter: torch uses -0.5 with antialias, -0.75 without),
//    support 2 * scale when shrinking, centres at scale * (i + 0.5), weights normalised per output pixel;
//  - the weights rounded to int16 with a precision chosen from the largest weight, the sums in integers
//    with +0.5 folded in, shifted back and clamped to 0..255.
#pragma once
#include <cstdint>

#include "media/image/rgb_image.h"

namespace segpipe::media {

RgbImage resize_bicubic_antialias(const RgbImage& in, int64_t out_height, int64_t out_width);

}  // namespace segpipe::media
