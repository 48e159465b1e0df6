// The GPU worker's spec (workers/cuda_worker.h), the JSON a GPU segment process gets on its command
// line: what the orchestrator writes reads back unchanged, gpu_memory included, and a spec whose
// memory is not a resolved choice, or that names a device arena under unified, is an InputError.
#include <gtest/gtest.h>

#include <string>

#include "segments/core/errors.h"
#include "workers/cuda_worker.h"

namespace segpipe {
namespace {

proto::CudaWorkerSpec sample(GpuMemory m) {
  proto::CudaWorkerSpec s;
  s.device = Device{Device::Type::cuda, 3};
  s.dtype = ComputeDType::bfloat16;
  s.kernels = GpuKernels::portable;
  s.memory = m;
  s.seed = 42;
  s.graphs = false;
  s.arena_bytes = 1 << 20;
  s.kv_offset = 8192;
  s.moe = {0, 4096, 8192, 12288};
  s.spin_count = 7;
  if (m == GpuMemory::device) {
    s.arena_handle = std::string(128, 'a');
    s.slots = {0, 4096};
  }
  return s;
}

std::string input_error(const nlohmann::json& j) {
  try {
    proto::cuda_worker_spec_from_json(j);
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(CudaWorkerSpec, RoundTripsBothMemoryModes) {
  for (GpuMemory m : {GpuMemory::device, GpuMemory::unified}) {
    const proto::CudaWorkerSpec s = sample(m);
    const proto::CudaWorkerSpec r = proto::cuda_worker_spec_from_json(proto::to_json(s));
    EXPECT_EQ(r.device, s.device);
    EXPECT_EQ(r.dtype, s.dtype);
    EXPECT_EQ(r.kernels, s.kernels);
    EXPECT_EQ(r.memory, m);
    EXPECT_EQ(r.seed, s.seed);
    EXPECT_EQ(r.graphs, s.graphs);
    EXPECT_EQ(r.arena_handle, s.arena_handle);
    EXPECT_EQ(r.arena_bytes, s.arena_bytes);
    EXPECT_EQ(r.slots, s.slots);
    EXPECT_EQ(r.kv_offset, s.kv_offset);
    EXPECT_EQ(r.moe, s.moe);
    EXPECT_EQ(r.spin_count, s.spin_count);
    EXPECT_EQ(proto::to_json(r), proto::to_json(s));
  }
}

TEST(CudaWorkerSpec, MemoryMustBeResolvedAndUnifiedHasNoDeviceArena) {
  nlohmann::json j = proto::to_json(sample(GpuMemory::unified));
  for (const char* bad : {"auto", "shared", ""}) {
    j["memory"] = bad;
    const std::string m = input_error(j);
    EXPECT_NE(m.find("memory '" + std::string(bad) + "'"), std::string::npos) << m;
    EXPECT_NE(m.find("expected device or unified"), std::string::npos) << m;
  }
  j = proto::to_json(sample(GpuMemory::unified));
  j["arena_handle"] = std::string(128, 'a');
  EXPECT_NE(input_error(j).find("memory 'unified' with a device arena"), std::string::npos) << input_error(j);
  j = proto::to_json(sample(GpuMemory::unified));
  j["slots"] = {0, 4096};
  EXPECT_NE(input_error(j).find("memory 'unified' with a device arena"), std::string::npos) << input_error(j);
}

}  // namespace
}  // namespace segpipe
