#include "workers/worker_main.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <thread>

#include "segments/checkpoint/checkpoint.h"
#include "segments/core/errors.h"
#include "segments/kinds/embeddings.h"
#include "segments/kinds/experts.h"
#include "segments/kinds/layers.h"
#include "segments/kinds/lm_head.h"
#include "shm/arena.h"
#include "shm/channel.h"
#include "workers/capture_writer.h"
#include "workers/cuda_worker.h"
#include "workers/log.h"
#include "workers/protocol.h"
#include "workers/remote_banks.h"
#include "workers/serve_loop.h"
#include "workers/worker_support.h"

namespace segpipe {

namespace {

using namespace std::chrono_literals;

using worker::bytes_of;

class Worker : public worker::ServedSegment {
 public:
  explicit Worker(const proto::WorkerSpec& s)
      : spec_(s), arena_(shm::Arena::open(s.arena)), ch_(shm::Channel::attach(arena_, s.channel_block)),
        pool_(s.threads) {
    status_ = arena_.payload_span<proto::SegmentStatus>(s.status_block).data();
  }

  void start_heartbeat() {
    hb_ = std::thread([this] {
      while (!stop_hb_.load()) {
        if (worker::busy_watch().moving(pool_.progress()))
          std::atomic_ref<uint64_t>(status_[spec_.index].heartbeat).fetch_add(1, std::memory_order_relaxed);
        std::this_thread::sleep_for(20ms);
      }
    });
  }

  ~Worker() {
    stop_hb_ = true;
    if (hb_.joinable()) hb_.join();
  }

  void load() {
    ck_ = Checkpoint::open(spec_.model_dir);
    cfg_ = parse_model_config(ck_->config_json(), spec_.model_dir + "/config.json");
    if (spec_.kind == SegmentKind::embeddings) {
      embed_ = std::make_unique<EmbeddingsSegment>(*ck_, cfg_);
    } else if (spec_.kind == SegmentKind::lm_head) {
      head_ = std::make_unique<LmHeadSegment>(*ck_, cfg_, pool_);
    } else if (spec_.kind == SegmentKind::experts) {
      bank_ = std::make_unique<ExpertsSegment>(*ck_, cfg_, pool_, spec_.layer_first, spec_.layer_last,
                                               spec_.expert_first, spec_.expert_last, spec_.max_resident_experts);
    } else {
      layers_ = std::make_unique<LayersSegment>(*ck_, cfg_, pool_, spec_.layer_first, spec_.layer_last, !spec_.banks,
                                                spec_.max_resident_experts);
      // The KV cache lives in the arena: a restarted worker finds it as the last one left it.
      float* kv = arena_.payload_span<float>(spec_.kv_block).data();
      int64_t per = LayersSegment::kv_floats_per_layer(cfg_, spec_.max_seq);
      std::vector<KvLayer> v;
      for (int i = 0; i <= spec_.layer_last - spec_.layer_first; i++) v.push_back({kv + per * i, kv + per * i + per / 2});
      layers_->bind_kv(std::move(v), spec_.max_seq);
      if (spec_.banks) banks_ = std::make_unique<RemoteBanks>(spec_, arena_, cfg_, status_);
    }
  }

  const std::vector<LoadedTensor>& loaded() const override {
    if (embed_) return embed_->loaded();
    if (head_) return head_->loaded();
    if (bank_) return bank_->loaded();
    return layers_->loaded();
  }

  int serve() { return worker::serve(spec_, ch_, status_, *this); }

  void add_to_report(proto::ReportReply& r) const override {
    const ExpertsSegment* ex = bank_ ? bank_.get() : layers_ ? layers_->local_experts() : nullptr;
    if (!ex) return;
    const ExpertCacheStats& c = ex->cache_stats();
    r.expert_uses = c.uses;
    r.expert_hits = c.hits;
    r.expert_loads = c.loads;
    r.expert_evictions = c.evictions;
    r.expert_bytes_loaded = c.bytes_loaded;
    r.max_resident_experts = c.max_resident;
  }

  void step(const proto::StepArgs& a) override {
    const int64_t H = cfg_.hidden;
    if (a.T <= 0 || a.T > spec_.max_tokens) throw RuntimeFailure("step of " + std::to_string(a.T) + " tokens exceeds the buffers");
    if (embed_) {
      const int32_t* ids = arena_.payload_span<int32_t>(a.in_block).data();
      embed_->forward(ids, a.T, arena_.payload_span<float>(a.out_block).data());
    } else if (layers_) {
      // Read from `in`, compute in place in `out`: the input survives a crash mid-step, so the
      // step can be repeated after a restart.
      const float* in = arena_.payload_span<float>(a.in_block).data();
      float* out = arena_.payload_span<float>(a.out_block).data();
      std::memcpy(out, in, static_cast<size_t>(a.T * H) * sizeof(float));
      std::unique_ptr<CaptureWriter> cap;
      if (a.capture) cap = std::make_unique<CaptureWriter>(spec_, arena_, cfg_, a.T);
      layers_->forward(out, a.T, a.pos0, banks_.get(), cap.get());
    } else if (head_) {
      const float* in = arena_.payload_span<float>(a.in_block).data();
      float* logits = arena_.payload_span<float>(a.out_block).data();
      float* normed = a.capture ? arena_.payload_span<float>(spec_.norm_block).data() : nullptr;
      head_->forward(in, a.T, a.all_logits != 0, normed, logits);
    } else {
      throw RuntimeFailure("an expert bank does not run steps");
    }
  }

  void experts(std::span<const std::byte> args) override {
    if (!bank_) throw RuntimeFailure("only expert banks compute experts");
    const auto a = worker::args_as<proto::ExpertArgs>(args);
    ExpertRequest req;
    req.layer = a.layer;
    req.T = a.T;
    req.k = a.k;
    req.x = arena_.payload_span<float>(spec_.moe_x).data();
    req.experts = arena_.payload_span<int32_t>(spec_.moe_experts).data();
    req.weights = arena_.payload_span<float>(spec_.moe_weights).data();
    req.out = arena_.payload_span<float>(spec_.moe_slots).data();
    bank_->compute(req);
  }

 private:
  proto::WorkerSpec spec_;
  shm::Arena arena_;
  shm::Channel ch_;
  ThreadPool pool_;
  proto::SegmentStatus* status_ = nullptr;
  std::thread hb_;
  std::atomic<bool> stop_hb_{false};
  std::shared_ptr<Checkpoint> ck_;
  ModelConfig cfg_;
  std::unique_ptr<EmbeddingsSegment> embed_;
  std::unique_ptr<LayersSegment> layers_;
  std::unique_ptr<ExpertsSegment> bank_;
  std::unique_ptr<LmHeadSegment> head_;
  std::unique_ptr<RemoteBanks> banks_;
};

}  // namespace

int worker_main(const std::vector<std::string>& args) {
  if (args.size() != 1 && args.size() != 2)
    throw InputError("__worker: expects one JSON spec, and a second for a GPU segment (this command is started by "
                     "the orchestrator)");
  proto::WorkerSpec spec = proto::worker_spec_from_json(nlohmann::json::parse(args[0]));
  init_worker_logging(spec.name);
  // Die with the orchestrator, whatever kills it; and if it is already gone, do not start at all.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != spec.parent_pid) return 3;
  // Ctrl-C in a terminal reaches the whole foreground process group, workers included. The orchestrator
  // decides what it means (the chat loop ends the reply, then stops every worker in order); a worker that
  // died of it first would be reported as a failed segment. Without the orchestrator a worker dies anyway
  // (PDEATHSIG above).
  ::signal(SIGINT, SIG_IGN);
  try {
    if (args.size() == 2)  // a GPU segment (workers/cuda_worker.h)
      return cuda_worker_main(spec, proto::cuda_worker_spec_from_json(nlohmann::json::parse(args[1])));
    Worker w(spec);
    w.start_heartbeat();
    w.load();
    spdlog::debug("weights mapped; serving");
    int rc = w.serve();
    spdlog::debug("stopped (exit {})", rc);
    return rc;
  } catch (const std::exception& e) {
    // Before the handshake: the orchestrator reads our exit status and this line.
    spdlog::error("{}", e.what());
    return dynamic_cast<const InputError*>(&e) ? 2 : 3;
  }
}

}  // namespace segpipe
