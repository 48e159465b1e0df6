// The one driver: runs a step through a plan's chain (embeddings -> layers ... -> lm_head) over any
// Transport, and decides what a lost segment means for the run: reported (exit 3, naming the segment)
// or, with restart on, the segment restarted and the interrupted step repeated. Expert banks are not
// its business: the layers segments that they serve reach them through the transport.
#pragma once
#include <memory>

#include "orchestrator/drivers/runner.h"
#include "orchestrator/drivers/transport.h"

namespace segpipe {

class ChainDriver {
 public:
  // Restart attempts per step (and per segment at start-up, and per restart) before the run fails.
  static constexpr int kMaxRestarts = 3;

  ChainDriver(const RunPlan& plan, Transport& transport);

  // Waits for every segment to be ready (restarting lost ones when the plan allows it).
  void start();
  // Runner::step's contract (runner.h).
  void step(const int32_t* ids, int64_t T, int64_t pos0, bool all_logits, BoundaryObserver* obs,
            std::vector<float>& logits, const StepMedia* media = nullptr);
  // Runner::encode's contract: the plan's encoder of in.encoder on one piece of media.
  void encode(const MediaInput& in, EncodedMedia& out);

 private:
  void step_once(const StepInput& in);
  void restart_chain(const SegmentLost& first);
  [[noreturn]] void fail(const SegmentLost& f, const std::string& when);
  const RunPlan& plan_;
  Transport& t_;
  std::vector<Stage> chain_;
};

// A Runner made of a transport and the driver over it: make_inproc_runner, make_shm_runner.
std::unique_ptr<Runner> make_chain_runner(const RunPlan& plan, std::unique_ptr<Transport> transport);

}  // namespace segpipe
