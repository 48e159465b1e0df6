// Image decoding against PIL (the goldens' `<img>.decoded` / `<img>.rgb_input` and the encoded variants
// `files.<name>.*` that tools/goldens/media/vision.py made with PIL). Tolerance: none. Decoding is
// integer arithmetic (libpng transforms, libjpeg-turbo's integer IDCT and upsampling, PIL's integer
// composite and CMYK formulas), so every byte must match.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>
#include <zlib.h>

#include <fstream>
#include <string>
#include <vector>

#include "media/image/image_decode.h"
#include "segments/core/errors.h"
#include "tests/media/image_golden.h"

namespace segpipe::testing {
namespace {

using media::AlphaHandling;
using media::RgbImage;

const char* kGolden = "tests/data/media/goldens/image_processor.safetensors";

// First differing byte, for a message that says where.
std::string first_difference(const RgbImage& img, const std::vector<uint8_t>& ref) {
  for (size_t i = 0; i < ref.size() && i < img.rgb.size(); i++)
    if (img.rgb[i] != ref[i]) {
      const int64_t px = static_cast<int64_t>(i / 3);
      return "first difference at (y=" + std::to_string(px / img.width) + ", x=" + std::to_string(px % img.width) +
             ", c=" + std::to_string(i % 3) + "): ours " + std::to_string(img.rgb[i]) + ", PIL " +
             std::to_string(ref[i]);
    }
  return "sizes differ";
}

void expect_equal(const RgbImage& img, const VisionGolden& g, const std::string& name) {
  const auto shape = g.shape(name);
  ASSERT_EQ(shape.size(), 3u) << name;
  EXPECT_EQ(img.height, shape[0]) << name;
  EXPECT_EQ(img.width, shape[1]) << name;
  const std::vector<uint8_t> ref = g.u8(name);
  EXPECT_TRUE(img.rgb == ref) << name << ": " << first_difference(img, ref);
}

TEST(ImageDecode, TestFilesMatchPil) {
  auto g = VisionGolden::open(kGolden);
  if (!g) return;
  for (const char* name : {"shapes", "photo"}) {
    const std::string file =
        source_path(std::string("tests/data/media/") + (std::string(name) == "shapes" ? "shapes.png" : "photo.jpg"));
    expect_equal(media::decode_image_file(file, AlphaHandling::kDrop), *g, std::string(name) + ".decoded");
    expect_equal(media::decode_image_file(file), *g, std::string(name) + ".rgb_input");
  }
}

TEST(ImageDecode, ColourTypesMatchPil) {
  auto g = VisionGolden::open(kGolden);
  if (!g) return;
  int files = 0;
  for (const std::string& t : g->names()) {
    const std::string suffix = ".bytes";
    if (t.rfind("files.", 0) != 0 || t.size() < suffix.size() ||
        t.compare(t.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    const std::string base = t.substr(0, t.size() - suffix.size());
    const std::vector<uint8_t> bytes = g->u8(t);
    SCOPED_TRACE(base);
    files++;
    if (g->has(base + ".decoded"))
      expect_equal(media::decode_image_bytes(bytes.data(), bytes.size(), base, AlphaHandling::kDrop), *g,
                   base + ".decoded");
    if (g->has(base + ".rgb_input"))
      expect_equal(media::decode_image_bytes(bytes.data(), bytes.size(), base), *g, base + ".rgb_input");
  }
  EXPECT_GE(files, 15) << "the golden holds fewer encoded variants than vision.py writes";
}

// ---------------------------------------------------------------------------------------------------------
// bad input: InputError naming the file

class TempFile {
 public:
  explicit TempFile(const std::string& bytes) {
    char tmpl[] = "/tmp/segpipe-image-XXXXXX";
    const int fd = mkstemp(tmpl);
    if (fd < 0) throw std::runtime_error("mkstemp failed");
    ::close(fd);
    path_ = tmpl;
    std::ofstream(path_, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  ~TempFile() { ::unlink(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string read_file(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void expect_input_error(const std::string& path, const std::string& what) {
  try {
    media::decode_image_file(path);
    ADD_FAILURE() << "no error for " << what;
  } catch (const InputError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
  }
}

TEST(ImageDecodeBadInput, MissingEmptyDirectory) {
  expect_input_error("/nonexistent/picture.png", "cannot open");
  TempFile empty("");
  expect_input_error(empty.path(), "empty file");
  expect_input_error("/tmp", "not a regular file");
}

TEST(ImageDecodeBadInput, UnsupportedFormat) {
  TempFile gif("GIF89a\x01\x00\x01\x00\x00\x00\x00;");
  expect_input_error(gif.path(), "not a PNG or JPEG");
  TempFile text("hello, this is no picture\n");
  expect_input_error(text.path(), "not a PNG or JPEG");
}

TEST(ImageDecodeBadInput, TruncatedFiles) {
  const std::string png = read_file(source_path("tests/data/media/shapes.png"));
  const std::string jpg = read_file(source_path("tests/data/media/photo.jpg"));
  ASSERT_GT(png.size(), 200u);
  ASSERT_GT(jpg.size(), 200u);
  for (size_t keep : {size_t{8}, size_t{30}, png.size() / 2, png.size() * 3 / 4}) {
    TempFile t(png.substr(0, keep));
    SCOPED_TRACE(keep);
    expect_input_error(t.path(), "PNG file");
  }
  for (size_t keep : {size_t{3}, size_t{100}, jpg.size() / 2, jpg.size() - 10}) {
    TempFile t(jpg.substr(0, keep));
    SCOPED_TRACE(keep);
    expect_input_error(t.path(), "JPEG file");
  }
}

TEST(ImageDecodeBadInput, CorruptData) {
  std::string png = read_file(source_path("tests/data/media/shapes.png"));
  // A flipped bit in the IHDR chunk's CRC (bytes 29..32): the chunk no longer checks.
  png[30] = static_cast<char>(png[30] ^ 0x10);
  TempFile t(png);
  expect_input_error(t.path(), "corrupt or unsupported PNG");
}

// A PNG header (with a valid CRC) announcing a picture above PIL's decompression-bomb limit.
std::string png_header_only(uint32_t w, uint32_t h) {
  auto be32 = [](uint32_t v) {
    std::string s(4, '\0');
    for (int i = 0; i < 4; i++) s[static_cast<size_t>(i)] = static_cast<char>((v >> (24 - 8 * i)) & 0xff);
    return s;
  };
  std::string ihdr = "IHDR" + be32(w) + be32(h) + std::string("\x08\x02\x00\x00\x00", 5);
  const uLong crc = crc32(0, reinterpret_cast<const Bytef*>(ihdr.data()), static_cast<uInt>(ihdr.size()));
  return std::string("\x89PNG\r\n\x1a\n", 8) + be32(13) + ihdr + be32(static_cast<uint32_t>(crc));
}

TEST(ImageDecodeBadInput, AbsurdDimensions) {
  TempFile big(png_header_only(20000, 20000));  // 400 million pixels
  expect_input_error(big.path(), "more than the limit of 178956970 pixels");
}

}  // namespace
}  // namespace segpipe::testing
