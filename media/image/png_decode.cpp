// PNG through libpng's full API (not the simplified png_image API, which converts 16-bit samples as
// linear light to sRGB: PIL keeps the high byte). libpng reports errors by longjmp, so each step that can
// fail runs in a function whose frame holds no C++ object with a destructor; buffers are sized in
// between, in ordinary C++ code.
#include <png.h>

#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <vector>

#include "media/image/image_formats.h"
#include "media/image/pil_color.h"
#include "segments/core/errors.h"

namespace segpipe::media {

namespace {

struct PngReader {
  png_structp png = nullptr;
  png_infop info = nullptr;
  const uint8_t* data = nullptr;
  size_t size = 0;
  size_t pos = 0;
  bool truncated = false;
  char error[256] = {};
};

// What the header says and what the rows hold after the transforms we asked for.
struct PngLayout {
  png_uint_32 width = 0;
  png_uint_32 height = 0;
  int bit_depth = 0;
  int color_type = 0;
  bool has_trns = false;
  png_uint_16 trns_gray = 0;  // grey images: the transparent grey value, in sample units
  int channels = 0;           // per pixel, after the transforms
  bool gray16 = false;        // 16-bit grey kept at 16 bits (PIL clips it, see image_decode.h)
  size_t rowbytes = 0;
};

void read_fn(png_structp png, png_bytep out, size_t n) {
  auto* r = static_cast<PngReader*>(png_get_io_ptr(png));
  if (r->size - r->pos < n) {
    r->truncated = true;
    png_error(png, "file ends early");
  }
  std::memcpy(out, r->data + r->pos, n);
  r->pos += n;
}

void error_fn(png_structp png, png_const_charp msg) {
  auto* r = static_cast<PngReader*>(png_get_error_ptr(png));
  std::snprintf(r->error, sizeof r->error, "%s", msg ? msg : "libpng error");
  png_longjmp(png, 1);
}

void warning_fn(png_structp, png_const_charp) {}  // benign problems: PIL reads past them too

// The header and the transforms. Returns false on a libpng error (message in r->error).
bool read_header(PngReader* r, PngLayout* l, bool want_alpha) {
  if (setjmp(png_jmpbuf(r->png))) return false;
  png_set_read_fn(r->png, r, read_fn);
  // Dimensions libpng itself accepts; the pixel limit is checked by the caller before any buffer.
  png_set_user_limits(r->png, 1u << 20, 1u << 20);
  png_read_info(r->png, r->info);
  int interlace = 0;
  png_get_IHDR(r->png, r->info, &l->width, &l->height, &l->bit_depth, &l->color_type, &interlace, nullptr,
               nullptr);
  l->has_trns = png_get_valid(r->png, r->info, PNG_INFO_tRNS) != 0;
  if (l->has_trns && (l->color_type == PNG_COLOR_TYPE_GRAY)) {
    png_color_16p trans = nullptr;
    png_get_tRNS(r->png, r->info, nullptr, nullptr, &trans);
    if (trans) l->trns_gray = trans->gray;
  }
  if (l->color_type == PNG_COLOR_TYPE_PALETTE) {
    png_set_palette_to_rgb(r->png);
    // A palette's tRNS entries become an alpha channel only where convert_to_rgb would use them.
    if (l->has_trns && want_alpha) png_set_tRNS_to_alpha(r->png);
  }
  if (l->color_type == PNG_COLOR_TYPE_GRAY && l->bit_depth < 8) png_set_expand_gray_1_2_4_to_8(r->png);
  l->gray16 = l->color_type == PNG_COLOR_TYPE_GRAY && l->bit_depth == 16;
  if (l->bit_depth == 16 && !l->gray16) png_set_strip_16(r->png);  // the high byte, as PIL's ";16B" modes
  png_set_interlace_handling(r->png);
  png_read_update_info(r->png, r->info);
  l->channels = png_get_channels(r->png, r->info);
  l->rowbytes = png_get_rowbytes(r->png, r->info);
  return true;
}

bool read_rows(PngReader* r, png_bytepp rows) {
  if (setjmp(png_jmpbuf(r->png))) return false;
  // No png_read_end: PIL stops after the image data and accepts a file whose IEND is missing.
  png_read_image(r->png, rows);
  return true;
}

struct PngGuard {
  PngReader* r;
  ~PngGuard() { png_destroy_read_struct(&r->png, r->info ? &r->info : nullptr, nullptr); }
};

[[noreturn]] void fail(const PngReader& r, const std::string& name) {
  if (r.truncated) throw InputError(name + ": truncated PNG file (" + r.error + ")");
  throw InputError(name + ": corrupt or unsupported PNG file (" + r.error + ")");
}

}  // namespace

bool is_png(const uint8_t* data, size_t size) { return size >= 8 && png_sig_cmp(data, 0, 8) == 0; }

RgbImage decode_png(const uint8_t* data, size_t size, const std::string& name, AlphaHandling alpha) {
  // The size from IHDR (always the first chunk) before libpng reads on: PIL refuses an oversized picture
  // when it opens the file, whatever follows, and so do we.
  if (size >= 24 && std::memcmp(data + 12, "IHDR", 4) == 0) {
    auto be32 = [&](size_t o) {
      return (static_cast<int64_t>(data[o]) << 24) | (data[o + 1] << 16) | (data[o + 2] << 8) | data[o + 3];
    };
    const int64_t w = be32(16), h = be32(20);
    if (w > 0 && h > 0) check_image_size(w, h, name);
  }
  PngReader r;
  r.data = data;
  r.size = size;
  r.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &r, error_fn, warning_fn);
  if (!r.png) throw RuntimeFailure(name + ": libpng could not start (out of memory)");
  PngGuard guard{&r};
  r.info = png_create_info_struct(r.png);
  if (!r.info) throw RuntimeFailure(name + ": libpng could not start (out of memory)");

  const bool want_alpha = alpha == AlphaHandling::kCompositeOnWhite;
  PngLayout l;
  if (!read_header(&r, &l, want_alpha)) fail(r, name);
  check_image_size(l.width, l.height, name);

  std::vector<uint8_t> raw(l.rowbytes * l.height);
  std::vector<png_bytep> rows(l.height);
  for (png_uint_32 y = 0; y < l.height; y++) rows[y] = raw.data() + y * l.rowbytes;
  if (!read_rows(&r, rows.data())) fail(r, name);

  RgbImage img;
  img.width = l.width;
  img.height = l.height;
  img.rgb.resize(static_cast<size_t>(img.width * img.height * 3));
  // PIL opens colour type 2 as mode "RGB", which convert_to_rgb returns untouched: no tRNS, no composite.
  const bool composite = want_alpha && l.color_type != PNG_COLOR_TYPE_RGB;
  for (png_uint_32 y = 0; y < l.height; y++) {
    const uint8_t* s = rows[y];
    uint8_t* o = img.rgb.data() + static_cast<size_t>(y) * l.width * 3;
    for (png_uint_32 x = 0; x < l.width; x++, o += 3) {
      uint8_t r8 = 0, g8 = 0, b8 = 0, a8 = 255;
      if (l.gray16) {
        const unsigned v = (static_cast<unsigned>(s[2 * x]) << 8) | s[2 * x + 1];
        r8 = g8 = b8 = static_cast<uint8_t>(v > 255 ? 255 : v);  // PIL: I;16 -> L clips
        if (l.has_trns && v == l.trns_gray) a8 = 0;
      } else if (l.channels == 1) {
        r8 = g8 = b8 = s[x];
        // PIL compares its 8-bit grey value with the tRNS number as stored (sample units).
        if (l.has_trns && s[x] == l.trns_gray) a8 = 0;
      } else if (l.channels == 2) {
        r8 = g8 = b8 = s[2 * x];
        a8 = s[2 * x + 1];
      } else if (l.channels == 3) {
        r8 = s[3 * x];
        g8 = s[3 * x + 1];
        b8 = s[3 * x + 2];
      } else {
        r8 = s[4 * x];
        g8 = s[4 * x + 1];
        b8 = s[4 * x + 2];
        a8 = s[4 * x + 3];
      }
      if (composite) {
        composite_on_white(r8, g8, b8, a8, o);
      } else {
        o[0] = r8;
        o[1] = g8;
        o[2] = b8;
      }
    }
  }
  return img;
}

}  // namespace segpipe::media
