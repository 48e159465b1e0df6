// GPU segment processes under transport: shm, before anything starts: the plan checks that need no
// weights (devices that exist, a bank on the device and in the dtype of the layers it serves), and the
// private MPS server through which several GPU processes share one device (cuda_mps.h says why).
#pragma once
#include <optional>
#include <string>

#include "orchestrator/drivers/cuda_mps.h"
#include "orchestrator/planning/run_plan.h"

namespace segpipe {

// Throws InputError naming the segment: a GPU segment in a build without CUDA or on a device that does
// not exist, a bank on another device or in another dtype than a layers segment it serves, a CPU
// segment in a run whose weights are synthetic (made by GPU workers only).
void check_gpu_segments(const RunPlan& plan, bool synthetic);

// The private MPS server of a run whose GPU segment processes share a device, in three steps around the
// arena's creation (a context made before the MPS environment is set stays outside MPS, and so would the
// device arena the workers map).
class GpuSharingSetup {
 public:
  // Before this run's first CUDA call: starts the server where two or more GPU segments exist.
  GpuSharingSetup(const RunPlan& plan, std::optional<GpuSharing> sharing);
  // Before the device arenas are made: this process has no context outside MPS already.
  void check();
  // Before any worker starts (they inherit the MPS environment): this process's context joined it.
  void confirm();

 private:
  GpuSharing mode() const;
  void failed(const std::string& why);
  const RunPlan& plan_;
  std::optional<GpuSharing> sharing_;
  int device_ = -1;  // MPS asked for, to be confirmed on this device (cuda:N); -1: none
};

}  // namespace segpipe
