// Typed errors that reach the user as one line and a documented exit code (shared/docs/cli.md):
//   InputError   -> exit 2: bad usage or bad input (file, key, tensor named in the message)
//   RuntimeFailure -> exit 3: a segment process died or hung, out of memory, device error
//   CheckFailure -> exit 1: a check ran and failed (mismatch, tolerance exceeded)
//   OutputClosed -> exit 0: the reader of standard output went away (stop quietly)
// Programming errors are not reported through these: they assert (SEGPIPE_ASSERT) with file and line.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace segpipe {

struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct RuntimeFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct CheckFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// Standard output's reader has gone (EPIPE, e.g. `segpipe generate | head -c 20`): not a failure of
// ours. The command stops, unwinding releases its processes and shared memory, and it exits 0.
struct OutputClosed : std::runtime_error {
  OutputClosed() : std::runtime_error("standard output was closed by its reader") {}
};

[[noreturn]] inline void assert_fail(const char* expr, const char* file, int line, const char* msg) {
  std::fprintf(stderr, "segpipe: internal error: %s:%d: assertion `%s` failed%s%s\n", file, line, expr,
               msg ? ": " : "", msg ? msg : "");
  std::abort();
}

}  // namespace segpipe

#define SEGPIPE_ASSERT(cond)                                                    \
  do {                                                                          \
    if (!(cond)) ::segpipe::assert_fail(#cond, __FILE__, __LINE__, nullptr);    \
  } while (0)
#define SEGPIPE_ASSERT_MSG(cond, msg)                                           \
  do {                                                                          \
    if (!(cond)) ::segpipe::assert_fail(#cond, __FILE__, __LINE__, (msg));      \
  } while (0)
