#include "orchestrator/drivers/chain_driver.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "orchestrator/drivers/progress.h"
#include "segments/core/errors.h"

namespace segpipe {

namespace {
const char* const kNoMedia =
    "audio and image inputs run in-process (transport: inproc) or as one process per segment on one host, on "
    "the CPU; this pipeline's segments run on a GPU or on several hosts, which do not carry them yet";
}  // namespace

ChainDriver::ChainDriver(const RunPlan& plan, Transport& transport)
    : plan_(plan), t_(transport), chain_(chain_of(plan.segments)) {}

void ChainDriver::start() {
  // Every segment loads at once (the transport started them all); waiting for each in turn costs the
  // slowest one's load, not their sum.
  LoadProgress progress(plan_.segments.size(), "segments");
  for (size_t i = 0; i < plan_.segments.size(); i++) {
    for (int attempt = 0;; attempt++) {
      try {
        t_.wait_ready(static_cast<int>(i));
        progress.tick(plan_.segments[i].name);
        break;
      } catch (const SegmentLost& f) {
        if (!plan_.restart || !t_.can_restart() || attempt >= kMaxRestarts) fail(f, "during start-up");
        spdlog::warn("{} during start-up; restarting it", f.what());
        restart_chain(f);  // ready again once restarted; segment i is asked again (it may be another)
      }
    }
  }
}

void ChainDriver::step(const int32_t* ids, int64_t T, int64_t pos0, bool all_logits, BoundaryObserver* obs,
                       std::vector<float>& logits, const StepMedia* media) {
  if (media && media->empty()) media = nullptr;
  if (media && !t_.carries_media())
    throw InputError(kNoMedia);
  const int64_t max_T = t_.max_step_tokens();
  if (T > max_T) {
    // Prefill in chunks; only the last chunk's logits are asked for (a token's result does not depend
    // on the chunking: see linear.h and attention.h; nor do the media, applied position by position).
    if (obs || all_logits)
      throw InputError("a prompt of " + std::to_string(T) + " tokens exceeds the " + std::to_string(max_T) +
                       " tokens that can be captured in one step");
    for (int64_t b = 0; b < T; b += max_T) {
      const int64_t n = std::min(max_T, T - b);
      if (!media) {
        step(ids + b, n, pos0 + b, false, nullptr, logits);
        continue;
      }
      MediaSlice part(*media, T, b, n, t_.config().hidden);
      step(ids + b, n, pos0 + b, false, nullptr, logits, &part.media);
    }
    return;
  }
  if (obs && T > t_.capture_tokens())
    throw InputError("capturing " + std::to_string(T) + " tokens needs a runner made with capture_tokens >= T");
  // Checked here for every transport: a bad id is the caller's error, not a failure of a segment far away.
  const int V = t_.config().vocab;
  for (int64_t t = 0; t < T; t++)
    if (ids[t] < 0 || ids[t] >= V)
      throw InputError("token id " + std::to_string(ids[t]) + " is out of range (vocabulary size " +
                       std::to_string(V) + ")");
  StepInput in{ids, T, pos0, all_logits, obs, &logits, media};
  logits.resize(static_cast<size_t>((all_logits ? T : 1) * V));
  for (int attempt = 0;; attempt++) {
    try {
      step_once(in);
      return;
    } catch (const SegmentLost& f) {
      if (!plan_.restart || !t_.can_restart() || attempt >= kMaxRestarts) fail(f, "");
      spdlog::warn("{}; restarting it and repeating the step", f.what());
      restart_chain(f);
    }
  }
}

void ChainDriver::encode(const MediaInput& in, EncodedMedia& out) {
  int segment = -1;
  for (size_t i = 0; i < plan_.segments.size(); i++)
    if (plan_.segments[i].kind == in.encoder) segment = static_cast<int>(i);
  if (segment < 0)
    throw InputError(std::string("the prompt has ") + (in.encoder == SegmentKind::audio_encoder ? "audio" : "an image") +
                     " but the pipeline has no " + to_string(in.encoder) + " segment");
  if (!t_.carries_media()) throw InputError(kNoMedia);
  out.rows.assign(static_cast<size_t>(out.levels * out.tokens * out.width), 0.f);
  EncoderIO io;
  io.in = in.data.data();
  io.frames = in.frames;
  io.grids = in.grids.empty() ? nullptr : in.grids.data();
  io.n_grids = static_cast<int64_t>(in.grids.size() / 3);
  io.out = out.rows.data();
  io.out_floats = static_cast<int64_t>(out.rows.size());
  t_.encode(segment, io);
}

void ChainDriver::step_once(const StepInput& in) {
  SEGPIPE_ASSERT_MSG(!chain_.empty(), "a plan without segments");
  t_.begin_step(in);
  for (const Stage& s : chain_) t_.run(s);
  t_.end_step();
}

// Restarts a lost segment; another segment lost meanwhile is restarted in turn (bounded).
void ChainDriver::restart_chain(const SegmentLost& first) {
  SegmentLost f = first;
  for (int k = 0;; k++) {
    try {
      t_.restart(f.segment);
      return;
    } catch (const SegmentLost& g) {
      if (k >= kMaxRestarts)
        fail(g, "while restarting '" + plan_.segments[static_cast<size_t>(first.segment)].name + "'");
      spdlog::warn("{}; restarting it", g.what());
      f = g;
    }
  }
}

void ChainDriver::fail(const SegmentLost& f, const std::string& when) {
  t_.shutdown();
  throw RuntimeFailure(std::string(f.what()) + (when.empty() ? "" : " " + when));
}

namespace {

class ChainRunner : public Runner {
 public:
  ChainRunner(const RunPlan& plan, std::unique_ptr<Transport> t) : plan_(plan), t_(std::move(t)), driver_(plan_, *t_) {
    driver_.start();
  }
  ~ChainRunner() override { t_->shutdown(); }
  void step(const int32_t* ids, int64_t T, int64_t pos0, bool all_logits, BoundaryObserver* obs,
            std::vector<float>& logits) override {
    driver_.step(ids, T, pos0, all_logits, obs, logits);
  }
  void step_media(const int32_t* ids, int64_t T, int64_t pos0, bool all_logits, BoundaryObserver* obs,
                  std::vector<float>& logits, const StepMedia& media) override {
    driver_.step(ids, T, pos0, all_logits, obs, logits, &media);
  }
  void encode(const MediaInput& in, EncodedMedia& out) override { driver_.encode(in, out); }
  int vocab() const override { return t_->config().vocab; }
  std::vector<SegmentReport> reports() override { return t_->reports(); }
  std::vector<GpuDeviceState> gpu_devices() const override { return t_->gpu_devices(); }

 private:
  RunPlan plan_;  // the driver's (the caller's plan may go away)
  std::unique_ptr<Transport> t_;
  ChainDriver driver_;
};

}  // namespace

std::unique_ptr<Runner> make_chain_runner(const RunPlan& plan, std::unique_ptr<Transport> transport) {
  return std::make_unique<ChainRunner>(plan, std::move(transport));
}

}  // namespace segpipe
