// A one-line progress bar on standard error while segments load, drawn only when standard error is a
// terminal (logs and pipes stay clean).
#pragma once
#include <unistd.h>

#include <cstdio>
#include <string>

namespace segpipe {

class LoadProgress {
 public:
  LoadProgress(size_t total, std::string what) : total_(total), what_(std::move(what)), tty_(isatty(2) == 1) { draw(""); }
  void tick(const std::string& name) {
    done_++;
    draw(name);
  }
  ~LoadProgress() {
    if (tty_) std::fputs("\r\033[K", stderr);
  }

 private:
  void draw(const std::string& name) {
    if (!tty_ || total_ == 0) return;
    const size_t width = 24, fill = done_ * width / total_;
    std::string bar(fill, '#');
    bar.resize(width, '.');
    std::fprintf(stderr, "\r\033[Kloading %s [%s] %zu/%zu %s", what_.c_str(), bar.c_str(), done_, total_, name.c_str());
    std::fflush(stderr);
  }
  size_t total_, done_ = 0;
  std::string what_;
  bool tty_;
};

}  // namespace segpipe
