// Expert banks in other processes, as a layers worker calls them. BankCaller is the calling itself
// (CPU and GPU layers workers): one request to every bank holding a layer, then a wait for all, so
// the banks compute in parallel. RemoteBanks is the ExpertExecutor of a CPU layers segment: the
// layer writes normalized states and routes straight into the arena's MoE exchange blocks (staging),
// the banks write disjoint rows of the slots block, and the layer combines the slots in its fixed
// order. (A GPU layers segment's counterpart: workers/cuda_remote_banks.h.)
#pragma once
#include <span>
#include <string>
#include <vector>

#include "segments/kinds/layers.h"
#include "shm/arena.h"
#include "shm/channel.h"
#include "workers/protocol.h"

namespace segpipe {

class BankCaller {
 public:
  BankCaller(const proto::WorkerSpec& spec, const shm::Arena& arena, proto::SegmentStatus* status);
  bool holds_layer(int layer) const;
  // Posts kExperts with `args` to every bank whose layer range holds `layer`, then waits for all of
  // them. A bank the orchestrator marks dead or restarts meanwhile ends the wait with a
  // RuntimeFailure (the orchestrator names it and restarts or fails the run); a bank's silence is
  // judged by the orchestrator's heartbeat watch, so there is no deadline here.
  void call(int layer, std::span<const std::byte> args);
  // Spins before sleeping while waiting for a bank (GPU banks: see CudaShmOptions::spin_count).
  void set_spin_count(uint32_t spins) {
    for (Bank& b : banks_) b.ch.set_spin_count(spins);
  }

 private:
  struct Bank {
    int index;
    int layer_first, layer_last;
    shm::Channel ch;
    std::string name;
  };
  proto::SegmentStatus* status_;
  std::vector<Bank> banks_;
};

class RemoteBanks : public ExpertExecutor {
 public:
  RemoteBanks(const proto::WorkerSpec& spec, const shm::Arena& arena, const ModelConfig& cfg,
              proto::SegmentStatus* status);
  ExpertStaging staging(int64_t T, int k) override;
  void run(const ExpertRequest& req) override;

 private:
  const proto::WorkerSpec& spec_;
  BankCaller banks_;
  ExpertStaging stage_;
};

}  // namespace segpipe
