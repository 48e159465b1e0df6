// The sampler (orchestrator/drivers/sampler.h): greedy is argmax; seeded sampling is reproducible; top-k,
// top-p and temperature give the distributions their definitions give.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "orchestrator/drivers/sampler.h"

namespace segpipe {
namespace {

std::vector<float> random_logits(int V, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.f, 3.f);
  std::vector<float> l(static_cast<size_t>(V));
  for (auto& x : l) x = d(rng);
  return l;
}

int argmax_first(const std::vector<float>& l) {
  int b = 0;
  for (int i = 1; i < static_cast<int>(l.size()); i++)
    if (l[static_cast<size_t>(i)] > l[static_cast<size_t>(b)]) b = i;
  return b;
}

TEST(Sampler, GreedyIsArgmaxFirstMaximum) {
  Sampler s(SamplingParams{});
  for (uint64_t seed = 0; seed < 50; seed++) {
    auto l = random_logits(97, seed);
    EXPECT_EQ(s.next(l.data(), 97), argmax_first(l));
  }
  std::vector<float> tie = {1.f, 5.f, -2.f, 5.f};
  EXPECT_EQ(s.next(tie.data(), 4), 1);
  std::vector<float> neg = {-9.f, -3.f, -4.f};
  EXPECT_EQ(s.next(neg.data(), 3), 1);
}

std::vector<int32_t> draw(const SamplingParams& p, const std::vector<float>& l, int n) {
  Sampler s(p);
  std::vector<int32_t> out;
  for (int i = 0; i < n; i++) out.push_back(s.next(l.data(), static_cast<int>(l.size())));
  return out;
}

TEST(Sampler, SameSeedSameSequenceOtherSeedOtherSequence) {
  auto l = random_logits(50, 7);
  for (auto& x : l) x /= 3.f;  // flat enough that draws vary
  SamplingParams p{1.0, 0, 1.0, 1234};
  auto a = draw(p, l, 200), b = draw(p, l, 200);
  EXPECT_EQ(a, b);
  p.seed = 1235;
  EXPECT_NE(draw(p, l, 200), a);
}

TEST(Sampler, TopKOneIsGreedy) {
  for (uint64_t seed = 0; seed < 20; seed++) {
    auto l = random_logits(64, seed);
    auto d = draw(SamplingParams{5.0, 1, 1.0, seed}, l, 30);
    for (int32_t t : d) EXPECT_EQ(t, argmax_first(l));
  }
}

TEST(Sampler, TinyTopPIsGreedy) {
  for (uint64_t seed = 0; seed < 20; seed++) {
    auto l = random_logits(64, seed + 100);
    auto d = draw(SamplingParams{2.0, 0, 1e-9, seed}, l, 30);
    for (int32_t t : d) EXPECT_EQ(t, argmax_first(l));
  }
}

// Draw frequencies against expected probabilities: every id within 5 standard deviations, and ids
// with probability zero never drawn.
void expect_distribution(const SamplingParams& p, const std::vector<float>& l, const std::vector<double>& want, int n) {
  auto d = draw(p, l, n);
  std::vector<int> count(l.size(), 0);
  for (int32_t t : d) count[static_cast<size_t>(t)]++;
  for (size_t i = 0; i < l.size(); i++) {
    double f = static_cast<double>(count[i]) / n, sd = std::sqrt(want[i] * (1 - want[i]) / n);
    if (want[i] == 0)
      EXPECT_EQ(count[i], 0) << "id " << i;
    else
      EXPECT_NEAR(f, want[i], 5 * sd + 1e-9) << "id " << i;
  }
}

TEST(Sampler, DistributionAtTemperatureOne) {
  std::vector<double> probs = {0.1, 0.2, 0.3, 0.4};
  std::vector<float> l;
  for (double q : probs) l.push_back(static_cast<float>(std::log(q)));
  expect_distribution(SamplingParams{1.0, 0, 1.0, 9}, l, probs, 40000);
}

TEST(Sampler, TemperatureSharpensAndFlattens) {
  std::vector<double> probs = {0.1, 0.2, 0.3, 0.4};
  std::vector<float> l;
  for (double q : probs) l.push_back(static_cast<float>(std::log(q)));
  for (double temp : {0.5, 2.0}) {
    std::vector<double> want;
    double s = 0;
    for (double q : probs) s += std::pow(q, 1 / temp);
    for (double q : probs) want.push_back(std::pow(q, 1 / temp) / s);
    expect_distribution(SamplingParams{temp, 0, 1.0, 10}, l, want, 40000);
  }
}

TEST(Sampler, TopKAndTopPRenormalizeTheKeptSet) {
  std::vector<double> probs = {0.1, 0.4, 0.2, 0.3};
  std::vector<float> l;
  for (double q : probs) l.push_back(static_cast<float>(std::log(q)));
  // top-k 2 keeps ids 1 (0.4) and 3 (0.3).
  expect_distribution(SamplingParams{1.0, 2, 1.0, 11}, l, {0, 4.0 / 7, 0, 3.0 / 7}, 30000);
  // top-p 0.5: the smallest prefix by probability whose mass reaches 0.5 is {0.4, 0.3}.
  expect_distribution(SamplingParams{1.0, 0, 0.5, 12}, l, {0, 4.0 / 7, 0, 3.0 / 7}, 30000);
  // top-p 0.8: {0.4, 0.3, 0.2}.
  expect_distribution(SamplingParams{1.0, 0, 0.8, 13}, l, {0, 4.0 / 9, 2.0 / 9, 3.0 / 9}, 30000);
}

}  // namespace
}  // namespace segpipe
