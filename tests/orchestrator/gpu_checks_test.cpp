// The GPU tests' verdicts (tests/cuda/gpu_checks.h), held here where no GPU is needed: a CUDA
// start-up error on a machine with an NVIDIA device or driver fails rather than skips, a run with no
// check fails, and a case that never ran is a skip, not a pass.
#include "../cuda/gpu_checks.h"

#include <gtest/gtest.h>

namespace segpipe::gputest {
namespace {

TEST(GpuVerdict, NoNvidiaDeviceAndNoDriverSkips) {
  GpuProbe p;
  p.error = "cudaErrorNoDevice: no CUDA-capable device is detected";
  EXPECT_EQ(gpu_verdict(p, "t"), kSkip);
}

TEST(GpuVerdict, StartUpErrorWithADeviceNodeFails) {
  GpuProbe p;
  p.device_node = true;
  p.error = "cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime version";
  EXPECT_EQ(gpu_verdict(p, "t"), 1);
}

TEST(GpuVerdict, ZeroVisibleDevicesWithADriverFails) {
  GpuProbe p;
  p.driver = true;
  p.runtime_ok = true;  // e.g. CUDA_VISIBLE_DEVICES hides every card
  EXPECT_EQ(gpu_verdict(p, "t"), 1);
}

TEST(GpuVerdict, AWorkingDeviceRuns) {
  GpuProbe p;
  p.device_node = p.driver = p.runtime_ok = true;
  p.devices = 1;
  EXPECT_EQ(gpu_verdict(p, "t"), -1);
}

TEST(GpuChecks, NoCheckAtAllFails) { EXPECT_EQ(Checks{}.finish("t"), 1); }

TEST(GpuChecks, OnlySkippedCasesAreASkip) {
  Checks c;
  c.skip("two devices: 1 visible");
  EXPECT_EQ(c.passed, 0);
  EXPECT_EQ(c.finish("t"), kSkip);
}

TEST(GpuChecks, ASkippedCaseIsNotCountedAsPassed) {
  Checks c;
  c.expect(true, "ran");
  c.skip("does not fit");
  EXPECT_EQ(c.passed, 1);
  EXPECT_EQ(c.skipped, 1);
  EXPECT_EQ(c.finish("t"), 0);
}

TEST(GpuChecks, AnyFailureFails) {
  Checks c;
  c.expect(true, "ran");
  c.skip("not run");
  c.expect(false, "broke");
  EXPECT_EQ(c.finish("t"), 1);
}

}  // namespace
}  // namespace segpipe::gputest
