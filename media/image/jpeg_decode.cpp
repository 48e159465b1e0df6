// JPEG through libjpeg-turbo with its defaults (integer slow IDCT, fancy upsampling), which is how PIL
// decodes. libjpeg reports errors by longjmp, so each step that can fail runs in a function whose frame
// holds no C++ object with a destructor. A file that ends early is an error, as in PIL (libjpeg alone
// would only warn and fill the rest with grey).
#include <cstdio>
// jpeglib.h needs size_t and FILE declared first.
#include <jerror.h>
#include <jpeglib.h>

#include <csetjmp>
#include <cstring>
#include <vector>

#include "media/image/image_formats.h"
#include "media/image/pil_color.h"
#include "segments/core/errors.h"

namespace segpipe::media {

namespace {

struct JpegReader {
  jpeg_decompress_struct cinfo;
  jpeg_error_mgr jerr;
  jmp_buf jump;
  bool created = false;
  bool truncated = false;
  char error[JMSG_LENGTH_MAX] = {};
};

void error_exit(j_common_ptr cinfo) {
  auto* r = reinterpret_cast<JpegReader*>(cinfo->client_data);
  (*cinfo->err->format_message)(cinfo, r->error);
  std::longjmp(r->jump, 1);
}

void emit_message(j_common_ptr cinfo, int level) {
  if (level != -1) return;  // trace messages
  // Warnings about corrupt data are read past (PIL does too); running out of data is not.
  if (cinfo->err->msg_code == JWRN_JPEG_EOF) {
    auto* r = reinterpret_cast<JpegReader*>(cinfo->client_data);
    r->truncated = true;
    (*cinfo->err->format_message)(cinfo, r->error);
    std::longjmp(r->jump, 1);
  }
}

bool read_header(JpegReader* r, const uint8_t* data, size_t size) {
  if (setjmp(r->jump)) return false;
  jpeg_create_decompress(&r->cinfo);
  r->created = true;
  jpeg_mem_src(&r->cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&r->cinfo, TRUE);
  // PIL's modes: one component is "L", four are "CMYK" (YCCK is converted to CMYK), the rest "RGB".
  const J_COLOR_SPACE cs = r->cinfo.jpeg_color_space;
  if (r->cinfo.num_components == 1)
    r->cinfo.out_color_space = JCS_GRAYSCALE;
  else if (cs == JCS_CMYK || cs == JCS_YCCK)
    r->cinfo.out_color_space = JCS_CMYK;
  else
    r->cinfo.out_color_space = JCS_RGB;
  return true;
}

bool start(JpegReader* r) {
  if (setjmp(r->jump)) return false;
  jpeg_start_decompress(&r->cinfo);
  return true;
}

bool read_rows(JpegReader* r, uint8_t* out, size_t row_bytes) {
  if (setjmp(r->jump)) return false;
  while (r->cinfo.output_scanline < r->cinfo.output_height) {
    JSAMPROW row = out + static_cast<size_t>(r->cinfo.output_scanline) * row_bytes;
    jpeg_read_scanlines(&r->cinfo, &row, 1);
  }
  return true;
}

struct JpegGuard {
  JpegReader* r;
  ~JpegGuard() {
    if (r->created) jpeg_destroy_decompress(&r->cinfo);
  }
};

[[noreturn]] void fail(const JpegReader& r, const std::string& name) {
  if (r.truncated) throw InputError(name + ": truncated JPEG file (" + r.error + ")");
  throw InputError(name + ": corrupt or unsupported JPEG file (" + r.error + ")");
}

}  // namespace

bool is_jpeg(const uint8_t* data, size_t size) {
  return size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF;
}

RgbImage decode_jpeg(const uint8_t* data, size_t size, const std::string& name, AlphaHandling /*alpha*/) {
  // PIL opens JPEGs as "L", "RGB" or "CMYK": none has alpha, so convert_to_rgb and convert("RGB") agree.
  JpegReader r;
  std::memset(&r.cinfo, 0, sizeof r.cinfo);
  r.cinfo.err = jpeg_std_error(&r.jerr);
  r.jerr.error_exit = error_exit;
  r.jerr.emit_message = emit_message;
  r.cinfo.client_data = &r;
  JpegGuard guard{&r};
  if (!read_header(&r, data, size)) fail(r, name);
  // Before libjpeg allocates anything for the picture (progressive files keep all coefficients).
  check_image_size(r.cinfo.image_width, r.cinfo.image_height, name);
  if (!start(&r)) fail(r, name);
  const int comps = r.cinfo.output_components;
  const size_t w = r.cinfo.output_width, h = r.cinfo.output_height;
  std::vector<uint8_t> raw(w * h * static_cast<size_t>(comps));
  if (!read_rows(&r, raw.data(), w * static_cast<size_t>(comps))) fail(r, name);
  // jpeg_finish_decompress is skipped on purpose: trailing garbage after the image is no error for PIL.

  RgbImage img;
  img.width = static_cast<int64_t>(w);
  img.height = static_cast<int64_t>(h);
  img.rgb.resize(w * h * 3);
  for (size_t i = 0; i < w * h; i++) {
    uint8_t* o = img.rgb.data() + 3 * i;
    if (comps == 1) {
      o[0] = o[1] = o[2] = raw[i];
    } else if (comps == 3) {
      std::memcpy(o, raw.data() + 3 * i, 3);
    } else {
      // PIL reads CMYK as Adobe-inverted ("CMYK;I") whatever the markers say, then applies cmyk2rgb.
      const uint8_t* s = raw.data() + 4 * i;
      cmyk_to_rgb(static_cast<uint8_t>(255 - s[0]), static_cast<uint8_t>(255 - s[1]), static_cast<uint8_t>(255 - s[2]),
                  static_cast<uint8_t>(255 - s[3]), o);
    }
  }
  return img;
}

}  // namespace segpipe::media
