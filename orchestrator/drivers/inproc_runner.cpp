// The monolithic baseline: every segment of the plan built and called in this process, in data-flow
// order, with the same segment classes the worker processes use.
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <map>

#include "orchestrator/drivers/mapped_fault.h"
#include "orchestrator/drivers/progress.h"
#include "orchestrator/drivers/runner.h"
#include "segments/core/errors.h"
#include "segments/kinds/embeddings.h"
#include "segments/kinds/experts.h"
#include "segments/kinds/layers.h"
#include "segments/kinds/lm_head.h"

namespace segpipe {

namespace {

// Anonymous mapping: pages of a KV cache cost memory only once written.
struct LazyFloats {
  float* p = nullptr;
  size_t n = 0;
  explicit LazyFloats(size_t count) : n(count) {
    if (n == 0) return;
    void* m = mmap(nullptr, n * sizeof(float), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) throw RuntimeFailure("cannot allocate KV cache of " + std::to_string(n * 4) + " bytes");
    p = static_cast<float*>(m);
  }
  ~LazyFloats() {
    if (p) munmap(p, n * sizeof(float));
  }
  LazyFloats(const LazyFloats&) = delete;
  LazyFloats& operator=(const LazyFloats&) = delete;
};

class InprocRunner : public Runner {
 public:
  explicit InprocRunner(const RunPlan& plan) : plan_(plan), pool_(plan.threads) {
    ck_ = Checkpoint::open(plan.model_dir);
    cfg_ = parse_model_config(ck_->config_json(), plan.model_dir + "/config.json");
    for (const SegmentDesc& s : plan_.segments) {
      RunningSegment running(s.name);
      if (s.kind == SegmentKind::experts)
        banks_[s.name] = std::make_unique<ExpertsSegment>(*ck_, cfg_, pool_, s.layer_first, s.layer_last,
                                                          s.expert_first, s.expert_last, s.max_resident_experts);
    }
    LoadProgress progress(plan.segments.size(), "segments");
    for (const SegmentDesc& s : plan_.segments) {
      progress.tick(s.name);
      RunningSegment running(s.name);
      switch (s.kind) {
        case SegmentKind::embeddings:
          embed_ = std::make_unique<EmbeddingsSegment>(*ck_, cfg_);
          embed_name_ = s.name;
          break;
        case SegmentKind::lm_head:
          head_ = std::make_unique<LmHeadSegment>(*ck_, cfg_, pool_);
          head_name_ = s.name;
          break;
        case SegmentKind::experts: break;
        case SegmentKind::layers: {
          Stage st;
          st.desc = s;
          st.seg = std::make_unique<LayersSegment>(*ck_, cfg_, pool_, s.layer_first, s.layer_last, !s.banks,
                                                   s.max_resident_experts);
          int n = s.layer_last - s.layer_first + 1;
          int64_t per = LayersSegment::kv_floats_per_layer(cfg_, plan.max_seq);
          st.kv = std::make_unique<LazyFloats>(static_cast<size_t>(per * n));
          std::vector<KvLayer> kv;
          for (int i = 0; i < n; i++) {
            float* base = st.kv->p + per * i;
            kv.push_back({base, base + per / 2});
          }
          st.seg->bind_kv(std::move(kv), plan.max_seq);
          if (s.banks) {
            std::vector<ExpertsSegment*> mine;
            for (auto& [name, b] : banks_)
              if (b->layer_last() >= s.layer_first && b->layer_first() <= s.layer_last) mine.push_back(b.get());
            st.exec = std::make_unique<BankedExperts>(mine);
          }
          stages_.push_back(std::move(st));
          break;
        }
      }
    }
    SEGPIPE_ASSERT_MSG(embed_ && head_, "plan without embeddings or lm_head");
  }

  void step(const int32_t* ids, int64_t T, int64_t pos0, bool all_logits, BoundaryObserver* obs,
            std::vector<float>& logits) override {
    const int64_t H = cfg_.hidden;
    x_.resize(static_cast<size_t>(T * H));
    in_segment(embed_name_, "embeddings", [&] { embed_->forward(ids, T, x_.data()); });
    if (obs) obs->on_tensor("embeddings", x_.data(), T, H);
    for (Stage& st : stages_)  // its banks run inside it
      in_segment(st.desc.name, "layers", [&] { st.seg->forward(x_.data(), T, pos0, st.exec.get(), obs); });
    logits.resize(static_cast<size_t>((all_logits ? T : 1) * head_->vocab()));
    normed_.resize(static_cast<size_t>(T * H));
    in_segment(head_name_, "lm_head",
               [&] { head_->forward(x_.data(), T, all_logits, obs ? normed_.data() : nullptr, logits.data()); });
    if (obs) {
      obs->on_tensor("norm", normed_.data(), T, H);
      if (all_logits) obs->on_tensor("logits", logits.data(), T, head_->vocab());
    }
  }

  int vocab() const override { return head_->vocab(); }

  std::vector<SegmentReport> reports() override {
    // One process holds every segment: each entry carries its own weights and the process's pid/RSS.
    struct rusage ru {};
    getrusage(RUSAGE_SELF, &ru);
    std::vector<SegmentReport> out;
    auto add = [&](const std::string& name, const char* kind, const std::vector<LoadedTensor>& l) {
      SegmentReport r;
      r.name = name;
      r.kind = kind;
      r.pid = static_cast<long>(getpid());
      r.tensors = l.size();
      r.peak_rss_bytes = static_cast<uint64_t>(ru.ru_maxrss) * 1024;
      for (auto& t : l) {
        r.weight_bytes += t.bytes;
        r.tensor_names.push_back(t.name);
      }
      out.push_back(r);
    };
    for (const SegmentDesc& s : plan_.segments) {
      if (s.kind == SegmentKind::embeddings) add(s.name, "embeddings", embed_->loaded());
      if (s.kind == SegmentKind::lm_head) add(s.name, "lm_head", head_->loaded());
      if (s.kind == SegmentKind::experts) add(s.name, "experts", banks_.at(s.name)->loaded());
      if (s.kind == SegmentKind::layers)
        for (auto& st : stages_)
          if (st.desc.name == s.name) add(s.name, "layers", st.seg->loaded());
    }
    return out;
  }

 private:
  struct Stage {
    SegmentDesc desc;
    std::unique_ptr<LayersSegment> seg;
    std::unique_ptr<LazyFloats> kv;
    std::unique_ptr<BankedExperts> exec;
  };
  RunPlan plan_;
  ThreadPool pool_;
  std::shared_ptr<Checkpoint> ck_;
  ModelConfig cfg_;
  std::unique_ptr<EmbeddingsSegment> embed_;
  std::unique_ptr<LmHeadSegment> head_;
  std::string embed_name_, head_name_;
  std::map<std::string, std::unique_ptr<ExpertsSegment>> banks_;
  std::vector<Stage> stages_;
  std::vector<float> x_, normed_;
};

}  // namespace

std::unique_ptr<Runner> make_inproc_runner(const RunPlan& plan) { return std::make_unique<InprocRunner>(plan); }

}  // namespace segpipe
