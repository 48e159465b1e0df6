// The shared generation loop (orchestrator/drivers/generation.h): a prompt that starts with tokens the runner's
// cache already holds is computed from the first token that differs, and gives the same bits as a fresh
// run of the whole prompt; stop ids end the reply; the context bound is checked before anything runs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include "orchestrator/drivers/generation.h"
#include "orchestrator/planning/pipeline_loader.h"
#include "segments/core/errors.h"

namespace segpipe {
namespace {

// Forwards every step to a real runner; a test's runner overrides on_step to record what it is asked.
class Forwarding : public Runner {
 public:
  explicit Forwarding(std::unique_ptr<Runner> r) : r_(std::move(r)) {}
  void step(const int32_t* ids, int64_t T, int64_t pos0, bool all, BoundaryObserver* obs,
            std::vector<float>& logits) override {
    r_->step(ids, T, pos0, all, obs, logits);
    on_step(logits, pos0, T);
  }
  int vocab() const override { return r_->vocab(); }
  std::vector<SegmentReport> reports() override { return r_->reports(); }

 protected:
  virtual void on_step(const std::vector<float>& logits, int64_t pos0, int64_t T) = 0;
  std::unique_ptr<Runner> r_;
};

// Keeps every step's logits.
class Recording : public Forwarding {
 public:
  using Forwarding::Forwarding;
  std::vector<std::vector<float>> steps;
  std::vector<std::pair<int64_t, int64_t>> positions;

 private:
  void on_step(const std::vector<float>& logits, int64_t pos0, int64_t T) override {
    steps.push_back(logits);
    positions.push_back({pos0, T});
  }
};

LoadedPlan tiny() { return load_model_plan(std::string(SEGPIPE_SOURCE_DIR) + "/models/tiny-qwen3-moe"); }

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(Generator, ReusedPrefixGivesTheSameBitsAsAFreshRun) {
  LoadedPlan lp = tiny();
  const std::vector<int32_t> first = {11, 12, 13, 14, 15, 16, 17};
  // Shares 4 tokens with the first prompt, then differs (as a re-rendered conversation does).
  const std::vector<int32_t> second = {11, 12, 13, 14, 40, 41, 42, 43, 44};
  Recording reused(make_inproc_runner(lp.plan)), fresh(make_inproc_runner(lp.plan));
  Generator a(reused, {}, lp.plan.max_seq), b(fresh, {}, lp.plan.max_seq);
  Sampler s1(SamplingParams{}), s2(SamplingParams{}), s3(SamplingParams{});
  GenerationResult r1 = a.run(first, s1, 5, [](int32_t) { return true; });
  EXPECT_EQ(r1.prefilled_tokens, 7);
  size_t mark = reused.steps.size();
  GenerationResult r2 = a.run(second, s2, 6, [](int32_t) { return true; });
  GenerationResult r3 = b.run(second, s3, 6, [](int32_t) { return true; });
  EXPECT_EQ(r2.prefilled_tokens, 5) << "only the tokens after the common prefix are computed";
  EXPECT_EQ(reused.positions[mark], (std::pair<int64_t, int64_t>{4, 5}));
  EXPECT_EQ(r2.ids, r3.ids);
  ASSERT_EQ(reused.steps.size() - mark, fresh.steps.size());
  for (size_t i = 0; i < fresh.steps.size(); i++)
    EXPECT_TRUE(same_bits(reused.steps[mark + i], fresh.steps[i])) << "step " << i;
  // The whole prompt already cached (the same question again): the last token is computed again, for its logits.
  size_t mark2 = reused.steps.size();
  Sampler s4(SamplingParams{});
  GenerationResult r4 = a.run(second, s4, 6, [](int32_t) { return true; });
  EXPECT_EQ(r4.prefilled_tokens, 1);
  EXPECT_EQ(r4.ids, r3.ids);
  EXPECT_TRUE(same_bits(reused.steps[mark2], fresh.steps[0]));
}

TEST(Generator, StopsAtAStopIdAndWhenToldTo) {
  LoadedPlan lp = tiny();
  auto runner = make_inproc_runner(lp.plan);
  const std::vector<int32_t> prompt = {972, 466, 363};  // the golden "short" prompt: varied greedy tokens
  Generator free_run(*runner, {}, lp.plan.max_seq);
  Sampler s(SamplingParams{});
  GenerationResult all = free_run.run(prompt, s, 6, [](int32_t) { return true; });
  ASSERT_EQ(all.ids.size(), 6u);
  EXPECT_FALSE(all.stopped);
  // Stop at the first token that does not occur earlier in the reply.
  size_t at = 1;
  while (at < all.ids.size() && std::find(all.ids.begin(), all.ids.begin() + static_cast<long>(at), all.ids[at]) !=
                                    all.ids.begin() + static_cast<long>(at))
    at++;
  ASSERT_LT(at, all.ids.size()) << "the tiny model repeats one token; pick another prompt";
  Generator stopping(*runner, {all.ids[at]}, lp.plan.max_seq);
  Sampler s2(SamplingParams{});
  GenerationResult cut = stopping.run(prompt, s2, 6, [](int32_t) { return true; });
  EXPECT_TRUE(cut.stopped);
  EXPECT_EQ(cut.ids, std::vector<int32_t>(all.ids.begin(), all.ids.begin() + static_cast<long>(at)));
  Sampler s3(SamplingParams{});
  int seen = 0;
  GenerationResult told = free_run.run(prompt, s3, 6, [&](int32_t) { return ++seen < 3; });
  EXPECT_TRUE(told.interrupted);
  EXPECT_EQ(told.ids.size(), 3u);
}

TEST(Generator, RefusesWhatDoesNotFitOrIsNotInTheVocabulary) {
  LoadedPlan lp = tiny();
  auto runner = make_inproc_runner(lp.plan);
  Generator g(*runner, {}, 10);
  Sampler s(SamplingParams{});
  auto any = [](int32_t) { return true; };
  EXPECT_THROW(g.run({1, 2, 3, 4, 5, 6}, s, 5, any), InputError);
  EXPECT_THROW(g.run({1, 2, runner->vocab()}, s, 2, any), InputError);
  EXPECT_THROW(g.run({}, s, 2, any), InputError);
}

}  // namespace
}  // namespace segpipe

namespace segpipe {
namespace {

// A runner that chains greedy steps as the GPU runner does (Runner::decode_greedy), here by n host
// steps with the host's greedy choice between them; it records how the Generator called it.
class Chaining : public Forwarding {
 public:
  using Forwarding::Forwarding;
  bool has_greedy_chain() const override { return true; }
  std::vector<int32_t> decode_greedy(int32_t token, int64_t pos0, int n) override {
    chains.push_back({pos0, n});
    std::vector<int32_t> out;
    std::vector<float> logits;
    Sampler greedy(SamplingParams{});
    for (int i = 0; i < n; i++) {
      r_->step(&token, 1, pos0 + i, false, nullptr, logits);
      out.push_back(token = greedy.next(logits.data(), vocab()));
    }
    return out;
  }
  int host_steps = 0;
  std::vector<std::pair<int64_t, int>> chains;

 private:
  void on_step(const std::vector<float>&, int64_t, int64_t) override { host_steps++; }
};

// The user's path on a GPU: greedy generate through the chain gives the reply the host loop gives, token
// for token, in chunks of kGreedyChunk, ending at stop ids and the budget inside a chunk; the cache
// bookkeeping stays right for the next turn. Sampling (temperature > 0) never takes the chain.
TEST(Generator, GreedyChainGivesTheHostLoopsReply) {
  LoadedPlan lp = tiny();
  const std::vector<int32_t> prompt = {972, 466, 363};
  const int n = Generator::kGreedyChunk * 2 + 5;  // two whole chunks and a part
  auto host_runner = make_inproc_runner(lp.plan);
  Generator host(*host_runner, {}, lp.plan.max_seq);
  Sampler s1(SamplingParams{});
  const GenerationResult want = host.run(prompt, s1, n, [](int32_t) { return true; });
  ASSERT_EQ(want.ids.size(), size_t(n));

  Chaining chained(make_inproc_runner(lp.plan));
  Generator gen(chained, {}, lp.plan.max_seq);
  Sampler s2(SamplingParams{});
  std::vector<int32_t> streamed;
  const GenerationResult got = gen.run(prompt, s2, n, [&](int32_t t) { return streamed.push_back(t), true; });
  EXPECT_EQ(got.ids, want.ids);
  EXPECT_EQ(streamed, want.ids);
  EXPECT_EQ(chained.host_steps, 1) << "only the prefill runs on the host";
  const int K = Generator::kGreedyChunk;
  ASSERT_EQ(chained.chains.size(), 3u);
  EXPECT_EQ(chained.chains[0], (std::pair<int64_t, int>{3, K}));
  EXPECT_EQ(chained.chains[1], (std::pair<int64_t, int>{3 + K, K}));
  EXPECT_EQ(chained.chains[2], (std::pair<int64_t, int>{3 + 2 * K, n - 1 - 2 * K})) << "no step past the budget";
  std::vector<int32_t> cached = prompt;
  cached.insert(cached.end(), want.ids.begin(), want.ids.end() - 1);
  EXPECT_EQ(gen.cached(), cached) << "the last token's keys and values are not computed";
  EXPECT_EQ(gen.cached(), host.cached());

  // A stop id inside the second chunk ends the reply there, as on the host.
  const int32_t stop = want.ids[size_t(K + 3)];
  const size_t first_at = size_t(std::find(want.ids.begin(), want.ids.end(), stop) - want.ids.begin());
  Chaining c2(make_inproc_runner(lp.plan));
  auto h2 = make_inproc_runner(lp.plan);
  Generator g2(c2, {stop}, lp.plan.max_seq), hs(*h2, {stop}, lp.plan.max_seq);
  Sampler s3(SamplingParams{}), s4(SamplingParams{});
  const GenerationResult stopped = g2.run(prompt, s3, n, [](int32_t) { return true; });
  const GenerationResult hstopped = hs.run(prompt, s4, n, [](int32_t) { return true; });
  EXPECT_TRUE(stopped.stopped);
  EXPECT_EQ(stopped.ids.size(), first_at);
  EXPECT_EQ(stopped.ids, hstopped.ids);
  EXPECT_EQ(g2.cached(), hs.cached());
  // The next turn reuses the cache as the host loop's does, and gives the same reply.
  std::vector<int32_t> turn2 = g2.cached();
  turn2.push_back(5);
  Sampler s5(SamplingParams{}), s6(SamplingParams{});
  const GenerationResult t2 = g2.run(turn2, s5, 7, [](int32_t) { return true; });
  const GenerationResult ht2 = hs.run(turn2, s6, 7, [](int32_t) { return true; });
  EXPECT_EQ(t2.prefilled_tokens, ht2.prefilled_tokens);
  EXPECT_EQ(t2.ids, ht2.ids);

  // Sampling does not take the chain.
  Chaining c3(make_inproc_runner(lp.plan));
  Generator g3(c3, {}, lp.plan.max_seq);
  SamplingParams sp;
  sp.temperature = 0.8;
  sp.seed = 7;
  Sampler s7(sp);
  g3.run(prompt, s7, 6, [](int32_t) { return true; });
  EXPECT_TRUE(c3.chains.empty());
  EXPECT_EQ(c3.host_steps, 6);
}

}  // namespace
}  // namespace segpipe
