// The GPU tests' verdicts, free of CUDA so that a CPU unit test (tests/orchestrator/gpu_checks_test)
// holds them to their rules on machines without a GPU:
//   - skip (exit 77, ctest's SKIP_RETURN_CODE) only where the machine has no NVIDIA GPU at all: no
//     device node and no driver. Where either exists CUDA is expected to work, and a start-up error
//     (driver/runtime mismatch, no visible device, a busy or lost card) fails the test instead of
//     hiding it as a skip;
//   - a run in which no check ran fails: a test that checked nothing proved nothing;
//   - a case that could not run (a shape a kernel does not fit, a second device that is not there) is
//     counted as skipped, never as passed; a run whose every case was skipped exits 77.
#pragma once
#include <cstdarg>
#include <cstdio>
#include <string>

namespace segpipe::gputest {

constexpr int kSkip = 77;

// What the machine shows of an NVIDIA GPU, and what the CUDA runtime said.
struct GpuProbe {
  bool device_node = false;   // /dev/nvidia0 exists
  bool driver = false;        // /proc/driver/nvidia/version exists (the kernel module is loaded)
  bool runtime_ok = false;    // cudaGetDeviceCount succeeded
  int devices = 0;            // what it counted
  std::string error;          // its error string where it failed
};

// -1: go on and test; kSkip: no GPU on this machine; 1: CUDA should work here and does not.
// Prints one line saying which and why.
inline int gpu_verdict(const GpuProbe& p, const char* test) {
  if (p.runtime_ok && p.devices > 0) return -1;
  if (!p.device_node && !p.driver) {
    std::printf("SKIPPED: %s: this machine has no NVIDIA GPU (no /dev/nvidia0, no driver loaded)%s%s\n", test,
                p.error.empty() ? "" : "; CUDA says: ", p.error.c_str());
    return kSkip;
  }
  std::printf("FAIL: %s: the machine has an NVIDIA %s but CUDA does not start: %s\n", test,
              p.device_node ? "device node" : "driver",
              p.runtime_ok ? "no CUDA device is visible to this process" : p.error.c_str());
  return 1;
}

struct Checks {
  int failed = 0, passed = 0, skipped = 0;
  __attribute__((format(printf, 3, 4))) void expect(bool ok, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    std::printf("  %s ", ok ? "ok  " : "FAIL");
    std::vprintf(fmt, ap);
    std::printf("\n");
    va_end(ap);
    (ok ? passed : failed)++;
  }
  // A case that did not run, and why: neither a pass nor a failure.
  __attribute__((format(printf, 2, 3))) void skip(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    std::printf("  SKIP ");
    std::vprintf(fmt, ap);
    std::printf("\n");
    va_end(ap);
    skipped++;
  }
  // The exit code: 1 on any failure or when nothing ran at all, 77 when every case was skipped.
  int finish(const char* test) const {
    std::printf("%s: %d passed, %d failed, %d skipped\n", test, passed, failed, skipped);
    if (failed) return 1;
    if (passed == 0 && skipped > 0) return kSkip;
    if (passed == 0) {
      std::printf("%s: FAIL: no check ran\n", test);
      return 1;
    }
    return 0;
  }
};

}  // namespace segpipe::gputest
