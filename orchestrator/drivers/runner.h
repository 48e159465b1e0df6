// Runs one step (a prefill of T tokens or a decode of one) through every segment of a plan.
// make_inproc_runner calls the segments in this process (the monolithic baseline); the shm runner
// (shm_runner.h) drives one process per segment: both are the one driver (chain_driver.h) over a
// transport (transport.h), and produce the same bits. The GPU runner (cuda_runner.h) has its own loop.
#pragma once
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "orchestrator/planning/run_plan.h"
#include "segments/core/boundary_observer.h"
#include "segments/checkpoint/checkpoint.h"
#include "segments/core/errors.h"
#include "orchestrator/drivers/step_media.h"

namespace segpipe {

struct SegmentReport {
  std::string name;
  std::string kind;
  std::string host;  // runs across hosts: the `hosts` entry whose machine runs it (empty on one host)
  long pid = 0;      // on that machine
  size_t tensors = 0;
  uint64_t weight_bytes = 0;
  uint64_t peak_rss_bytes = 0;
  std::vector<std::string> tensor_names;  // what the segment mapped, as it reports it
  // Selective expert loading (max_resident_experts): counters over the run so far.
  int max_resident_experts = 0;
  uint64_t expert_uses = 0, expert_hits = 0, expert_loads = 0, expert_evictions = 0, expert_bytes_loaded = 0;
  // GPU segments: gpu_memory as resolved for its device ("device" or "unified"; empty on the CPU), and
  // under unified the checkpoint tensors its device read in place (no staging copy).
  std::string gpu_memory;
  uint64_t weights_in_place = 0;
  // Runs across hosts: the process's memory as its own host measured it (a pid and /proc mean nothing
  // on another machine), as orchestrator/reports/memory_report.h's segment_memory_to_json writes it, or
  // {"error": why}. Null where the command's own host runs the segment and measures it itself.
  nlohmann::json measured_memory;
};

// Where the GPU segments of one device keep the state they share (transport: shm), so that a report
// counts each byte once: in device memory (the device arena) or in the shared arena (unified).
struct GpuDeviceState {
  int device = 0;                        // the N of cuda:N
  GpuMemory memory = GpuMemory::device;  // resolved: device or unified
  uint64_t device_arena_bytes = 0;       // device memory for it (activation slots, KV caches, bank exchange); 0 under unified
  // Under unified: the shared arena's bytes that hold it (the device's KV caches, and the bank
  // exchange where it has GPU banks; activations use hidden.a / hidden.b, which every run has).
  uint64_t shared_arena_bytes = 0;
};

class Runner {
 public:
  virtual ~Runner() = default;
  // ids [T] at positions pos0..pos0+T-1. logits receives [T, V] when all_logits, else [V] for the
  // last position. obs (optional) sees every boundary: embeddings, layers.{i}.output,
  // layers.{i}.router_logits, routes, norm, logits (when all_logits).
  virtual void step(const int32_t* ids, int64_t T, int64_t pos0, bool all_logits, BoundaryObserver* obs,
                    std::vector<float>& logits) = 0;
  // step() with a Qwen3-Omni prompt's media (step_media.h): the encoders' rows, 3-D positions, DeepStack
  // features; and the decode steps after it (rope_delta). Runners that do not carry media refuse (exit 2).
  virtual void step_media(const int32_t* /*ids*/, int64_t /*T*/, int64_t /*pos0*/, bool /*all_logits*/,
                          BoundaryObserver* /*obs*/, std::vector<float>& /*logits*/, const StepMedia& /*media*/) {
    throw InputError("audio and image inputs are not supported by this runner yet (the GPU runner); use a CPU "
                     "pipeline with transport: inproc");
  }
  // Runs the plan's encoder of in.encoder on one piece of media into out (out.tokens, levels and width
  // set by the caller: the placeholder count, 1 + DeepStack levels, the thinker's hidden size).
  virtual void encode(const MediaInput& /*in*/, EncodedMedia& /*out*/) {
    throw InputError("audio and image inputs are not supported by this runner yet (the GPU runner); use a CPU "
                     "pipeline with transport: inproc");
  }
  virtual int vocab() const = 0;
  virtual std::vector<SegmentReport> reports() = 0;
  // Per device used by GPU segment processes (empty: none, or a runner without them).
  virtual std::vector<GpuDeviceState> gpu_devices() const { return {}; }
  // Greedy decoding chained where the logits are (the GPU runner: the next token chosen on the device
  // and fed to the next step, no host round trip in between). decode_greedy runs n one-token steps
  // from `token` at position pos0 and returns the n chosen tokens: the same as n step() calls with the
  // host's greedy choice between them, bit for bit. Only where has_greedy_chain() is true.
  virtual bool has_greedy_chain() const { return false; }
  virtual std::vector<int32_t> decode_greedy(int32_t /*token*/, int64_t /*pos0*/, int /*n*/) {
    throw std::logic_error("decode_greedy on a runner without a greedy chain");
  }
  // The one-time work of the first decode_greedy(token, pos0, ...) done now (the GPU: the eager step
  // that sizes the decode buffers, the graph capture), so that a caller can time it apart from the
  // steady rate. It computes what that call's first step computes (the keys and values of `token` at
  // pos0), nothing else. A no-op where there is nothing to prepare.
  virtual void prepare_greedy(int32_t /*token*/, int64_t /*pos0*/) {}
};

std::unique_ptr<Runner> make_inproc_runner(const RunPlan& plan);

}  // namespace segpipe
