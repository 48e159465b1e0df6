#include "orchestrator/drivers/shm_gpu_setup.h"

#include <spdlog/spdlog.h>

#include "orchestrator/drivers/cuda_runner.h"
#include "segments/core/errors.h"

namespace segpipe {

// GPU segments (workers/cuda_worker.h): embeddings, layers, expert banks and lm_head, on any devices that
// exist; a bank on the device, and in the dtype, of every layers segment it serves (requests and slots
// stay in that device's arena). Checked before anything is read or started.
void check_gpu_segments(const RunPlan& plan, bool synthetic) {
  bool any_gpu = false;
  for (const SegmentDesc& d : plan.segments) {
    if (!d.device.is_cuda()) {
      if (synthetic)
        throw InputError(plan.source + ": segment '" + d.name + "' runs on the CPU, which cannot make synthetic weights");
      continue;
    }
    any_gpu = true;
  }
  for (const SegmentDesc& b : plan.segments)
    for (const SegmentDesc& l : plan.segments) {
      if (!b.serves(l)) continue;
      if (b.device != l.device)
        throw InputError(plan.source + ": expert bank '" + b.name + "' runs on " + to_string(b.device) +
                         " but serves layers segment '" + l.name + "' on " + to_string(l.device) +
                         ": under transport: shm a bank must be on the device of the layers "
                         "segment it serves");
      if (b.device.is_cuda() && b.dtype != l.dtype)
        throw InputError(plan.source + ": expert bank '" + b.name + "' computes in " + to_string(b.dtype) +
                         " but serves layers segment '" + l.name + "' in " + to_string(l.dtype) +
                         ": a GPU bank computes in the dtype of the layers segment it serves");
    }
  if (!any_gpu) return;
  const int n = cuda_backend_built() ? cuda_visible_devices() : 0;
  for (const SegmentDesc& d : plan.segments) {
    if (!d.device.is_cuda()) continue;
    if (!cuda_backend_built())
      throw InputError(plan.source + ": segment '" + d.name + "' runs on " + to_string(d.device) + ", which needs the CUDA "
                       "backend (this build does not have it; configure with -DSEGPIPE_CUDA=ON)");
    if (d.device.index >= n)
      throw InputError(plan.source + ": segment '" + d.name + "' runs on " + to_string(d.device) + ", which does not exist: " +
                       (n == 0 ? std::string("no CUDA device is visible")
                               : std::to_string(n) + " CUDA device" + (n == 1 ? " is" : "s are") + " visible (cuda:0" +
                                     (n == 1 ? "" : "..cuda:" + std::to_string(n - 1)) + ")"));
  }
}

GpuSharingSetup::GpuSharingSetup(const RunPlan& plan, std::optional<GpuSharing> sharing)
    : plan_(plan), sharing_(sharing) {
  size_t gpu = 0;
  for (const SegmentDesc& d : plan_.segments)
    if (d.device.is_cuda()) {
      gpu++;
      if (device_ < 0) device_ = d.device.index;
    }
  if (gpu < 2 || mode() == GpuSharing::Off) {  // the variable is read only where it applies
    device_ = -1;
    return;
  }
  if (private_mps_running()) return;
  std::string why = start_private_mps();
  if (!why.empty()) failed(why);
}

GpuSharing GpuSharingSetup::mode() const { return sharing_ ? *sharing_ : gpu_sharing_from_env(); }

void GpuSharingSetup::check() {
  if (device_ < 0 || !cuda_context_active(device_) || cuda_mps_enabled(device_)) return;
  stop_private_mps();
  failed("this process already uses cuda:" + std::to_string(device_) + " outside MPS");
}

void GpuSharingSetup::confirm() {
  if (device_ < 0 || cuda_mps_enabled(device_)) return;
  stop_private_mps();
  failed("this process's context on cuda:" + std::to_string(device_) + " did not join the MPS server");
}

void GpuSharingSetup::failed(const std::string& why) {
  const GpuSharing m = mode();
  device_ = -1;
  if (m == GpuSharing::Mps)
    throw InputError("SEGPIPE_GPU_SHARING=mps: cannot run the GPU segments of " + plan_.source +
                     " under a private MPS server: " + why);
  spdlog::warn("GPU segment processes share the device without MPS ({})", why);
}

}  // namespace segpipe
