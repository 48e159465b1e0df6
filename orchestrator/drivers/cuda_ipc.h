// The orchestrator's side of GPU segments under transport: shm (workers/cuda_worker.h says where
// state lives): one device arena per device a run uses, allocated here and shared with the GPU workers through a
// CUDA IPC handle, so that activations between GPU segments and the KV caches of GPU layers
// segments stay in device memory and outlive any worker. Under gpu_memory: unified a device has no
// device arena: that state lives in the shared arena. In a build without the CUDA backend
// DeviceArena::create throws InputError.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "orchestrator/drivers/cuda_mps.h"
#include "orchestrator/drivers/runner.h"
#include "orchestrator/drivers/shm_runner.h"

namespace segpipe {

class DeviceArena {
 public:
  // bytes of zeroed device memory on device `device` (the N of cuda:N).
  static std::unique_ptr<DeviceArena> create(int device, uint64_t bytes);
  virtual ~DeviceArena() = default;
  virtual std::string ipc_handle_hex() const = 0;
  virtual uint64_t bytes() const = 0;
  // Copies [offset, offset + n) to host memory (captures of device-resident boundaries).
  virtual void read(uint64_t offset, void* dst, size_t n) const = 0;
};

// The plan's gpu_memory for device cuda:N: automatic resolved (unified where the GPU shares the host's
// memory, segments/cuda/unified_memory.h), device / unified as chosen. Without the CUDA backend
// automatic is device (no GPU segment runs there).
GpuMemory resolve_gpu_memory(GpuMemory chosen, int device);

// Options of the GPU workers of a shm run.
struct CudaShmOptions {
  bool synthetic = false;  // weights from the synthetic formula in each GPU worker (model_dir: config.json only)
  uint64_t seed = 0;
  bool graphs = true;      // GPU layers workers replay one-token steps from a CUDA graph
  // Pause-instruction spins before a GPU worker or the orchestrator waiting on a GPU worker's channel
  // sleeps in the kernel (about 10 ms at the default): a process woken from a futex costs tens to
  // hundreds of microseconds per hop on virtual machines, several hops a token. A layers worker of a
  // pipeline waits most of a decode step for its turn (3-4 ms of the thinker's 4.5 ms on an H200), so
  // the spin must outlast a step: 4-layer-group pipeline through MPS 0.908 / 0.914 of the in-process
  // rate at 100000 spins (2.5 ms), 0.944 at 400000, 0.941 at 2000000 (one H200, one call). The cost
  // is a busy core per waiting GPU process while tokens flow. 0: the CPU default.
  uint32_t spin_count = 400000;
  // Several GPU processes on one device: through a private MPS server (cuda_mps.h). Unset: the
  // SEGPIPE_GPU_SHARING environment variable (default auto).
  std::optional<GpuSharing> sharing;
};

// The shm runner (shm_runner.h) with these options for its GPU workers.
std::unique_ptr<Runner> make_shm_runner_cuda(const RunPlan& plan, const ShmOptions& opt, const CudaShmOptions& cuda);

}  // namespace segpipe
