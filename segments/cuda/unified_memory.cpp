#include "segments/cuda/unified_memory.h"

#include <cuda_runtime_api.h>
#include <unistd.h>

namespace segpipe::cuda {

namespace {

// An attribute of `device`, 0 where the query fails (the error cleared: the caller decides).
int attribute(cudaDeviceAttr a, int device) {
  int v = 0;
  if (cudaDeviceGetAttribute(&v, a, device) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return v;
}

}  // namespace

bool shares_host_memory(int device) {
  return attribute(cudaDevAttrIntegrated, device) != 0 ||
         attribute(cudaDevAttrPageableMemoryAccessUsesHostPageTables, device) != 0;
}

GpuMemory resolve_gpu_memory(GpuMemory chosen, int device) {
  if (chosen != GpuMemory::automatic) return chosen;
  return shares_host_memory(device) ? GpuMemory::unified : GpuMemory::device;
}

HostAccess host_access(int device) {
  if (attribute(cudaDevAttrPageableMemoryAccessUsesHostPageTables, device)) return HostAccess::page_tables;
  // The checkpoint's mappings are read-only: pinning them needs the read-only flag (a writable pin of
  // a read-only mapping is refused).
  if (attribute(cudaDevAttrHostRegisterSupported, device) && attribute(cudaDevAttrHostRegisterReadOnlySupported, device))
    return HostAccess::registered;
  return HostAccess::copy;
}

const char* to_string(HostAccess a) {
  switch (a) {
    case HostAccess::page_tables: return "page_tables";
    case HostAccess::registered: return "registered";
    case HostAccess::copy: return "copy";
  }
  return "?";
}

HostRange::HostRange(const void* p, size_t n, HostAccess a) {
  if (n == 0 || a == HostAccess::copy) return;
  if (a == HostAccess::page_tables) {
    device_ = p;
    return;
  }
  static const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(p) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + n + page - 1) / page * page;
  void* b = reinterpret_cast<void*>(begin);
  if (cudaHostRegister(b, end - begin, cudaHostRegisterMapped | cudaHostRegisterReadOnly) != cudaSuccess) {
    cudaGetLastError();  // not sticky: the caller copies instead, and later checks must not see it
    return;
  }
  registered_ = b;
  void* d = nullptr;
  if (cudaHostGetDevicePointer(&d, b, 0) != cudaSuccess) {
    cudaGetLastError();
    return;
  }
  device_ = static_cast<const char*>(d) + (reinterpret_cast<uintptr_t>(p) - begin);
}

HostRange::~HostRange() {
  if (registered_) cudaHostUnregister(registered_);
}

}  // namespace segpipe::cuda
