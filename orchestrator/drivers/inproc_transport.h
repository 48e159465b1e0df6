// The in-process transport: every segment of the plan in this process (SegmentSet), called in turn. The
// hidden-state ports are one heap buffer that the layers segments compute in place; the ids and the
// logits are the caller's. A segment here is never lost (a failure is thrown as it is: nothing to
// restart), so the driver's restart policy never applies.
#pragma once
#include <memory>
#include <vector>

#include "orchestrator/drivers/segment_set.h"
#include "orchestrator/drivers/transport.h"

namespace segpipe {

class InprocTransport : public Transport {
 public:
  // Over a loaded SegmentSet (every segment of `plan`); when `calls` is given, every bank request of a
  // step is recorded there (dump, bisect).
  InprocTransport(const RunPlan& plan, const ModelConfig& cfg, SegmentSet& set, std::vector<BankCall>* calls = nullptr);

  const ModelConfig& config() const override { return cfg_; }
  void wait_ready(int) override {}
  void begin_step(const StepInput& in) override;
  void run(const Stage& stage) override;
  std::vector<SegmentReport> reports() override;
  bool carries_media() const override { return true; }
  void encode(int segment, const EncoderIO& io) override;

 private:
  const RunPlan& plan_;
  const ModelConfig& cfg_;
  SegmentSet& set_;
  std::vector<BankCall>* calls_;
  StepInput in_;
  std::vector<float> x_;  // every hidden-state port
};

// The in-process transport with its own segments, loaded from the plan's checkpoint.
std::unique_ptr<Transport> make_inproc_transport(const RunPlan& plan);

}  // namespace segpipe
