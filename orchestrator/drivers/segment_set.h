// Segments of a plan built in this process, by name: the whole pipeline (the in-process runner, and the
// traced run that dump and bisect use to see inside expert banks) or one segment with what it needs
// (run-segment). Same segments as the workers (made by segments/factory/segment_factory.h), so the same
// bits.
#pragma once
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "orchestrator/planning/run_plan.h"
#include "segments/core/boundary_observer.h"
#include "segments/core/segment.h"
#include "segments/kernels/cpu/thread_pool.h"

namespace segpipe {

class Checkpoint;

// One layer's request to its expert banks and each bank's answer.
struct BankCall {
  int layer = 0;
  int64_t T = 0;
  int k = 0;
  std::vector<float> x;          // [T, H] normalized hidden states
  std::vector<int32_t> experts;  // [T, k]
  std::vector<float> weights;    // [T, k]
  struct Answer {
    std::string bank;
    std::vector<float> slots;     // [T, k, H]: weighted outputs of the bank's experts, zero elsewhere
    std::vector<uint8_t> owned;   // [T, k]: 1 where the slot's expert belongs to this bank
  };
  std::vector<Answer> answers;   // in plan order of the banks
};

class SegmentSet {
 public:
  // Loads the named segments (all when `only` is empty). A layers segment with `experts: banks`
  // also gets the banks that serve it, loaded here (they are listed by loaded_banks()).
  SegmentSet(const RunPlan& plan, const ModelConfig& cfg, const std::set<std::string>& only = {});
  ~SegmentSet();

  // Full pipeline step (every segment loaded): the in-process runner's driver and transport
  // (chain_driver.h, inproc_transport.h) over these segments. obs sees every boundary; when `calls` is
  // given, every bank request of the step is recorded there.
  void step(const int32_t* ids, int64_t T, int64_t pos0, bool all_logits, BoundaryObserver* obs,
            std::vector<float>& logits, std::vector<BankCall>* calls = nullptr);

  // One segment's step (StepIO says what each kind reads and writes); a layers segment's requests to
  // its banks are recorded in `calls` when given. An expert bank has no step: bank() below.
  void run(const std::string& name, const StepIO& io, std::vector<BankCall>* calls = nullptr);
  // One request to the named expert bank.
  void bank(const std::string& name, const ExpertRequest& req);

  const SegmentDesc& desc(const std::string& name) const;
  std::vector<std::string> loaded_banks() const;  // in plan order
  uint64_t weight_bytes(const std::string& name) const;
  // What the named segment mapped (empty when it is not loaded).
  const std::vector<LoadedTensor>& loaded(const std::string& name) const;
  // The named segment (null when it is not loaded).
  const Segment* segment(const std::string& name) const;
  int vocab() const;

 private:
  struct Loaded;
  class Recorder;
  Loaded* find(const std::string& name) const;
  void run_loaded(Loaded& s, const StepIO& io, std::vector<BankCall>* calls);
  const RunPlan& plan_;
  const ModelConfig& cfg_;
  ThreadPool pool_;
  std::shared_ptr<Checkpoint> ck_;
  std::vector<std::unique_ptr<Loaded>> loaded_;  // plan order
  bool whole_ = false;                           // every segment of the plan is loaded
};

}  // namespace segpipe
