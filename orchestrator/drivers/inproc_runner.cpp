// The monolithic baseline: every segment of the plan built and called in this process, in data-flow
// order, with the same segment classes the worker processes use. The segments and the chain's loop are
// SegmentSet's (the traced runs of dump and bisect use the same one), so there is one in-process path.
#include <sys/resource.h>
#include <unistd.h>

#include "orchestrator/drivers/runner.h"
#include "orchestrator/drivers/segment_set.h"
#include "segments/model/config_file.h"

namespace segpipe {

namespace {

class InprocRunner : public Runner {
 public:
  explicit InprocRunner(const RunPlan& plan)
      : plan_(plan), cfg_(read_model_config(plan.model_dir)), set_(plan_, cfg_) {}

  void step(const int32_t* ids, int64_t T, int64_t pos0, bool all_logits, BoundaryObserver* obs,
            std::vector<float>& logits) override {
    set_.step(ids, T, pos0, all_logits, obs, logits);
  }

  int vocab() const override { return set_.vocab(); }

  std::vector<SegmentReport> reports() override {
    // One process holds every segment: each entry carries its own weights and the process's pid/RSS.
    struct rusage ru {};
    getrusage(RUSAGE_SELF, &ru);
    std::vector<SegmentReport> out;
    for (const SegmentDesc& s : plan_.segments) {
      SegmentReport r;
      r.name = s.name;
      r.kind = to_string(s.kind);
      r.pid = static_cast<long>(getpid());
      r.peak_rss_bytes = static_cast<uint64_t>(ru.ru_maxrss) * 1024;
      const auto& l = set_.loaded(s.name);
      r.tensors = l.size();
      for (auto& t : l) {
        r.weight_bytes += t.bytes;
        r.tensor_names.push_back(t.name);
      }
      out.push_back(r);
    }
    return out;
  }

 private:
  RunPlan plan_;
  ModelConfig cfg_;
  SegmentSet set_;
};

}  // namespace

std::unique_ptr<Runner> make_inproc_runner(const RunPlan& plan) { return std::make_unique<InprocRunner>(plan); }

}  // namespace segpipe
