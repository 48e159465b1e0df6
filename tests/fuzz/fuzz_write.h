// Writes a fuzz input to a file of the scratch folder, for the parsers that read files.
#pragma once
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <initializer_list>
#include <string>
#include <vector>

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

// run-segment prints a line per run: standard output is sent to /dev/null once, so the fuzzer's own
// output stays readable.
inline void quiet_stdout() {
  static const bool done = [] {
    const int fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
      std::fflush(stdout);
      ::dup2(fd, 1);
      ::close(fd);
    }
    return true;
  }();
  (void)done;
}

// A dump file `in` run through each named segment of `pipeline` by run-segment: only its documented
// failures may come out, InputError (exit 2: a field that does not fit) and RuntimeFailure (exit 3: a
// non-finite value the input carried, stopped by the segment's check).
template <class RunSegment>
void run_segments(RunSegment&& run_segment, const std::string& pipeline, std::initializer_list<const char*> segments,
                  const std::string& in, const std::string& out) {
  for (const char* seg : segments) {
    try {
      run_segment(std::vector<std::string>{"--pipeline", pipeline, "--segment", seg, "--input", in, "--output", out});
    } catch (const InputError&) {
    } catch (const RuntimeFailure&) {
    } catch (const std::exception& e) {
      std::fprintf(stderr, "fuzz run-segment %s: exception other than InputError/RuntimeFailure: %s\n", seg, e.what());
      std::abort();
    }
  }
  ::unlink(out.c_str());
}

}  // namespace segpipe::fuzz
