// How a step's values cross between the segments of a chain, how a segment is woken and waited for,
// and how its loss is noticed. The driver (chain_driver.h) runs the same chain over any transport and
// never learns where a segment runs; a transport never decides the order of a step or what a failure
// means for the run (report it or restart and repeat: the driver's policy).
//
// Implementations:
//   InprocTransport (inproc_transport.h): every segment in this process (SegmentSet); ports are heap
//     buffers, "waking" a segment is calling it, a segment is never lost (its failures are thrown).
//   ShmTransport (shm_transport.h): one worker process per segment on this host; ports are blocks of one
//     shared arena (or slots of a device arena between GPU segments of one device), a segment is woken
//     through its channel's doorbell, lost when its process dies or its heartbeat stops, and restartable
//     (its inputs and KV caches live in the arena, so the repeated step reproduces the lost one).
//   A network transport (segments on several hosts) implements the same calls: begin_step sends the ids
//   to the host of the first stage; run() tells the stage's host to step and moves its output port to
//   the host of the next stage (MPI/UCX/NCCL on the data path; a layers segment reaches the banks it
//   serves the same way, which the driver never sees); a captured boundary or the logits come back to
//   this host for the observer and the caller; a lost connection or a peer's death is a SegmentLost
//   whose message names the segment and its host; restart() is where the transport can start a segment
//   again (a launcher on that host) and hand it its state, else can_restart() is false.
#pragma once
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "orchestrator/drivers/chain.h"
#include "orchestrator/drivers/runner.h"
#include "orchestrator/drivers/step_media.h"
#include "segments/model/config.h"

namespace segpipe {

// A segment that stopped being there: its process died, its heartbeat stopped, its host went away.
// Not a failure of its computation (that is RuntimeFailure / InputError, thrown as they are): a lost
// segment can be restarted and the step repeated. The message names the segment and how it was lost.
struct SegmentLost : std::runtime_error {
  int segment;  // index in the plan
  SegmentLost(int segment_, const std::string& what) : std::runtime_error(what), segment(segment_) {}
};

// What every segment of one step is told.
struct StepInput {
  const int32_t* ids = nullptr;   // [T], range-checked by the driver
  int64_t T = 0;
  int64_t pos0 = 0;
  bool all_logits = false;        // the logits of every position (else the last one's)
  BoundaryObserver* observer = nullptr;  // sees every boundary of the step, in the step's order
  std::vector<float>* logits = nullptr;  // receives the output of the stage that writes Port::logits,
                                         // [T, V] or [1, V]
  const StepMedia* media = nullptr;      // a prompt's audio and images (step_media.h); null: text only
};

class Transport {
 public:
  virtual ~Transport() = default;

  // The model both ends agree on (vocabulary, hidden size).
  virtual const ModelConfig& config() const = 0;
  // Tokens one step can carry (a longer prompt is prefilled in chunks by the driver) and tokens the
  // observer can be shown in one step (the capture buffers).
  virtual int64_t max_step_tokens() const { return std::numeric_limits<int64_t>::max(); }
  virtual int64_t capture_tokens() const { return std::numeric_limits<int64_t>::max(); }

  // Start-up: returns once segment `segment` has loaded and can step. Throws SegmentLost.
  virtual void wait_ready(int segment) = 0;

  // A step begins: the token ids go where the first stage reads them.
  virtual void begin_step(const StepInput& in) = 0;
  // Runs one stage of the step begun: wakes its segment on its input port, waits until its output port
  // is written (and, where the stage writes Port::logits, copied into in.logits), and shows the observer
  // the boundaries the segment computed. Throws SegmentLost, or the segment's own error.
  virtual void run(const Stage& stage) = 0;
  // Every stage of the step has been run: where the transport queues work rather than waiting for each
  // stage (a GPU stream captured into a CUDA graph, a pipelined network path), this is where it waits,
  // so that the logits are in in.logits when step() returns. Throws like run().
  virtual void end_step() {}

  // Whether a lost segment can be started again with its state, so that the step can be repeated.
  virtual bool can_restart() const { return false; }
  // Replaces the lost segment and waits until it is ready. Throws SegmentLost where another segment is
  // lost meanwhile (the driver restarts that one in turn).
  virtual void restart(int segment) { throw std::logic_error("restart on a transport that cannot restart"); }
  // Stops every segment and releases what the transport holds; idempotent, never throws. Called before a
  // fatal failure is reported, so that nothing outlives the message.
  virtual void shutdown() noexcept {}

  virtual std::vector<SegmentReport> reports() = 0;
  virtual std::vector<GpuDeviceState> gpu_devices() const { return {}; }

  // Audio and images (Qwen3-Omni): whether begin_step carries StepInput::media to the segments, and
  // encode() runs an encoder segment (`segment`) on one piece of media, io.out sized by the caller.
  // Transports that do not yet carry them refuse a step with media (the driver says so, exit 2).
  virtual bool carries_media() const { return false; }
  virtual void encode(int /*segment*/, const EncoderIO& /*io*/) {
    throw std::logic_error("encode on a transport that does not carry media");
  }
};

}  // namespace segpipe
