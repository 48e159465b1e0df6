// The memory of a shm run, laid out before any worker starts: one shared arena (the status table, the
// ids, the two hidden-state buffers of the ping-pong, the logits and final-norm captures, the expert
// exchange, and per segment its channel, KV caches and capture block), each GPU device's device arena
// where GPU segments meet (gpu_memory: device), and each segment's worker spec pointing into them. What
// a step's port is in this memory (port_block) is decided here too, once, from the plan's chain.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "orchestrator/drivers/chain.h"
#include "orchestrator/drivers/cuda_ipc.h"
#include "segments/kinds/layers.h"
#include "shm/arena.h"
#include "workers/cuda_worker.h"
#include "workers/protocol.h"

namespace segpipe {

// Tokens one step carries; longer prompts are prefilled in chunks of this size (a token's result does
// not depend on the chunking, see linear.h and attention.h).
constexpr int64_t kMaxStepTokens = 512;

// One segment of the run: what its worker is told, and where its activations live.
struct ShmSegment {
  SegmentDesc desc;
  bool local = true;  // runs on this host (a multi-host run lays out only its own host's segments)
  proto::WorkerSpec spec;
  bool gpu = false;
  proto::CudaWorkerSpec gpu_spec;
  bool in_dev = false, out_dev = false;  // its input / output activation lives in the device arena
};

class ShmRunArena {
 public:
  // Lays out and creates the arena (unnamed: no name in /dev/shm can outlive the run) and the device
  // arenas; fills every segment's spec. capture_tokens: tokens of internal boundaries a step can show.
  // host: the RunPlan::hosts index whose segments run here (the others get no state in this arena).
  ShmRunArena(const RunPlan& plan, const ModelConfig& cfg, int64_t capture_tokens, const CudaShmOptions& cuda,
              int host = 0);

  shm::Arena& arena() { return *arena_; }
  proto::SegmentStatus* status() const { return status_; }
  std::vector<ShmSegment>& segments() { return segs_; }
  const std::vector<ShmSegment>& segments() const { return segs_; }
  // The step arguments of a stage: the blocks (or device slots) of its ports; positions left to fill.
  proto::StepArgs step_args(const Stage& stage) const;
  const float* logits() const { return arena_->payload_span<float>(logits_block_).data(); }
  const float* norm() const { return arena_->payload_span<float>(norm_block_).data(); }
  int32_t* ids() const { return arena_->payload_span<int32_t>(ids_block_).data(); }
  // A hidden-state port's current content as floats [T, H] (copied out of a device slot where it lives there).
  const float* read_hidden(const Stage& stage, int64_t T, std::vector<float>& scratch) const;
  // A hidden-state port's block in the shared arena, [kMaxStepTokens, H] floats: where a multi-host run
  // reads a port it sends to another host and writes one it receives (ports that cross hosts are never
  // in a device slot: the producer and the consumer are not on one device).
  float* hidden_port(const Port& port) const;
  proto::CaptureLayout capture_layout(const SegmentDesc& d) const;
  // Multi-host runs: the expert banks of other hosts that a CPU layers segment of this host calls
  // (their channels in this arena are answered by this host's proxy), and the shared bank exchange
  // (x, expert ids, weights, slots of the longest step) where requests and answers meet.
  std::vector<int> banks_served_elsewhere() const;
  ExpertStaging moe_exchange() const;
  // A prompt's media (plans with an encoder): the step's blocks, for the transport to fill, and an
  // encoder segment's input, grids and output blocks.
  struct StepMediaBlocks {
    std::span<int32_t> rope, embed_index, ds_index;  // [3, Tmax], [Tmax], [Tmax]
    std::span<float> embed_rows, ds_rows;            // [Tmax, H], [levels, Tmax, H]
  };
  std::optional<StepMediaBlocks> media_blocks() const;
  std::span<float> encoder_in(int segment) const;
  std::span<int32_t> encoder_grids(int segment) const;
  std::span<float> encoder_out(int segment) const;
  // Values per frame of an encoder's input (audio: mel bins; image: a patch's values).
  int64_t encoder_in_width(int segment) const;
  std::vector<GpuDeviceState> gpu_devices() const;
  // Unmaps the shared arena (after the workers are gone; the creator's descriptor goes with it).
  void release() { arena_.reset(); }
  bool released() const { return !arena_; }

 private:
  bool unified(const SegmentDesc& d) const;
  void plan_device_arena(const std::vector<Stage>& chain);
  void place_unified_state();
  uint32_t block_of(const Port& p, bool dev) const;
  const RunPlan& plan_;
  const ModelConfig& cfg_;
  int64_t capture_tokens_;
  struct DevArena {
    std::unique_ptr<DeviceArena> arena;  // outlives the workers (freed after shutdown)
    std::vector<uint64_t> slots;         // the two hidden-state slots
    std::vector<uint64_t> moe;           // the bank exchange: x, ids, weights, slots (empty: no GPU banks)
  };
  std::map<int, DevArena> dev_;       // per device (cuda:N) used by a GPU segment under gpu_memory device
  std::map<int, GpuMemory> memory_;   // per device used by a GPU segment: the plan's gpu_memory, resolved
  std::optional<shm::Arena> arena_;
  proto::SegmentStatus* status_ = nullptr;
  uint32_t status_block_ = 0, ids_block_ = 0, hid_[2] = {0, 0}, logits_block_ = 0, norm_block_ = 0;
  uint32_t moe_[4] = {0, 0, 0, 0};
  uint32_t media_[5] = {0, 0, 0, 0, 0};
  std::map<int, int64_t> in_width_;  // encoder segment -> values per frame of its input  // rope, embed index / rows, DeepStack index / rows (0: no media)
  std::vector<std::pair<Boundary, uint32_t>> hidden_;  // hidden-state port -> hidden.a / hidden.b
  std::vector<ShmSegment> segs_;
};

}  // namespace segpipe
