// Writes a fuzz input to a file of the scratch folder, for the parsers that read files.
#pragma once
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include "fuzz_support.h"

namespace segpipe::fuzz {

// The path written, or "" where the write failed (the input is then skipped).
inline std::string write_input(const std::string& name, const uint8_t* data, size_t size) {
  const std::string path = scratch_dir() + "/" + name;
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return "";
  const bool ok = ::write(fd, data, size) == static_cast<ssize_t>(size);
  ::close(fd);
  return ok ? path : "";
}

}  // namespace segpipe::fuzz
