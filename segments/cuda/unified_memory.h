// Unified memory (pipeline key `gpu_memory`, segment_types.h): whether a GPU shares the host's memory,
// the resolution of GpuMemory::automatic, and reading host bytes from the GPU in place.
//
// Why it matters: on an integrated GPU (Jetson Orin, Thor) device memory and host memory are the same
// DRAM, so a device copy of something the host already holds (the shared arena's activations and KV
// caches, a staging copy of a checkpoint tensor) holds the same bytes twice. On Grace Hopper the GPU
// walks the host's page tables and reads pageable host memory directly.
#pragma once
#include <cstddef>
#include <cstdint>

#include "segments/core/segment_types.h"

namespace segpipe::cuda {

// True where device `device` (the N of cuda:N) reads host memory without a copy of its own: an
// integrated GPU (cudaDevAttrIntegrated: one DRAM with the CPU), or one that reads pageable host
// memory through the host's page tables (cudaDevAttrPageableMemoryAccessUsesHostPageTables: Grace
// Hopper, ATS). False on a discrete GPU behind PCIe. Never throws (an unknown device: false).
bool shares_host_memory(int device);

// The plan's choice for one device: automatic -> unified where shares_host_memory(device), device
// elsewhere; device and unified as chosen (unified on a discrete GPU is correct, through mapped host
// memory over the bus, and slower: that is how it is tested on an H100).
GpuMemory resolve_gpu_memory(GpuMemory chosen, int device);

// How device `device` reads a range of host memory in place:
//   page_tables: the host pointer itself (the GPU walks the host's page tables);
//   registered:  the range page-locked for the call (cudaHostRegister Mapped | ReadOnly: the
//                checkpoint is mapped read-only) and read through its device pointer;
//   copy:        not at all (no read-only registration on this device): the bytes are copied.
enum class HostAccess { page_tables, registered, copy };
HostAccess host_access(int device);
const char* to_string(HostAccess a);

// One range of host memory readable by the current device for the object's life (RAII): registered
// on construction (HostAccess::registered; pages rounded out to whole pages) and unregistered on
// destruction, so that only one tensor's pages are pinned at a time (pinning a 60 GB checkpoint at
// once would pin 60 GB). device() is null where the range cannot be read in place (HostAccess::copy,
// or the registration was refused, e.g. a file system whose pages cannot be pinned): the caller
// copies instead. The caller synchronizes the work that reads it before destroying the object.
class HostRange {
 public:
  HostRange(const void* p, size_t n, HostAccess a);
  ~HostRange();
  HostRange(const HostRange&) = delete;
  HostRange& operator=(const HostRange&) = delete;
  const void* device() const { return device_; }

 private:
  void* registered_ = nullptr;  // page-aligned start of the registration, if any
  const void* device_ = nullptr;
};

}  // namespace segpipe::cuda
