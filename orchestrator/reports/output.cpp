#include "orchestrator/reports/output.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>

#include "segments/core/errors.h"

namespace segpipe {

namespace fs = std::filesystem;

void ignore_sigpipe() {
  struct sigaction sa{};
  sa.sa_handler = SIG_IGN;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGPIPE, &sa, nullptr);
}

void flush_stdout() {
  errno = 0;
  // std::cout writes through stdout's buffer (synchronized with stdio), so one check covers both.
  std::cout.flush();
  const bool ok = std::fflush(stdout) == 0 && !std::ferror(stdout) && !std::cout.bad();
  const int e = errno;
  if (ok) return;
  if (e == EPIPE) throw OutputClosed();
  throw RuntimeFailure(std::string("cannot write standard output (") + (e ? std::strerror(e) : "write error") + ")");
}

void write_output_file(const std::string& path, const std::string& text) {
  // Opening fails for what the user named (exit 2); writing fails for what the machine lacks (exit 3).
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw InputError(path + ": cannot create (" + std::strerror(errno) + ")");
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int e = n < 0 ? errno : EIO;
      ::close(fd);
      throw RuntimeFailure(path + ": write failed (" + std::strerror(e) + ")");
    }
    done += static_cast<size_t>(n);
  }
  if (::close(fd) != 0 && errno != EINTR) throw RuntimeFailure(path + ": write failed (" + std::strerror(errno) + ")");
}

void make_output_dir(const std::string& path) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) throw InputError(path + ": cannot create the output folder (" + ec.message() + ")");
  if (!fs::is_directory(path, ec)) throw InputError(path + ": exists and is not a folder");
  // Root passes any permission check; access() asks the kernel about this user (a read-only folder,
  // or a read-only file system) before anything is computed.
  if (::access(path.c_str(), W_OK) != 0)
    throw InputError(path + ": cannot write into the output folder (" + std::strerror(errno) + ")");
}

}  // namespace segpipe
