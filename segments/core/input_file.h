// Reading a whole input file that a user pointed us at (config.json, an index, a pipeline YAML, a
// tokenizer.json): untrusted in kind and in size.
//   - It must be a regular file: a FIFO would block the open (or the read) forever, a directory
//     would read as an empty document. Opened with O_NONBLOCK, so that the check comes first.
//   - It must not exceed `max_bytes`: a document larger than any real one is refused with exit 2
//     before it is parsed, instead of running the process out of memory.
// Errors are InputError naming the file; `what` is what it should be ("JSON file").
#pragma once
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

#include "segments/core/errors.h"

namespace segpipe {

// What a non-regular file is, for messages.
inline const char* file_type_name(mode_t m) {
  if (S_ISDIR(m)) return "a directory";
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISSOCK(m)) return "a socket";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  return "a special file";
}

// Opens `path` for reading if it is a regular file; returns the descriptor (O_CLOEXEC, blocking).
inline int open_regular_file(const std::string& path, const char* what) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throw InputError(path + ": cannot open " + what + " (" + std::strerror(errno) + ")");
  struct stat st{};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    throw InputError(path + ": cannot stat " + what + " (" + std::strerror(e) + ")");
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw InputError(path + ": is " + file_type_name(st.st_mode) + ", not a " + what);
  }
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  return fd;
}

inline std::string read_input_file(const std::string& path, uint64_t max_bytes, const char* what) {
  const int fd = open_regular_file(path, what);
  struct stat st{};
  ::fstat(fd, &st);
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    ::close(fd);
    throw InputError(path + ": " + what + " of " + std::to_string(st.st_size) + " bytes, more than the limit of " +
                     std::to_string(max_bytes) + " bytes");
  }
  std::string text(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < text.size()) {
    const ssize_t n = ::read(fd, text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      ::close(fd);
      throw InputError(path + ": cannot read " + what + " (" + std::strerror(e) + ")");
    }
    if (n == 0) break;  // shrank while we read: parse what is there (the parser names the damage)
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  text.resize(got);
  return text;
}

}  // namespace segpipe
