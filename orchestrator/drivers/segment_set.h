// Segments of a plan built in this process, by name: the whole pipeline (the in-process runner, and the
// traced run that dump and bisect use to see inside expert banks) or one segment with what it needs
// (run-segment). Same segment classes as the workers, so the same bits.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "orchestrator/planning/run_plan.h"
#include "segments/kinds/boundary_observer.h"
#include "segments/kinds/embeddings.h"
#include "segments/kinds/experts.h"
#include "segments/kinds/layers.h"
#include "segments/kinds/lm_head.h"

namespace segpipe {

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

  // Full pipeline step (every segment loaded), as the in-process runner does it. obs sees every
  // boundary; when `calls` is given, every bank request of the step is recorded there.
  void step(const int32_t* ids, int64_t T, int64_t pos0, bool all_logits, BoundaryObserver* obs,
            std::vector<float>& logits, std::vector<BankCall>* calls = nullptr);

  // One segment at a time.
  void embed(const int32_t* ids, int64_t T, float* out);
  void layers(const std::string& name, float* x, int64_t T, int64_t pos0, BoundaryObserver* obs,
              std::vector<BankCall>* calls = nullptr);
  void bank(const std::string& name, const ExpertRequest& req);
  void head(const float* x, int64_t T, bool all_positions, float* normed, float* logits);

  const SegmentDesc& desc(const std::string& name) const;
  std::vector<std::string> loaded_banks() const;
  uint64_t weight_bytes(const std::string& name) const;
  // What the named segment mapped (empty when it is not loaded).
  const std::vector<LoadedTensor>& loaded(const std::string& name) const;
  const ExpertsSegment* experts_of(const std::string& name) const;  // bank or local experts
  int vocab() const { return head_ ? head_->vocab() : 0; }

 private:
  const std::string& segment_of(SegmentKind kind) const;  // the first segment of that kind ("" if none)
  struct Stage;
  class Recorder;
  const RunPlan& plan_;
  const ModelConfig& cfg_;
  ThreadPool pool_;
  std::shared_ptr<Checkpoint> ck_;
  std::unique_ptr<EmbeddingsSegment> embed_;
  std::unique_ptr<LmHeadSegment> head_;
  std::map<std::string, std::unique_ptr<ExpertsSegment>> banks_;
  std::vector<std::unique_ptr<Stage>> stages_;
  std::vector<float> x_, normed_;
};

}  // namespace segpipe
