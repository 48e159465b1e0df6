// A worker's spec carries its segment's SegmentParams whole through the JSON of its command line.
#include <gtest/gtest.h>

#include "orchestrator/planning/run_plan.h"
#include "segments/core/errors.h"
#include "workers/protocol.h"

namespace segpipe {
namespace {

proto::WorkerSpec bank_spec() {
  SegmentDesc d{"bank-hi", SegmentKind::experts};
  d.layer_first = 2;
  d.layer_last = 5;
  d.expert_first = 4;
  d.expert_last = 7;
  d.max_resident_experts = 3;
  d.device = Device{Device::Type::cuda, 1};
  d.dtype = ComputeDType::bfloat16;
  proto::WorkerSpec s;
  static_cast<SegmentParams&>(s) = d;  // the plan's params, whole
  s.name = d.name;
  s.threads = 1;
  s.max_seq = 64;
  s.max_tokens = 8;
  return s;
}

TEST(WorkerSpec, ParamsSurviveTheJson) {
  const proto::WorkerSpec s = bank_spec();
  const proto::WorkerSpec r = proto::worker_spec_from_json(proto::to_json(s));
  EXPECT_EQ(r.kind, SegmentKind::experts);
  EXPECT_EQ(r.layer_first, 2);
  EXPECT_EQ(r.layer_last, 5);
  EXPECT_EQ(r.expert_first, 4);
  EXPECT_EQ(r.expert_last, 7);
  EXPECT_EQ(r.max_resident_experts, 3);
  EXPECT_FALSE(r.banks);
  EXPECT_EQ(r.device, (Device{Device::Type::cuda, 1}));
  EXPECT_EQ(r.dtype, ComputeDType::bfloat16);
}

TEST(WorkerSpec, WithoutDeviceAndDtypeRunsOnTheCpuInFloat32) {
  nlohmann::json j = proto::to_json(bank_spec());
  j.erase("device");
  j.erase("dtype");
  const proto::WorkerSpec r = proto::worker_spec_from_json(j);
  EXPECT_EQ(r.device, Device{});
  EXPECT_EQ(r.dtype, ComputeDType::float32);
}

TEST(WorkerSpec, AnUnknownDeviceIsRefused) {
  nlohmann::json j = proto::to_json(bank_spec());
  j["device"] = "tpu:0";
  EXPECT_THROW(proto::worker_spec_from_json(j), InputError);
}

}  // namespace
}  // namespace segpipe
