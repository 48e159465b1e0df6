// GPU segments under transport: shm, the checks that need no GPU: a bank on another device (or in
// another dtype) than the layers segment it serves, a device that does not exist, and verify
// without a golden on a plan no single in-process runner computes. Each must be an InputError
// (exit 2) naming what is wrong, raised before any process starts or any weight is read.
#include <gtest/gtest.h>

#include <string>

#include "orchestrator/drivers/cuda_runner.h"
#include "orchestrator/debugging/segment_compare.h"
#include "orchestrator/drivers/shm_runner.h"
#include "segments/core/errors.h"

namespace segpipe {
namespace {

Device dev(const std::string& s) {
  auto d = parse_device(s);
  EXPECT_TRUE(d.has_value()) << s;
  return d.value_or(Device{});
}

SegmentDesc seg(const std::string& name, SegmentKind kind, const std::string& device, int l0 = -1, int l1 = -1) {
  SegmentDesc d{name, kind};
  d.layer_first = l0;
  d.layer_last = l1;
  d.device = dev(device);
  return d;
}

// tiny-qwen3-moe: 5 layers, 8 experts. Layers on `layers_dev`, banks on bank_lo_dev / bank_hi_dev.
RunPlan bank_plan(const std::string& layers_dev, const std::string& bank_lo_dev, const std::string& bank_hi_dev) {
  RunPlan p;
  p.model_dir = std::string(SEGPIPE_SOURCE_DIR) + "/models/tiny-qwen3-moe";
  p.source = "test.yaml";
  p.inproc = false;
  p.segments.push_back(seg("embed", SegmentKind::embeddings, layers_dev));
  SegmentDesc l = seg("layers", SegmentKind::layers, layers_dev, 0, 4);
  l.banks = true;
  p.segments.push_back(l);
  SegmentDesc lo = seg("bank-lo", SegmentKind::experts, bank_lo_dev, 0, 4);
  lo.expert_first = 0;
  lo.expert_last = 3;
  SegmentDesc hi = seg("bank-hi", SegmentKind::experts, bank_hi_dev, 0, 4);
  hi.expert_first = 4;
  hi.expert_last = 7;
  p.segments.push_back(lo);
  p.segments.push_back(hi);
  p.segments.push_back(seg("head", SegmentKind::lm_head, layers_dev));
  return p;
}

std::string input_error(const RunPlan& p) {
  try {
    make_shm_runner(p);
  } catch (const InputError& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("(not an InputError) ") + e.what();
  }
  return "(no error)";
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

TEST(ShmGpuPlan, BankOnAnotherDeviceThanItsLayersIsRefused) {
  std::string m = input_error(bank_plan("cuda:0", "cuda:0", "cuda:1"));
  EXPECT_TRUE(has(m, "bank-hi") && has(m, "cuda:1") && has(m, "cuda:0") && has(m, "'layers'")) << m;
  EXPECT_FALSE(has(m, "not an InputError")) << m;
}

TEST(ShmGpuPlan, CpuBankServingGpuLayersIsRefused) {
  std::string m = input_error(bank_plan("cuda:0", "cpu", "cuda:0"));
  EXPECT_TRUE(has(m, "bank-lo") && has(m, "runs on cpu") && has(m, "cuda:0")) << m;
  m = input_error(bank_plan("cpu", "cpu", "cuda:0"));  // and a GPU bank serving CPU layers
  EXPECT_TRUE(has(m, "bank-hi") && has(m, "runs on cuda:0") && has(m, "on cpu")) << m;
}

TEST(ShmGpuPlan, BankInAnotherDtypeIsRefused) {
  RunPlan p = bank_plan("cuda:0", "cuda:0", "cuda:0");
  p.segments[3].dtype = ComputeDType::bfloat16;
  std::string m = input_error(p);
  EXPECT_TRUE(has(m, "bank-hi") && has(m, "bfloat16") && has(m, "float32")) << m;
}

TEST(ShmGpuPlan, MissingDeviceIsRefusedNamingTheSegment) {
  RunPlan p = bank_plan("cpu", "cpu", "cpu");
  p.segments[4].device = dev("cuda:7");  // head
  std::string m = input_error(p);
  // Without the CUDA backend the line says so; with it, that cuda:7 does not exist (fewer than 8 GPUs).
  EXPECT_TRUE(has(m, "'head'") && has(m, "cuda:7") &&
              (cuda_backend_built() ? has(m, "does not exist") : has(m, "CUDA backend")))
      << m;
  EXPECT_FALSE(has(m, "not an InputError")) << m;
}

// A device is typed from the YAML to the worker; its text is read in one place, at the edge.
TEST(ShmGpuPlan, DeviceTextIsParsedOnceAtTheEdge) {
  for (const char* bad : {"cuda:x", "cuda", "cuda:", "cuda:01", "cuda:1024", "gpu:0", "CPU", "cuda:-1", ""})
    EXPECT_FALSE(parse_device(bad).has_value()) << bad;
  EXPECT_EQ(parse_device("cpu"), Device{});
  EXPECT_EQ(parse_device("cuda:0"), (Device{Device::Type::cuda, 0}));
  EXPECT_EQ(parse_device("cuda:12"), (Device{Device::Type::cuda, 12}));
  for (const Device d : {Device{}, Device{Device::Type::cuda, 3}}) EXPECT_EQ(parse_device(to_string(d)), d);
}

TEST(ShmGpuPlan, VerifyWithoutGoldenNeedsOneBackend) {
  EXPECT_EQ(inproc_baseline_problem(bank_plan("cpu", "cpu", "cpu")), "");
  EXPECT_EQ(inproc_baseline_problem(bank_plan("cuda:0", "cuda:0", "cuda:0")), "");
  RunPlan mixed = bank_plan("cuda:0", "cuda:0", "cuda:0");
  mixed.segments[4].device = dev("cpu");
  std::string m = inproc_baseline_problem(mixed);
  EXPECT_TRUE(has(m, "--golden") && has(m, "'head'") && has(m, "cpu") && has(m, "cuda:0")) << m;
  EXPECT_FALSE(has(m, "every segment on one device")) << m;  // not the GPU runner's message
  RunPlan two = bank_plan("cuda:0", "cuda:0", "cuda:0");
  two.segments[4].device = dev("cuda:1");
  EXPECT_TRUE(has(inproc_baseline_problem(two), "cuda:1"));
  RunPlan dtypes = bank_plan("cuda:0", "cuda:0", "cuda:0");
  for (auto& s : dtypes.segments) s.dtype = ComputeDType::bfloat16;
  dtypes.segments[0].dtype = ComputeDType::float32;
  EXPECT_TRUE(has(inproc_baseline_problem(dtypes), "bfloat16"));
  // compare_segmented_with_inproc refuses before loading anything (no runner, no GPU needed).
  LoadedPlan lp;
  lp.plan = mixed;
  nlohmann::json report;
  EXPECT_THROW(compare_segmented_with_inproc(lp, {1, 2, 3}, 2, report), InputError);
}

}  // namespace
}  // namespace segpipe

namespace segpipe {
namespace {

// SEGPIPE_GPU_SHARING is read only for runs with several GPU processes: a CPU run ignores even a
// value that is not one of auto|mps|off; a GPU run names the variable (exit 2) before anything starts.
TEST(ShmGpuPlan, GpuSharingVariableIsCheckedWhereItApplies) {
  setenv("SEGPIPE_GPU_SHARING", "always", 1);
  // A CPU plan whose checkpoint is missing (so that no worker process starts): the error is the
  // checkpoint's, the variable is not read.
  RunPlan cpu = bank_plan("cpu", "cpu", "cpu");
  cpu.model_dir = "/nonexistent-segpipe-model";
  const std::string c = input_error(cpu);
  RunPlan gpu = bank_plan("cuda:0", "cuda:0", "cuda:0");
  const std::string e = input_error(gpu);
  unsetenv("SEGPIPE_GPU_SHARING");
  EXPECT_FALSE(has(c, "SEGPIPE_GPU_SHARING")) << c;
  EXPECT_TRUE(has(c, "nonexistent-segpipe-model")) << c;
  EXPECT_TRUE(has(e, "SEGPIPE_GPU_SHARING='always'")) << e;
}

}  // namespace
}  // namespace segpipe
