#include "media/image/image_decode.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "media/image/image_formats.h"
#include "segments/core/errors.h"

namespace segpipe::media {

void check_image_size(int64_t width, int64_t height, const std::string& name) {
  if (width <= 0 || height <= 0)
    throw InputError(name + ": image has no pixels (" + std::to_string(width) + "x" + std::to_string(height) + ")");
  if (width > kMaxImagePixels / height)
    throw InputError(name + ": image is " + std::to_string(width) + "x" + std::to_string(height) +
                     ", more than the limit of " + std::to_string(kMaxImagePixels) +
                     " pixels (PIL's decompression-bomb limit)");
}

RgbImage decode_image_bytes(const uint8_t* data, size_t size, const std::string& name, AlphaHandling alpha) {
  if (size == 0) throw InputError(name + ": empty file");
  if (is_png(data, size)) return decode_png(data, size, name, alpha);
  if (is_jpeg(data, size)) return decode_jpeg(data, size, name, alpha);
  throw InputError(name + ": not a PNG or JPEG image (unsupported image format)");
}

RgbImage decode_image_file(const std::string& path, AlphaHandling alpha) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw InputError(path + ": cannot open image file: " + std::strerror(errno));
  std::vector<uint8_t> bytes;
  try {
    struct stat st {};
    if (::fstat(fd, &st) != 0) throw InputError(path + ": cannot stat image file: " + std::strerror(errno));
    if (!S_ISREG(st.st_mode)) throw InputError(path + ": not a regular file");
    if (static_cast<uint64_t>(st.st_size) > kMaxImageFileBytes)
      throw InputError(path + ": image file is " + std::to_string(st.st_size) + " bytes, more than the limit of " +
                       std::to_string(kMaxImageFileBytes));
    bytes.resize(static_cast<size_t>(st.st_size));
    size_t got = 0;
    while (got < bytes.size()) {
      const ssize_t n = ::read(fd, bytes.data() + got, bytes.size() - got);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw InputError(path + ": cannot read image file: " + std::strerror(errno));
      if (n == 0) break;  // shrank while we read: decode what is there (a truncation is reported as such)
      got += static_cast<size_t>(n);
    }
    bytes.resize(got);
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  return decode_image_bytes(bytes.data(), bytes.size(), path, alpha);
}

}  // namespace segpipe::media
