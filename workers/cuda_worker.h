// A segment process on a GPU (`segpipe __worker SPEC_JSON GPU_JSON`): the GPU counterpart of the CPU
// worker in worker_main.cpp, speaking the same protocol over the same channel, heartbeat and status
// table. Its segment is a segments/cuda kind, made by the segment factory (segments/cuda/cuda_makers.h);
// activations stay in device memory.
//
// Where state lives (a restarted worker continues exactly):
//   - the orchestrator allocates one device arena per run (cudaMalloc) and hands every GPU worker its
//     CUDA IPC handle (cudaIpcGetMemHandle); workers map it with cudaIpcOpenMemHandle. It holds the
//     activation slots between two GPU segments and the KV caches of every GPU layers segment, so they
//     outlive any worker;
//   - where a GPU segment meets a CPU segment (or the orchestrator: token ids, logits, captures),
//     the tensor stays in the shared-memory arena, which each GPU worker registers for the GPU
//     (cudaHostRegister ... Mapped; device pointer from cudaHostGetDevicePointer): the GPU reads and
//     writes it in place;
//   - expert banks on a GPU are processes too (kind experts, on the device of the layers segment
//     they serve): the device arena of that device holds one bank exchange (the layer's normalized
//     states in the compute dtype [T, H], expert ids [T, k], weights [T, k], float32 slots [T*k, H],
//     sized for the longest step), shared by the layers segments of the device, which run one at a
//     time. The layers worker copies its request there, synchronizes, rings every bank holding the
//     layer, waits for all, copies the slots back and combines them itself (workers/cuda_remote_banks.h);
//   - with GPU segments on several devices there is one device arena per device; where consecutive
//     GPU segments are on different devices, the activation goes through the shared arena, as at a
//     CPU/GPU boundary;
//   - under gpu_memory: unified (resolved per device by the orchestrator: an integrated GPU, or one
//     that reads host memory through the host's page tables) a device has no device arena and no IPC
//     handle: its activations between GPU segments go through the shared arena's hidden.a / hidden.b,
//     and the KV caches of its layers segments and its bank exchange are blocks of the shared arena,
//     which every GPU worker already maps for the GPU. The worker resolves both kinds the same way: a
//     base (the mapped device arena, or the shared arena's device pointer) plus the offsets below;
//   - a worker holds only its weights (re-made on restart) and scratch; a layers worker reads its
//     input slot and writes its output slot (never the same), and a step writes KV rows only at its
//     own positions, so repeating an interrupted step gives the uninterrupted bits.
// Ordering: a worker answers a step only after its stream has finished (cudaStreamSynchronize), so
// the channel's doorbell that hands the next segment its request also orders the device memory.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <type_traits>
#include <vector>

#include "workers/protocol.h"

namespace segpipe::proto {

// A StepArgs block index with this bit set names slot (index & ~kDeviceSlot) of the device arena.
inline constexpr uint32_t kDeviceSlot = 0x80000000u;

struct CudaWorkerSpec {
  Device device{Device::Type::cuda, 0};
  ComputeDType dtype = ComputeDType::float32;
  GpuKernels kernels = GpuKernels::automatic;  // the plan's gpu_kernels
  GpuMemory memory = GpuMemory::device;        // resolved by the orchestrator: device or unified
  bool synthetic = false;          // weights from the synthetic formula (no checkpoint files)
  uint64_t seed = 0;
  bool graphs = true;              // layers: replay one-token steps from a CUDA graph
  // The offsets below are in the state arena: the device arena (memory device), or the shared arena
  // from its first byte (memory unified).
  std::string arena_handle;        // hex cudaIpcMemHandle_t of the device arena; empty: none (always under unified)
  uint64_t arena_bytes = 0;        // the state arena's size
  std::vector<uint64_t> slots;     // byte offsets of the activation slots (device arena only)
  int64_t kv_offset = -1;          // layers: byte offset of its KV caches
  // layers with banks, experts: byte offsets of the bank exchange's x, expert ids, weights and
  // slots (empty: none)
  std::vector<uint64_t> moe;
  uint32_t spin_count = 0;         // channel spins before sleeping (0: the channel's default)
};

// kExperts to a GPU bank: ExpertArgs and whether the layer takes the grouped (prefill) path, which
// needs the expert ids on the host (the bank reads them back from the exchange itself).
struct CudaExpertArgs {
  int32_t layer;
  int32_t k;
  int64_t T;
  int32_t grouped;
  int32_t reserved;
};
static_assert(std::is_trivially_copyable_v<CudaExpertArgs>);

nlohmann::json to_json(const CudaWorkerSpec& s);
CudaWorkerSpec cuda_worker_spec_from_json(const nlohmann::json& j);

}  // namespace segpipe::proto

namespace segpipe {

// Serves a GPU segment until told to stop or the orchestrator dies; returns the exit code. Throws
// InputError in a build without the CUDA backend.
int cuda_worker_main(const proto::WorkerSpec& spec, const proto::CudaWorkerSpec& gpu);

}  // namespace segpipe
