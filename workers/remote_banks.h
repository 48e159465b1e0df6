// ExpertExecutor for a layers segment whose experts live in `experts` segment processes: the layer
// writes normalized states and routes straight into the arena's MoE exchange blocks (staging), every
// bank holding experts of the layer is asked at once, they write disjoint rows of the slots block in
// parallel, and the layer combines the slots in its fixed order.
#pragma once
#include <string>
#include <vector>

#include "segments/kinds/layers.h"
#include "shm/arena.h"
#include "shm/channel.h"
#include "workers/protocol.h"

namespace segpipe {

class RemoteBanks : public ExpertExecutor {
 public:
  RemoteBanks(const proto::WorkerSpec& spec, const shm::Arena& arena, const ModelConfig& cfg,
              proto::SegmentStatus* status);
  ExpertStaging staging(int64_t T, int k) override;
  void run(const ExpertRequest& req) override;

 private:
  struct Bank {
    int index;
    int layer_first, layer_last;
    shm::Channel ch;
  };
  const proto::WorkerSpec& spec_;
  const shm::Arena& arena_;
  proto::SegmentStatus* status_;
  std::vector<Bank> banks_;
  ExpertStaging stage_;
};

}  // namespace segpipe
