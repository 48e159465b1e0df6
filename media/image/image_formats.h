// The per-format decoders behind decode_image_bytes (image_decode.h); internal to media/image.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "media/image/image_decode.h"

namespace segpipe::media {

bool is_png(const uint8_t* data, size_t size);
bool is_jpeg(const uint8_t* data, size_t size);
RgbImage decode_png(const uint8_t* data, size_t size, const std::string& name, AlphaHandling alpha);
RgbImage decode_jpeg(const uint8_t* data, size_t size, const std::string& name, AlphaHandling alpha);

// InputError unless width x height is a picture we accept (positive, at most kMaxImagePixels).
void check_image_size(int64_t width, int64_t height, const std::string& name);

}  // namespace segpipe::media
