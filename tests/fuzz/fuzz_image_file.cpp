// Fuzz target: image files (media/image: libpng / libjpeg-turbo decoding as PIL does it, then the Qwen2-VL
// image processor). The input is written as a file and read the way `--image FILE` reads it; only
// InputError may escape, and what is accepted must have the declared size, stay within the limits and
// give finite pixel values of the grid's shape.
// Seeds: the committed tests/data/media images (make_fuzz_seeds would add them as OUT/image_file/).
#include <cmath>
#include <cstdint>

#include "fuzz_support.h"
#include "fuzz_write.h"
#include "media/image/image_decode.h"
#include "media/image/image_processor.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace segpipe;
  const std::string path = fuzz::write_input("input.image", data, size);
  if (path.empty()) return 0;
  for (auto alpha : {media::AlphaHandling::kCompositeOnWhite, media::AlphaHandling::kDrop}) {
    media::RgbImage img;
    const bool ok = fuzz::only_input_errors("decode_image_file", [&] {
      img = media::decode_image_file(path, alpha);
      FUZZ_INVARIANT(img.width > 0 && img.height > 0);
      FUZZ_INVARIANT(img.width <= media::kMaxImagePixels / img.height);
      FUZZ_INVARIANT(img.rgb.size() == static_cast<size_t>(img.width * img.height * 3));
    });
    if (!ok || alpha == media::AlphaHandling::kDrop) continue;
    fuzz::only_input_errors("preprocess_image", [&] {
      // The tiny checkpoints' settings with a small pixel budget keep each round cheap; the code path is
      // the real one's.
      media::ImageProcessorConfig cfg;
      cfg.patch_size = 4;
      cfg.min_pixels = 64;
      cfg.max_pixels = 4096;
      const media::ProcessedImage p = media::preprocess_image(img, cfg, path);
      FUZZ_INVARIANT(p.grid_t == 1 && p.grid_h > 0 && p.grid_w > 0);
      FUZZ_INVARIANT(p.grid_h % cfg.merge_size == 0 && p.grid_w % cfg.merge_size == 0);
      FUZZ_INVARIANT(p.patch_dim == 3 * cfg.temporal_patch_size * cfg.patch_size * cfg.patch_size);
      FUZZ_INVARIANT(p.pixel_values.size() == static_cast<size_t>(p.num_patches() * p.patch_dim));
      // mean = std = 0.5: every value is (x - 127.5) / 127.5 for a byte x.
      for (float v : p.pixel_values) FUZZ_INVARIANT(std::isfinite(v) && v >= -1.0f && v <= 1.0f);
    });
  }
  return 0;
}
