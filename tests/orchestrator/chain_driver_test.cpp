// The one driver over a fake transport: the chain it runs (banks skipped, ports typed), a lost segment
// reported with its name and exit 3's RuntimeFailure (and the transport shut down first), restart and
// repeat of the step with restart on, the bounded restarts, and the checks made before any segment runs.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "orchestrator/drivers/chain_driver.h"
#include "segments/core/errors.h"

namespace segpipe {
namespace {

RunPlan plan(bool restart) {
  RunPlan p;
  p.source = "test.yaml";
  p.restart = restart;
  auto add = [&](const std::string& name, SegmentKind kind, int l0 = -1, int l1 = -1) {
    SegmentDesc d{name, kind};
    d.layer_first = l0;
    d.layer_last = l1;
    p.segments.push_back(d);
  };
  add("embed", SegmentKind::embeddings);
  add("early", SegmentKind::layers, 0, 1);
  add("late", SegmentKind::layers, 2, 4);
  p.segments.back().banks = true;
  add("bank", SegmentKind::experts, 2, 4);
  add("head", SegmentKind::lm_head);
  return p;
}

// Records the stages it runs; loses segment `lose` the first `losses` times it is run.
class FakeTransport : public Transport {
 public:
  explicit FakeTransport(const RunPlan& p) : plan_(p) { cfg_.vocab = 10, cfg_.hidden = 4; }
  const ModelConfig& config() const override { return cfg_; }
  int64_t max_step_tokens() const override { return max_tokens; }
  void wait_ready(int segment) override {
    if (segment == lose_at_start && losses > 0) {
      losses--;
      throw SegmentLost(segment, "segment '" + plan_.segments[static_cast<size_t>(segment)].name + "' (pid 1) killed");
    }
  }
  void begin_step(const StepInput& in) override {
    in_ = in;
    steps++;
  }
  void run(const Stage& s) override {
    ran.push_back(s);
    if (s.segment == lose && losses > 0) {
      losses--;
      throw SegmentLost(s.segment, "segment '" + plan_.segments[static_cast<size_t>(s.segment)].name +
                                       "' (layers, pid 42) killed by signal 9 (SIGKILL)");
    }
    if (s.out.is_logits()) (*in_.logits)[0] = static_cast<float>(in_.pos0);
  }
  bool can_restart() const override { return restartable; }
  void restart(int segment) override { restarted.push_back(segment); }
  void shutdown() noexcept override { shut++; }
  std::vector<SegmentReport> reports() override { return {}; }

  const RunPlan& plan_;
  ModelConfig cfg_;
  StepInput in_;
  int64_t max_tokens = 1000;
  int lose = -1, lose_at_start = -1, losses = 0, steps = 0, shut = 0;
  bool restartable = true;
  std::vector<Stage> ran;
  std::vector<int> restarted;
};

// A plan (restart on or off), the fake transport under it and the driver over both; step() runs one
// token, {1}, at position pos0.
struct Chain {
  explicit Chain(bool restart) : p(plan(restart)), t(p), d(p, t) {}
  // Makes the transport lose `segment` the next `times` times it is run.
  Chain& losing(int segment, int times) {
    t.lose = segment;
    t.losses = times;
    return *this;
  }
  void step(int64_t pos0) { d.step(one.data(), 1, pos0, false, nullptr, logits); }

  RunPlan p;
  FakeTransport t;
  ChainDriver d;
  std::vector<int32_t> one = {1};
  std::vector<float> logits;
};

TEST(ChainDriver, RunsEverySegmentButTheBanksInOrderWithTypedPorts) {
  Chain c(false);
  std::vector<int32_t> ids = {1, 2, 3};
  c.d.step(ids.data(), 3, 7, false, nullptr, c.logits);
  const std::vector<Stage>& ran = c.t.ran;
  ASSERT_EQ(ran.size(), 4u);
  EXPECT_EQ(ran[0].segment, 0);
  EXPECT_TRUE(ran[0].in.is_ids());
  EXPECT_EQ(ran[0].out, Port::hidden(Boundary::embeddings()));
  EXPECT_EQ(ran[1].in, Port::hidden(Boundary::embeddings()));
  EXPECT_EQ(ran[1].out, Port::hidden(Boundary::output(1)));
  EXPECT_EQ(ran[2].in, Port::hidden(Boundary::output(1)));
  EXPECT_EQ(ran[2].out, Port::hidden(Boundary::output(4)));
  EXPECT_EQ(ran[3].segment, 4);  // the bank (3) is not the driver's to run
  EXPECT_TRUE(ran[3].out.is_logits());
  EXPECT_EQ(c.logits.size(), 10u);
  EXPECT_EQ(c.logits[0], 7.f);
}

TEST(ChainDriver, LostSegmentIsARuntimeFailureNamingItAfterShutdown) {
  Chain c(false);
  c.losing(2, 1);
  try {
    c.step(0);
    FAIL() << "no failure";
  } catch (const RuntimeFailure& e) {
    EXPECT_NE(std::string(e.what()).find("segment 'late' (layers, pid 42) killed by signal 9"), std::string::npos) << e.what();
  }
  EXPECT_EQ(c.t.shut, 1);
  EXPECT_TRUE(c.t.restarted.empty());
}

TEST(ChainDriver, WithRestartTheLostSegmentIsRestartedAndTheStepRepeated) {
  Chain c(true);
  c.losing(2, 2).step(5);
  EXPECT_EQ(c.t.restarted, (std::vector<int>{2, 2}));
  EXPECT_EQ(c.t.steps, 3);                  // the step began again after each restart
  EXPECT_EQ(c.t.ran.size(), 3u + 3u + 4u);  // twice up to 'late', then the whole chain
  EXPECT_EQ(c.logits[0], 5.f);
  EXPECT_EQ(c.t.shut, 0);
}

TEST(ChainDriver, RestartsAreBounded) {
  Chain c(true);
  EXPECT_THROW(c.losing(1, 100).step(0), RuntimeFailure);
  EXPECT_EQ(c.t.restarted.size(), static_cast<size_t>(ChainDriver::kMaxRestarts));
  EXPECT_EQ(c.t.shut, 1);
}

TEST(ChainDriver, ATransportThatCannotRestartReportsEvenWithRestartOn) {
  Chain c(true);
  c.t.restartable = false;
  EXPECT_THROW(c.losing(0, 1).step(0), RuntimeFailure);
  EXPECT_TRUE(c.t.restarted.empty());
}

TEST(ChainDriver, StartUpRestartsALostSegmentAndSaysWhen) {
  Chain on(true), off(false);
  on.t.lose_at_start = off.t.lose_at_start = 4;
  on.t.losses = off.t.losses = 1;
  on.d.start();
  EXPECT_EQ(on.t.restarted, (std::vector<int>{4}));
  try {
    off.d.start();
    FAIL() << "no failure";
  } catch (const RuntimeFailure& x) {
    EXPECT_NE(std::string(x.what()).find("segment 'head' (pid 1) killed during start-up"), std::string::npos) << x.what();
  }
}

TEST(ChainDriver, BadIdsAndLongCapturesAreInputErrorsBeforeAnySegmentRuns) {
  Chain c(false);
  c.t.max_tokens = 2;
  std::vector<int32_t> bad = {1, 10};
  EXPECT_THROW(c.d.step(bad.data(), 2, 0, false, nullptr, c.logits), InputError);
  std::vector<int32_t> ids = {1, 2, 3};
  struct Silent : BoundaryObserver {
    void on_tensor(const Boundary&, const float*, int64_t, int64_t) override {}
  } obs;
  EXPECT_THROW(c.d.step(ids.data(), 3, 0, false, &obs, c.logits), InputError);
  EXPECT_TRUE(c.t.ran.empty());
  // Without an observer a long prompt is prefilled in chunks of max_step_tokens.
  c.d.step(ids.data(), 3, 0, false, nullptr, c.logits);
  EXPECT_EQ(c.t.steps, 2);
  EXPECT_EQ(c.logits[0], 2.f);  // the last chunk starts at position 2
}

}  // namespace
}  // namespace segpipe
