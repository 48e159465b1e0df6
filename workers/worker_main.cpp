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
#include "segments/core/encoder_io.h"
#include "segments/core/errors.h"
#include "segments/core/segment.h"
#include "segments/factory/segment_factory.h"
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
    // A layers segment whose experts live in banks calls them through the arena's MoE exchange.
    if (spec_.banks) banks_ = std::make_unique<RemoteBanks>(spec_, arena_, cfg_, status_);
    SegmentEnv env;
    env.cfg = &cfg_;
    env.checkpoint = ck_.get();
    env.pool = &pool_;
    env.max_seq = spec_.max_seq;
    // The KV cache lives in the arena: a restarted worker finds it as the last one left it.
    if (spec_.kv_block) env.kv = arena_.payload_span<float>(spec_.kv_block);
    env.experts = banks_.get();
    seg_ = make_segment(spec_, env);
  }

  const std::vector<LoadedTensor>& loaded() const override { return seg_->loaded(); }
  uint64_t weight_bytes() const override { return seg_->weight_bytes(); }

  int serve() { return worker::serve(spec_, ch_, status_, *this); }

  void add_to_report(proto::ReportReply& r) const override {
    const ExpertCacheStats c = seg_->expert_cache_stats();
    r.expert_uses = c.uses;
    r.expert_hits = c.hits;
    r.expert_loads = c.loads;
    r.expert_evictions = c.evictions;
    r.expert_bytes_loaded = c.bytes_loaded;
    r.max_resident_experts = c.max_resident;
  }

  void step(const proto::StepArgs& a) override {
    if (a.T <= 0 || a.T > spec_.max_tokens) throw RuntimeFailure("step of " + std::to_string(a.T) + " tokens exceeds the buffers");
    // The blocks as they are: what each kind reads and writes there is StepIO's contract. A layers
    // segment reads `in` and computes in `out` (never the same block), so the input survives a crash
    // mid-step and the step can be repeated after a restart.
    std::unique_ptr<CaptureWriter> cap;
    if (a.capture) cap = std::make_unique<CaptureWriter>(spec_, arena_, cfg_, a.T);
    StepIO io;
    io.in = arena_.payload(a.in_block).data();
    io.out = arena_.payload_span<float>(a.out_block).data();
    io.normed = a.capture ? arena_.payload_span<float>(spec_.norm_block).data() : nullptr;
    io.T = a.T;
    io.pos0 = a.pos0;
    io.all_positions = a.all_logits != 0;
    io.observer = cap.get();
    take_media(a, io);
    seg_->step(io);
  }

  // kEncode: the media as the orchestrator left it in enc_in / enc_grids; the rows into enc_out.
  void encode(std::span<const std::byte> args) override {
    const auto a = worker::args_as<proto::EncodeArgs>(args);
    if (a.frames < 1 || a.n_grids < 0 || a.in_floats < 1 || a.out_floats < 1)
      throw RuntimeFailure("an encode request with " + std::to_string(a.frames) + " frames");
    EncoderIO e;
    e.in = block<float>(spec_.enc_in, a.in_floats, "the encoder's input").data();
    e.frames = a.frames;
    e.grids = a.n_grids ? block<int32_t>(spec_.enc_grids, 3 * a.n_grids, "the image grids").data() : nullptr;
    e.n_grids = a.n_grids;
    e.out = block<float>(spec_.enc_out, a.out_floats, "the encoder's output").data();
    e.out_floats = a.out_floats;
    StepIO io;
    io.encode = &e;
    seg_->step(io);
  }

  // The first n elements of a media block, refused (a failure of this request, not a read past the
  // block) where the plan gave this segment none or a smaller one than the request says.
  template <class T>
  std::span<T> block(uint32_t index, int64_t n, const char* what) {
    if (index == 0 || n < 0) throw RuntimeFailure(std::string("no shared block for ") + what);
    std::span<T> b = arena_.payload_span<T>(index);
    if (static_cast<uint64_t>(n) > b.size())
      throw RuntimeFailure(std::string(what) + ": " + std::to_string(n) + " values, the block holds " + std::to_string(b.size()));
    return b.first(static_cast<size_t>(n));
  }

  // A step's media (StepArgs): where they are in the arena, checked against the blocks; the segment
  // checks the rows' positions (media_rows.h) before it writes through them.
  void take_media(const proto::StepArgs& a, StepIO& io) {
    const int64_t H = cfg_.hidden, T = a.T;
    io.rope_delta = a.rope_delta;
    if (a.media_rope) io.rope_positions = block<int32_t>(spec_.media_rope, 3 * T, "the 3-D positions").data();
    if (a.media_embed_n) {
      const int64_t n = a.media_embed_n;
      if (n < 0 || n > T) throw RuntimeFailure("a step of " + std::to_string(T) + " tokens with " + std::to_string(n) + " media rows");
      io.media = MediaRows{block<int32_t>(spec_.media_embed_index, n, "the media rows' positions").data(), n,
                           block<float>(spec_.media_embed_rows, n * H, "the media rows").data(), 1};
    }
    if (a.media_ds_n) {
      const int64_t n = a.media_ds_n, levels = a.media_ds_levels;
      if (n < 0 || n > T || levels < 1 || levels > cfg_.num_layers)
        throw RuntimeFailure("a step of " + std::to_string(T) + " tokens with " + std::to_string(n) +
                             " DeepStack rows of " + std::to_string(levels) + " levels");
      io.deepstack = MediaRows{block<int32_t>(spec_.media_ds_index, n, "the DeepStack rows' positions").data(), n,
                               block<float>(spec_.media_ds_rows, levels * n * H, "the DeepStack rows").data(),
                               static_cast<int>(levels)};
    }
  }

  void experts(std::span<const std::byte> args) override {
    ExpertBank* bank = seg_->bank();
    if (!bank) throw RuntimeFailure("only expert banks compute experts");
    const auto a = worker::args_as<proto::ExpertArgs>(args);
    ExpertRequest req;
    req.layer = a.layer;
    req.T = a.T;
    req.k = a.k;
    req.x = arena_.payload_span<float>(spec_.moe_x).data();
    req.experts = arena_.payload_span<int32_t>(spec_.moe_experts).data();
    req.weights = arena_.payload_span<float>(spec_.moe_weights).data();
    req.slots = arena_.payload_span<float>(spec_.moe_slots).data();
    bank->compute(req);
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
  std::unique_ptr<RemoteBanks> banks_;  // before seg_: the segment calls it until it is gone
  std::unique_ptr<Segment> seg_;
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
