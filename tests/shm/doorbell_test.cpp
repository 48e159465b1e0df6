#include "shm/doorbell.h"

#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "shm/arena.h"
#include "shm/arena_name.h"
#include "tests/shm/test_support.h"

namespace segpipe::shm {
namespace {

using namespace std::chrono_literals;
using segpipe::shm::testing::fork_child;
using segpipe::shm::testing::allowed_cpu;
using segpipe::shm::testing::wait_child;
using segpipe::shm::testing::wait_until_sleeping;
using Clock = std::chrono::steady_clock;

// Two doorbells in one arena block: ping (parent -> child) and pong (child -> parent).
struct Bells {
  Arena arena;
  Doorbell* ping;
  Doorbell* pong;
};
Bells make_bells() {
  ArenaLayout layout;
  layout.add_block(BlockKind::kDoorbells, 2 * sizeof(Doorbell), alignof(Doorbell), "bells");
  Arena arena = Arena::create(make_arena_name(), layout);
  auto bells = arena.payload_span<Doorbell>(0);
  return Bells{std::move(arena), &bells[0], &bells[1]};
}

TEST(Doorbell, ZeroFilledIsIdle) {
  Bells b = make_bells();
  EXPECT_EQ(b.ping->sequence(), 0u);
  const WaitResult r = b.ping->wait_for(0, 0ns);
  EXPECT_FALSE(r.rung);
}

TEST(Doorbell, WaitReturnsAtOnceWhenSequenceAlreadyMoved) {
  Bells b = make_bells();
  b.ping->ring();
  b.ping->ring();
  // Nobody rings during the wait: rung can only come from the rings already counted.
  const WaitResult r = b.ping->wait_for(0, 10s);
  EXPECT_TRUE(r.rung);
  EXPECT_EQ(r.sequence, 2u) << "rings are counted, a late waiter sees them all";
}

TEST(Doorbell, WaitTimesOutWithinBounds) {
  Bells b = make_bells();
  for (const auto timeout : {1ms, 20ms, 100ms}) {
    const auto t0 = Clock::now();
    const WaitResult r = b.ping->wait_for(0, timeout);
    const auto elapsed = Clock::now() - t0;
    EXPECT_FALSE(r.rung);
    EXPECT_GE(elapsed, timeout) << "a wait never ends early";
    // It ends: a bound that holds on a loaded machine (the latency itself is bench_doorbell's).
    EXPECT_LT(elapsed, timeout + 30s);
  }
  EXPECT_FALSE(b.ping->wait_for(0, 0ns).rung);
}

TEST(Doorbell, SequenceWrapsAround) {
  Bells b = make_bells();
  // Start one below the wrap: waits compare for inequality, never for "greater than".
  std::memset(static_cast<void*>(b.ping), 0xff, sizeof(uint32_t));
  EXPECT_EQ(b.ping->sequence(), UINT32_MAX);
  b.ping->ring();
  const WaitResult r = b.ping->wait_for(UINT32_MAX, 1s);
  EXPECT_TRUE(r.rung);
  EXPECT_EQ(r.sequence, 0u);
}

TEST(Doorbell, RingWakesSleeperInAnotherProcess) {
  Bells b = make_bells();
  const pid_t pid = fork_child([&] {
    // No spinning: this exercises FUTEX_WAIT on a shared (not private) futex.
    const WaitResult r = b.ping->wait_for(0, 60s, 0);
    return r.rung && r.sequence == 1 ? 0 : 1;
  });
  // Ring only once the child sleeps in the kernel, so the wake-up really crosses the futex.
  EXPECT_TRUE(wait_until_sleeping(pid));
  b.ping->ring();
  EXPECT_EQ(wait_child(pid, 60s), 0);
}

TEST(Doorbell, WakesAWaitingThreadToo) {
  Bells b = make_bells();
  std::atomic<pid_t> tid{0};
  std::thread waiter([&] {
    tid = ::gettid();
    EXPECT_TRUE(b.ping->wait_for(0, 60s, 0).rung);
  });
  while (tid.load() == 0) std::this_thread::yield();
  EXPECT_TRUE(wait_until_sleeping(tid.load()));
  b.ping->ring();
  waiter.join();
}

// Strict alternation: each side waits for the exact next sequence. A lost wake-up shows up as a
// 5-second timeout (the child exits 2, the parent fails), a spurious one as a wrong sequence.
class DoorbellPingPong : public ::testing::TestWithParam<uint32_t> {};

TEST_P(DoorbellPingPong, AcrossProcessesLosesNoWakeups) {
  const uint32_t spin = GetParam();
  constexpr uint32_t kIterations = 20000;
  Bells b = make_bells();
  const pid_t pid = fork_child([&] {
    for (uint32_t i = 0; i < kIterations; ++i) {
      const WaitResult r = b.ping->wait_for(i, 5s, spin);
      if (!r.rung) return 2;
      if (r.sequence != i + 1) return 3;
      b.pong->ring();
    }
    return 0;
  });
  for (uint32_t i = 0; i < kIterations; ++i) {
    b.ping->ring();
    const WaitResult r = b.pong->wait_for(i, 5s, spin);
    ASSERT_TRUE(r.rung) << "lost wake-up at iteration " << i;
    ASSERT_EQ(r.sequence, i + 1);
  }
  EXPECT_EQ(wait_child(pid), 0);
}

INSTANTIATE_TEST_SUITE_P(SpinCounts, DoorbellPingPong, ::testing::Values(0u, 1u, kDefaultSpinCount),
                         [](const auto& param_info) { return "spin" + std::to_string(param_info.param); });

TEST(Doorbell, PingPongOnOneCpuLosesNoWakeups) {
  // Both processes on one CPU (one this process may use; CPU 0 may be outside its cpuset): the
  // waiter must not spin against a peer that needs its CPU (the ringer-CPU hint), and the futex
  // path must still deliver every ring.
  cpu_set_t saved;
  ASSERT_EQ(::sched_getaffinity(0, sizeof saved, &saved), 0);
  const int cpu = allowed_cpu();
  ASSERT_GE(cpu, 0);
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  ASSERT_EQ(::sched_setaffinity(0, sizeof one, &one), 0);
  constexpr uint32_t kIterations = 5000;
  Bells b = make_bells();
  const pid_t pid = fork_child([&] {
    for (uint32_t i = 0; i < kIterations; ++i) {
      const WaitResult r = b.ping->wait_for(i, 5s);
      if (!r.rung || r.sequence != i + 1) return 2;
      b.pong->ring();
    }
    return 0;
  });
  const auto t0 = Clock::now();
  for (uint32_t i = 0; i < kIterations; ++i) {
    b.ping->ring();
    const WaitResult r = b.pong->wait_for(i, 5s);
    ASSERT_TRUE(r.rung) << "lost wake-up at iteration " << i;
    ASSERT_EQ(r.sequence, i + 1);
  }
  const auto elapsed = Clock::now() - t0;
  ::sched_setaffinity(0, sizeof saved, &saved);
  EXPECT_EQ(wait_child(pid), 0);
  RecordProperty("round_trip_ns", std::to_string(std::chrono::nanoseconds(elapsed).count() / kIterations));
}

TEST(Doorbell, BurstOfRingsFromAnotherProcessIsNeverMissed) {
  // The ringer does not wait for the waiter, so rings race with every stage of wait_for.
  constexpr uint32_t kRings = 50000;
  Bells b = make_bells();
  const pid_t pid = fork_child([&] {
    for (uint32_t i = 0; i < kRings; ++i) {
      b.ping->ring();
      if (i % 64 == 0) std::this_thread::yield();
    }
    return 0;
  });
  uint32_t seen = 0;
  while (seen != kRings) {
    const WaitResult r = b.ping->wait_for(seen, 5s, 0);
    ASSERT_TRUE(r.rung) << "stuck at " << seen << " of " << kRings;
    seen = r.sequence;
  }
  EXPECT_EQ(wait_child(pid), 0);
}

}  // namespace
}  // namespace segpipe::shm
