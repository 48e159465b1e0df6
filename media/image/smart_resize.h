// smart_resize of transformers' Qwen2-VL image processor (image_processing_qwen2_vl.py, 5.x): the size an
// image is resized to before it is cut into patches. Both sides become multiples of `factor`
// (patch_size * merge_size), the pixel count lands in [min_pixels, max_pixels], the aspect ratio stays as
// close as it can.
#pragma once
#include <cstdint>
#include <string>

namespace segpipe::media {

struct ResizedSize {
  int64_t height = 0;
  int64_t width = 0;
};

// The reference's rule for extreme shapes: max(h, w) / min(h, w) > 200 is refused.
constexpr double kMaxAspectRatio = 200.0;

// InputError naming `name` for an aspect ratio above kMaxAspectRatio (the reference raises ValueError)
// or for a result that is empty (factor or pixel bounds that cannot be met).
ResizedSize smart_resize(int64_t height, int64_t width, int64_t factor, int64_t min_pixels, int64_t max_pixels,
                         const std::string& name);

}  // namespace segpipe::media
