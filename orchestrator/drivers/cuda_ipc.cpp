#include "orchestrator/drivers/cuda_ipc.h"

#include "segments/core/errors.h"

#ifndef SEGPIPE_HAVE_CUDA

namespace segpipe {

std::unique_ptr<DeviceArena> DeviceArena::create(int device, uint64_t) {
  throw InputError("device cuda:" + std::to_string(device) + " needs the CUDA backend, which this build does not have");
}

GpuMemory resolve_gpu_memory(GpuMemory chosen, int) {
  return chosen == GpuMemory::automatic ? GpuMemory::device : chosen;
}

}  // namespace segpipe

#else

#include <algorithm>

#include "segments/cuda/device.h"
#include "segments/cuda/unified_memory.h"
#include "workers/cuda_ipc_handle.h"

namespace segpipe {

GpuMemory resolve_gpu_memory(GpuMemory chosen, int device) { return cuda::resolve_gpu_memory(chosen, device); }

namespace {

// Makes `device` current and restores the caller's device on exit: the orchestrator may hold arenas
// on several devices, and a process that also runs on a GPU itself (tests) keeps its own current.
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    SEGPIPE_CUDA_CHECK(cudaGetDevice(&prev_));
    SEGPIPE_CUDA_CHECK(cudaSetDevice(device));
  }
  ~DeviceScope() { cudaSetDevice(prev_); }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int prev_ = 0;
};

class CudaDeviceArena : public DeviceArena {
 public:
  CudaDeviceArena(int device, uint64_t bytes) : device_(device), bytes_(bytes) {
    DeviceScope scope(device_);
    cudaError_t e = cudaMalloc(&p_, std::max<uint64_t>(bytes, 256));
    if (e != cudaSuccess) {
      cudaGetLastError();
      throw RuntimeFailure("cannot allocate the " + std::to_string(bytes) + "-byte device arena on cuda:" + std::to_string(device) + " (" +
                           cudaGetErrorString(e) + ")");
    }
    SEGPIPE_CUDA_CHECK(cudaMemset(p_, 0, std::max<uint64_t>(bytes, 256)));
    SEGPIPE_CUDA_CHECK(cudaDeviceSynchronize());
    SEGPIPE_CUDA_CHECK(cudaIpcGetMemHandle(&handle_, p_));
  }
  ~CudaDeviceArena() override {
    // The allocation's own device current; errors ignored in a destructor.
    int prev = 0;
    if (!p_ || cudaGetDevice(&prev) != cudaSuccess) return;
    if (cudaSetDevice(device_) == cudaSuccess) cudaFree(p_);
    cudaSetDevice(prev);
  }
  std::string ipc_handle_hex() const override { return ipc_handle_to_hex(handle_); }
  uint64_t bytes() const override { return bytes_; }
  void read(uint64_t offset, void* dst, size_t n) const override {
    SEGPIPE_ASSERT(offset + n <= bytes_);
    DeviceScope scope(device_);
    SEGPIPE_CUDA_CHECK(cudaMemcpy(dst, static_cast<char*>(p_) + offset, n, cudaMemcpyDeviceToHost));
  }

 private:
  int device_;
  uint64_t bytes_;
  void* p_ = nullptr;
  cudaIpcMemHandle_t handle_{};
};

}  // namespace

std::unique_ptr<DeviceArena> DeviceArena::create(int device, uint64_t bytes) {
  return std::make_unique<CudaDeviceArena>(device, bytes);
}

}  // namespace segpipe

#endif
