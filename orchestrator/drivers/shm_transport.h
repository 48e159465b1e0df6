// The shared-memory transport: one worker process per segment on this host (shm_workers.h), the ports
// of a step in one shared arena or, between GPU segments of one device, in that device's arena
// (shm_run_arena.h). A stage is run by a kStep request on its worker's channel (the doorbell wakes it);
// the boundaries inside a segment reach the observer through its capture blocks; a lost worker is
// restarted with its state, which lives in the arenas.
#pragma once
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "orchestrator/drivers/cuda_ipc.h"
#include "orchestrator/drivers/shm_gpu_setup.h"
#include "orchestrator/drivers/shm_run_arena.h"
#include "orchestrator/drivers/shm_workers.h"
#include "orchestrator/drivers/transport.h"

namespace segpipe {

class ShmTransport : public Transport {
 public:
  // Checks the plan and the checkpoint, lays out the arenas and starts every worker (the driver's
  // start() waits for them). Throws InputError for a plan or checkpoint that cannot run.
  ShmTransport(const RunPlan& plan, const ShmOptions& opt, const CudaShmOptions& cuda = {});
  ~ShmTransport() override { shutdown(); }

  const ModelConfig& config() const override { return cfg_; }
  int64_t max_step_tokens() const override { return kMaxStepTokens; }
  int64_t capture_tokens() const override { return opt_.capture_tokens; }
  void wait_ready(int segment) override { workers_->wait_ready(segment); }
  void begin_step(const StepInput& in) override;
  void run(const Stage& stage) override;
  bool can_restart() const override { return true; }
  void restart(int segment) override { workers_->restart(segment); }
  void shutdown() noexcept override;
  std::vector<SegmentReport> reports() override;
  std::vector<GpuDeviceState> gpu_devices() const override { return arena_->gpu_devices(); }
  // Audio and images: where the plan has an encoder and its token chain runs on the CPU (a GPU worker
  // does not take a step's media yet).
  bool carries_media() const override { return media_; }
  void encode(int segment, const EncoderIO& io) override;
  // The floats an encoder segment of this host can write (its output block).
  int64_t encoder_out_floats(int segment) const { return static_cast<int64_t>(arena_->encoder_out(segment).size()); }
  // Multi-host runs (net_transport.h): a hidden-state port's memory on this host, to send it to the
  // host that reads it next or to receive it from the host that wrote it.
  float* hidden_port(const Port& port) { return arena_->hidden_port(port); }
  // Multi-host runs with expert banks on another host than their layers (orchestrator/multihost/
  // bank_exchange.h): the banks of other hosts that layers segments here call, each one's channel in
  // this arena, the shared bank exchange, a call to a bank of this host, and news of a bank lost or
  // restarted on its own host.
  std::vector<int> banks_served_elsewhere() const { return arena_->banks_served_elsewhere(); }
  shm::Channel channel_of(int segment) const {
    return shm::Channel::attach(arena_->arena(), arena_->segments()[static_cast<size_t>(segment)].spec.channel_block);
  }
  ExpertStaging moe_exchange() const { return arena_->moe_exchange(); }
  void call_bank(int segment, const proto::ExpertArgs& a) {
    workers_->call(segment, proto::kExperts, std::as_bytes(std::span<const proto::ExpertArgs>(&a, 1)));
  }
  void note_lost_elsewhere(int segment, const std::string& how) { workers_->note_lost_elsewhere(segment, how); }
  void revive_elsewhere(int segment) { workers_->revive_elsewhere(segment); }
  // The step being run (begin_step's), for a caller that drives stages itself.
  const StepInput& current_step() const { return in_; }

 private:
  void show_captures(const Stage& stage);
  void put_media(const StepMedia& m);
  RunPlan plan_;
  RunPlan local_plan_;  // the segments of this host only: what the checks before start-up look at
  ShmOptions opt_;
  CudaShmOptions cuda_;
  GpuSharingSetup sharing_;
  ModelConfig cfg_;
  std::unique_ptr<ShmRunArena> arena_;
  std::unique_ptr<ShmWorkers> workers_;  // after arena_: stopped before the arena goes
  StepInput in_;
  bool media_ = false;
};

}  // namespace segpipe
