// Image files as the reference sees them: PIL.Image.open, then transformers' convert_to_rgb (what
// Qwen2VLImageProcessor does with do_convert_rgb), or plain PIL convert("RGB").
//
// Formats: PNG (libpng: 1/2/4/8/16-bit grey, palette, grey+alpha, RGB, RGBA, interlaced) and JPEG
// (libjpeg-turbo: grey, YCbCr/RGB, CMYK/YCCK, baseline or progressive), recognised by their signatures,
// not by the file name. Everything else is refused.
//
// What PIL does, and so what we do:
//  - 16-bit samples keep their high byte (PIL's "RGB;16B" raw modes), except 16-bit grey, which PIL opens
//    as a 32/16-bit integer image whose conversion to 8 bits clips at 255 (it does not scale).
//  - 1/2/4-bit grey is scaled to 0..255 (x255, x85, x17).
//  - No gamma, colour profile or EXIF orientation is applied (neither PIL.Image.open nor the processor
//    applies them).
//  - CMYK JPEGs are read as Adobe-inverted CMYK and converted with PIL's cmyk2rgb.
//  - convert_to_rgb (AlphaHandling::kCompositeOnWhite): an image that PIL opens as mode "RGB" is used as
//    it is (a tRNS colour key of an RGB PNG is ignored); every other mode goes through RGBA and is
//    alpha-composited onto opaque white with PIL's integer arithmetic (Image.alpha_composite), so
//    transparent pixels become white. The alpha comes from the alpha channel, a palette's tRNS entries,
//    or a grey PNG's tRNS value.
//  - AlphaHandling::kDrop is PIL's convert("RGB"): alpha and tRNS are ignored.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "media/image/rgb_image.h"

namespace segpipe::media {

enum class AlphaHandling { kCompositeOnWhite, kDrop };

// Largest picture accepted: PIL's own decompression-bomb limit (2 * Image.MAX_IMAGE_PIXELS; PIL refuses
// anything larger with DecompressionBombError), so we refuse exactly what the reference refuses.
constexpr int64_t kMaxImagePixels = 178956970;
// Largest file read: far above any picture within kMaxImagePixels, small enough to read into memory.
constexpr uint64_t kMaxImageFileBytes = 1ull << 30;

// Reads and decodes a file; InputError naming the file for a missing, unreadable, empty, truncated,
// corrupt, unsupported or too large one.
RgbImage decode_image_file(const std::string& path, AlphaHandling alpha = AlphaHandling::kCompositeOnWhite);

// The same from memory; `name` names the source in errors (the fuzz target and tests use it).
RgbImage decode_image_bytes(const uint8_t* data, size_t size, const std::string& name,
                            AlphaHandling alpha = AlphaHandling::kCompositeOnWhite);

}  // namespace segpipe::media
