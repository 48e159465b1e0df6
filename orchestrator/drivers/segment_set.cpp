#include "orchestrator/drivers/segment_set.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>

#include "orchestrator/drivers/mapped_fault.h"
#include "orchestrator/drivers/progress.h"
#include "segments/checkpoint/checkpoint.h"
#include "segments/core/errors.h"

namespace segpipe {

namespace {

// Anonymous mapping: KV pages cost memory only once written (as in the in-process runner).
struct LazyKv {
  float* p = nullptr;
  size_t n = 0;
  explicit LazyKv(size_t count) : n(count) {
    if (!n) return;
    void* m = mmap(nullptr, n * 4, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) throw RuntimeFailure("cannot allocate a KV cache of " + std::to_string(n * 4) + " bytes");
    p = static_cast<float*>(m);
  }
  ~LazyKv() {
    if (p) munmap(p, n * 4);
  }
};

bool serves(const SegmentDesc& bank, const SegmentDesc& layers) {
  return bank.kind == SegmentKind::experts && layers.kind == SegmentKind::layers && layers.banks &&
         bank.layer_last >= layers.layer_first && bank.layer_first <= layers.layer_last;
}

}  // namespace

struct SegmentSet::Stage {
  SegmentDesc desc;
  std::unique_ptr<LayersSegment> seg;
  std::unique_ptr<LazyKv> kv;
  std::vector<std::pair<std::string, ExpertsSegment*>> banks;
};

// ExpertExecutor over in-process banks that records each request and each bank's answer.
class SegmentSet::Recorder : public ExpertExecutor {
 public:
  Recorder(const std::vector<std::pair<std::string, ExpertsSegment*>>& banks, int H, std::vector<BankCall>* calls)
      : banks_(banks), H_(H), calls_(calls) {}
  void run(const ExpertRequest& req) override {
    const size_t TK = static_cast<size_t>(req.T * req.k), H = static_cast<size_t>(H_);
    BankCall* c = nullptr;
    if (calls_) {
      calls_->push_back({});
      c = &calls_->back();
      c->layer = req.layer;
      c->T = req.T;
      c->k = req.k;
      c->x.assign(req.x, req.x + req.T * H_);
      c->experts.assign(req.experts, req.experts + TK);
      c->weights.assign(req.weights, req.weights + TK);
    }
    for (auto& [name, b] : banks_) {
      if (req.layer < b->layer_first() || req.layer > b->layer_last()) continue;
      RunningSegment running(name);
      if (!c) {
        b->compute(req);
        continue;
      }
      // The bank writes its own rows only: give it a zeroed buffer, then copy those rows out.
      BankCall::Answer a;
      a.bank = name;
      a.slots.assign(TK * H, 0.f);
      a.owned.assign(TK, 0);
      ExpertRequest r = req;
      r.out = a.slots.data();
      b->compute(r);
      for (size_t s = 0; s < TK; s++)
        if (req.experts[s] >= b->expert_first() && req.experts[s] <= b->expert_last()) {
          a.owned[s] = 1;
          std::memcpy(req.out + s * H, a.slots.data() + s * H, H * 4);
        }
      c->answers.push_back(std::move(a));
    }
  }

 private:
  const std::vector<std::pair<std::string, ExpertsSegment*>>& banks_;
  int H_;
  std::vector<BankCall>* calls_;
};

SegmentSet::SegmentSet(const RunPlan& plan, const ModelConfig& cfg, const std::set<std::string>& only)
    : plan_(plan), cfg_(cfg), pool_(plan.threads) {
  ck_ = Checkpoint::open(plan.model_dir);
  auto wanted = [&](const SegmentDesc& s) { return only.empty() || only.count(s.name) != 0; };
  std::set<std::string> bank_names;
  for (const SegmentDesc& s : plan.segments) {
    if (s.kind == SegmentKind::experts && wanted(s)) bank_names.insert(s.name);
    if (s.kind == SegmentKind::layers && wanted(s))
      for (const SegmentDesc& b : plan.segments)
        if (serves(b, s)) bank_names.insert(b.name);
  }
  for (const SegmentDesc& s : plan_.segments)
    if (bank_names.count(s.name)) {
      RunningSegment running(s.name);
      banks_[s.name] = std::make_unique<ExpertsSegment>(*ck_, cfg_, pool_, s.layer_first, s.layer_last, s.expert_first,
                                                        s.expert_last, s.max_resident_experts);
    }
  LoadProgress progress(plan.segments.size(), "segments");
  for (const SegmentDesc& s : plan_.segments) {
    progress.tick(s.name);
    if (!wanted(s)) continue;
    RunningSegment running(s.name);
    if (s.kind == SegmentKind::embeddings) embed_ = std::make_unique<EmbeddingsSegment>(*ck_, cfg_);
    if (s.kind == SegmentKind::lm_head) head_ = std::make_unique<LmHeadSegment>(*ck_, cfg_, pool_);
    if (s.kind != SegmentKind::layers) continue;
    auto st = std::make_unique<Stage>();
    st->desc = s;
    st->seg = std::make_unique<LayersSegment>(*ck_, cfg_, pool_, s.layer_first, s.layer_last, !s.banks,
                                              s.max_resident_experts);
    int n = s.layer_last - s.layer_first + 1;
    int64_t per = LayersSegment::kv_floats_per_layer(cfg_, plan.max_seq);
    st->kv = std::make_unique<LazyKv>(static_cast<size_t>(per * n));
    std::vector<KvLayer> kv;
    for (int i = 0; i < n; i++) kv.push_back({st->kv->p + per * i, st->kv->p + per * i + per / 2});
    st->seg->bind_kv(std::move(kv), plan.max_seq);
    for (const SegmentDesc& b : plan.segments)
      if (serves(b, s)) st->banks.push_back({b.name, banks_.at(b.name).get()});
    stages_.push_back(std::move(st));
  }
}

SegmentSet::~SegmentSet() = default;

const std::string& SegmentSet::segment_of(SegmentKind kind) const {
  for (const SegmentDesc& s : plan_.segments)
    if (s.kind == kind) return s.name;
  static const std::string none;
  return none;
}

const SegmentDesc& SegmentSet::desc(const std::string& name) const {
  for (const SegmentDesc& s : plan_.segments)
    if (s.name == name) return s;
  throw InputError(plan_.source + ": no segment named '" + name + "'");
}

std::vector<std::string> SegmentSet::loaded_banks() const {
  std::vector<std::string> v;
  for (auto& [n, b] : banks_) v.push_back(n);
  return v;
}

const std::vector<LoadedTensor>& SegmentSet::loaded(const std::string& name) const {
  const SegmentDesc& d = desc(name);
  if (d.kind == SegmentKind::embeddings && embed_) return embed_->loaded();
  if (d.kind == SegmentKind::lm_head && head_) return head_->loaded();
  if (d.kind == SegmentKind::experts && banks_.count(name)) return banks_.at(name)->loaded();
  for (auto& st : stages_)
    if (st->desc.name == name) return st->seg->loaded();
  static const std::vector<LoadedTensor> none;
  return none;
}

uint64_t SegmentSet::weight_bytes(const std::string& name) const {
  uint64_t b = 0;
  for (auto& t : loaded(name)) b += t.bytes;
  return b;
}

const ExpertsSegment* SegmentSet::experts_of(const std::string& name) const {
  if (banks_.count(name)) return banks_.at(name).get();
  for (auto& st : stages_)
    if (st->desc.name == name) return st->seg->local_experts();
  return nullptr;
}

void SegmentSet::embed(const int32_t* ids, int64_t T, float* out) {
  SEGPIPE_ASSERT_MSG(embed_ != nullptr, "embeddings segment not loaded");
  in_segment(segment_of(SegmentKind::embeddings), "embeddings", [&] { embed_->forward(ids, T, out); });
}

void SegmentSet::layers(const std::string& name, float* x, int64_t T, int64_t pos0, BoundaryObserver* obs,
                        std::vector<BankCall>* calls) {
  for (auto& st : stages_) {
    if (st->desc.name != name) continue;
    std::unique_ptr<Recorder> rec;
    if (!st->banks.empty()) rec = std::make_unique<Recorder>(st->banks, cfg_.hidden, calls);
    in_segment(st->desc.name, "layers", [&] { st->seg->forward(x, T, pos0, rec.get(), obs); });
    return;
  }
  throw InputError("layers segment '" + name + "' is not loaded");
}

void SegmentSet::bank(const std::string& name, const ExpertRequest& req) {
  auto it = banks_.find(name);
  if (it == banks_.end()) throw InputError("experts segment '" + name + "' is not loaded");
  in_segment(it->first, "experts", [&] { it->second->compute(req); });
}

void SegmentSet::head(const float* x, int64_t T, bool all_positions, float* normed, float* logits) {
  SEGPIPE_ASSERT_MSG(head_ != nullptr, "lm_head segment not loaded");
  in_segment(segment_of(SegmentKind::lm_head), "lm_head", [&] { head_->forward(x, T, all_positions, normed, logits); });
}

void SegmentSet::step(const int32_t* ids, int64_t T, int64_t pos0, bool all_logits, BoundaryObserver* obs,
                      std::vector<float>& logits, std::vector<BankCall>* calls) {
  const int64_t H = cfg_.hidden;
  x_.resize(static_cast<size_t>(T * H));
  embed(ids, T, x_.data());
  if (obs) obs->on_tensor(Boundary::embeddings(), x_.data(), T, H);
  for (auto& st : stages_) layers(st->desc.name, x_.data(), T, pos0, obs, calls);
  logits.resize(static_cast<size_t>((all_logits ? T : 1) * head_->vocab()));
  normed_.resize(static_cast<size_t>(T * H));
  head(x_.data(), T, all_logits, normed_.data(), logits.data());
  if (obs) {
    obs->on_tensor(Boundary::norm(), normed_.data(), T, H);
    if (all_logits) obs->on_tensor(Boundary::logits(), logits.data(), T, head_->vocab());
  }
}

}  // namespace segpipe
