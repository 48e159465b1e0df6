#include "orchestrator/drivers/segment_set.h"

#include <algorithm>
#include <cstring>

#include "orchestrator/drivers/chain_driver.h"
#include "orchestrator/drivers/inproc_transport.h"
#include "orchestrator/drivers/mapped_fault.h"
#include "orchestrator/drivers/progress.h"
#include "segments/checkpoint/checkpoint.h"
#include "segments/core/errors.h"
#include "segments/factory/segment_factory.h"
#include "segments/kinds/layers.h"

namespace segpipe {

// ExpertExecutor over in-process banks that records each request and each bank's answer.
class SegmentSet::Recorder : public ExpertExecutor {
 public:
  explicit Recorder(int H) : H_(H) {}
  void add(const std::string& name, ExpertBank* bank) { banks_.push_back({name, bank}); }
  // Where the next requests are recorded (null: they are only computed).
  void record_into(std::vector<BankCall>* calls) { calls_ = calls; }

  void run(const ExpertRequest& req) override {
    const size_t TK = static_cast<size_t>(req.T * req.k), H = static_cast<size_t>(H_);
    BankCall* c = nullptr;
    if (calls_) {
      calls_->push_back({});
      c = &calls_->back();
      c->layer = req.layer;
      c->T = req.T;
      c->k = req.k;
      c->x.assign(req.x_f32(), req.x_f32() + req.T * H_);
      c->experts.assign(req.experts, req.experts + TK);
      c->weights.assign(req.weights, req.weights + TK);
    }
    bool held = false;
    for (auto& [name, b] : banks_) {
      if (!b->holds_layer(req.layer)) continue;
      held = true;
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
      r.slots = a.slots.data();
      b->compute(r);
      for (size_t s = 0; s < TK; s++)
        if (b->owns(req.layer, req.experts[s])) {
          a.owned[s] = 1;
          std::memcpy(req.slots_f32() + s * H, a.slots.data() + s * H, H * 4);
        }
      c->answers.push_back(std::move(a));
    }
    if (!held) throw RuntimeFailure("layer " + std::to_string(req.layer) + " has routed experts but no expert bank");
  }

 private:
  std::vector<std::pair<std::string, ExpertBank*>> banks_;  // plan order
  int H_;
  std::vector<BankCall>* calls_ = nullptr;
};

struct SegmentSet::Loaded {
  const SegmentDesc* desc = nullptr;
  std::unique_ptr<Recorder> banks;  // a layers segment whose experts live in banks: reaches them
  std::unique_ptr<Segment> seg;
};

SegmentSet::SegmentSet(const RunPlan& plan, const ModelConfig& cfg, const std::set<std::string>& only)
    : plan_(plan), cfg_(cfg), pool_(plan.threads) {
  ck_ = Checkpoint::open(plan.model_dir);
  auto wanted = [&](const SegmentDesc& s) { return only.empty() || only.count(s.name) != 0; };
  // The wanted segments, and the banks that serve a wanted layers segment.
  std::set<std::string> names;
  for (const SegmentDesc& s : plan.segments)
    if (wanted(s)) {
      names.insert(s.name);
      for (const SegmentDesc& b : plan.segments)
        if (b.serves(s)) names.insert(b.name);
    }
  whole_ = names.size() == plan.segments.size();
  LoadProgress progress(plan.segments.size(), "segments");
  for (const SegmentDesc& s : plan_.segments) {
    progress.tick(s.name);
    if (!names.count(s.name)) continue;
    RunningSegment running(s.name);
    auto l = std::make_unique<Loaded>();
    l->desc = &s;
    // Its banks are connected below, once they are all loaded.
    if (s.banks) l->banks = std::make_unique<Recorder>(cfg_.hidden);
    SegmentEnv env;
    env.cfg = &cfg_;
    env.checkpoint = ck_.get();
    env.pool = &pool_;
    env.max_seq = plan.max_seq;  // the KV cache: the segment's own, allocated lazily
    env.experts = l->banks.get();
    l->seg = make_segment(s, env);
    loaded_.push_back(std::move(l));
  }
  for (auto& l : loaded_) {
    if (l->banks)
      for (auto& b : loaded_)
        if (b->desc->serves(*l->desc)) l->banks->add(b->desc->name, b->seg->bank());
  }
}

SegmentSet::~SegmentSet() = default;

SegmentSet::Loaded* SegmentSet::find(const std::string& name) const {
  for (auto& l : loaded_)
    if (l->desc->name == name) return l.get();
  return nullptr;
}

const SegmentDesc& SegmentSet::desc(const std::string& name) const {
  for (const SegmentDesc& s : plan_.segments)
    if (s.name == name) return s;
  throw InputError(plan_.source + ": no segment named '" + name + "'");
}

std::vector<std::string> SegmentSet::loaded_banks() const {
  std::vector<std::string> v;
  for (auto& l : loaded_)
    if (l->seg->bank()) v.push_back(l->desc->name);
  return v;
}

const std::vector<LoadedTensor>& SegmentSet::loaded(const std::string& name) const {
  desc(name);  // an unknown name is an error, a known one not loaded here has loaded nothing
  if (const Loaded* l = find(name)) return l->seg->loaded();
  static const std::vector<LoadedTensor> none;
  return none;
}

uint64_t SegmentSet::weight_bytes(const std::string& name) const {
  desc(name);
  const Loaded* l = find(name);
  return l ? l->seg->weight_bytes() : 0;
}

const Segment* SegmentSet::segment(const std::string& name) const {
  const Loaded* l = find(name);
  return l ? l->seg.get() : nullptr;
}

int SegmentSet::vocab() const { return cfg_.vocab; }

void SegmentSet::run_loaded(Loaded& s, const StepIO& io, std::vector<BankCall>* calls) {
  if (s.banks) s.banks->record_into(calls);
  in_segment(s.desc->name, to_string(s.desc->kind), [&] { s.seg->step(io); });
}

void SegmentSet::run(const std::string& name, const StepIO& io, std::vector<BankCall>* calls) {
  Loaded* s = find(name);
  if (!s) throw InputError("segment '" + name + "' is not loaded");
  run_loaded(*s, io, calls);
}

void SegmentSet::bank(const std::string& name, const ExpertRequest& req) {
  Loaded* s = find(name);
  ExpertBank* b = s ? s->seg->bank() : nullptr;
  if (!b) throw InputError("experts segment '" + name + "' is not loaded");
  in_segment(name, to_string(s->desc->kind), [&] { b->compute(req); });
}

void SegmentSet::step(const int32_t* ids, int64_t T, int64_t pos0, bool all_logits, BoundaryObserver* obs,
                      std::vector<float>& logits, std::vector<BankCall>* calls) {
  SEGPIPE_ASSERT_MSG(whole_, "a pipeline step needs every segment of the plan loaded");
  // The one driver over these segments: the in-process runner's path, with the bank calls recorded.
  InprocTransport t(plan_, cfg_, *this, calls);
  ChainDriver(plan_, t).step(ids, T, pos0, all_logits, obs, logits);
}

}  // namespace segpipe
