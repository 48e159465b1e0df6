#include "orchestrator/drivers/inproc_transport.h"

#include <sys/resource.h>
#include <unistd.h>

#include "segments/model/config_file.h"

namespace segpipe {

InprocTransport::InprocTransport(const RunPlan& plan, const ModelConfig& cfg, SegmentSet& set,
                                 std::vector<BankCall>* calls)
    : plan_(plan), cfg_(cfg), set_(set), calls_(calls) {}

void InprocTransport::begin_step(const StepInput& in) {
  in_ = in;
  x_.resize(static_cast<size_t>(in.T * cfg_.hidden));
}

void InprocTransport::run(const Stage& stage) {
  // Each segment reports its own boundaries to the observer as it computes them.
  StepIO io;
  io.in = stage.in.is_ids() ? static_cast<const void*>(in_.ids) : x_.data();
  io.out = stage.out.is_logits() ? in_.logits->data() : x_.data();
  io.T = in_.T;
  io.pos0 = in_.pos0;
  io.all_positions = in_.all_logits;
  io.observer = in_.observer;
  if (const StepMedia* m = in_.media) {
    // The stage that reads the ids is the embeddings (chain.h): it takes the encoders' rows; the stages
    // between two hidden states are layers: positions and DeepStack.
    if (stage.in.is_ids()) {
      io.media = m->embed;
    } else if (stage.out.is_hidden()) {
      io.rope_positions = m->rope_positions;
      io.rope_delta = m->rope_delta;
      io.deepstack = m->deepstack;
    }
  }
  set_.run(plan_.segments[static_cast<size_t>(stage.segment)].name, io, calls_);
}

void InprocTransport::encode(int segment, const EncoderIO& e) {
  StepIO io;
  io.encode = &e;
  set_.run(plan_.segments[static_cast<size_t>(segment)].name, io, nullptr);
}

std::vector<SegmentReport> InprocTransport::reports() {
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

namespace {

// The segments a transport of its own calls (a base, so that they are loaded before the transport that
// refers to them is made).
struct OwnedSegments {
  explicit OwnedSegments(const RunPlan& p) : plan(p), cfg(read_model_config(p.model_dir)), set(plan, cfg) {}
  RunPlan plan;
  ModelConfig cfg;
  SegmentSet set;
};

class OwningInprocTransport : private OwnedSegments, public InprocTransport {
 public:
  explicit OwningInprocTransport(const RunPlan& p) : OwnedSegments(p), InprocTransport(plan, cfg, set) {}
};

}  // namespace

std::unique_ptr<Transport> make_inproc_transport(const RunPlan& plan) {
  return std::make_unique<OwningInprocTransport>(plan);
}

}  // namespace segpipe
