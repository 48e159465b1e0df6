#include "shm/channel.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "shm/arena.h"
#include "shm/arena_name.h"
#include "tests/shm/test_support.h"

namespace segpipe::shm {
namespace {

using namespace std::chrono_literals;
using segpipe::shm::testing::child_alive;
using segpipe::shm::testing::fork_child;
using segpipe::shm::testing::wait_child;
using Clock = std::chrono::steady_clock;

constexpr uint32_t kOpScale = 1;     // out[i] = in[i] * arg + step
constexpr uint32_t kOpShutdown = 2;  // worker exits
constexpr uint32_t kOpCrash = 3;     // worker dies mid-step
constexpr std::size_t kFloats = 4096;

// The shape the orchestrator uses: one channel per worker plus activation blocks in the arena.
struct Fixture {
  Arena arena;
  uint32_t channel, input, output;
};
Fixture make_fixture() {
  ArenaLayout layout;
  const uint32_t ch = layout.add_channel("worker");
  const uint32_t in = layout.add_block(BlockKind::kActivations, kFloats * sizeof(float), 4096, "in");
  const uint32_t out = layout.add_block(BlockKind::kActivations, kFloats * sizeof(float), 4096, "out");
  return Fixture{Arena::create(make_arena_name(), layout), ch, in, out};
}

template <typename T>
std::span<const std::byte> bytes_of(const T& v) {
  return std::as_bytes(std::span<const T, 1>(&v, 1));
}
template <typename T>
T value_of(std::span<const std::byte> b) {
  T v{};
  std::memcpy(&v, b.data(), std::min(sizeof v, b.size()));
  return v;
}

// A worker as a real segment would be: attach by name, serve steps in place until told to stop.
// ready_fd: where given, one byte is written to it once the worker knows its parent (the test's
// synchronization point for killing that parent).
int serve(const std::string& arena_name, uint32_t channel, uint32_t input, uint32_t output, int ready_fd = -1) {
  Arena arena = Arena::open(arena_name);
  Channel ch = Channel::attach(arena, channel);
  const pid_t parent = ::getppid();
  if (ready_fd >= 0 && ::write(ready_fd, "r", 1) != 1) return 98;
  const auto in = arena.payload_span<const float>(input);
  const auto out = arena.payload_span<float>(output);
  for (;;) {
    const Request rq = ch.wait_request(5s, [&] { return ::getppid() == parent; });
    if (!rq.ok()) return 10 + static_cast<int>(rq.status);
    if (rq.opcode == kOpShutdown) {
      ch.post_response(rq.step, 0);
      return 0;
    }
    if (rq.opcode == kOpCrash) ::raise(SIGKILL);
    if (rq.opcode != kOpScale) {
      ch.post_response(rq.step, -1, std::as_bytes(std::span("bad opcode")));
      continue;
    }
    const auto scale = value_of<float>(rq.args);
    for (std::size_t i = 0; i < in.size(); ++i) out[i] = in[i] * scale + static_cast<float>(rq.step);
    const double checksum = static_cast<double>(out[0]) + out[in.size() - 1];
    ch.post_response(rq.step, 0, bytes_of(checksum));
  }
}

TEST(Channel, RoundTripsAcrossProcessesWithPayloadInPlace) {
  Fixture f = make_fixture();
  const pid_t pid = fork_child([&] { return serve(f.arena.name(), f.channel, f.input, f.output); });
  Channel ch = Channel::attach(f.arena, f.channel);
  const auto in = f.arena.payload_span<float>(f.input);
  const auto out = f.arena.payload_span<const float>(f.output);
  auto alive = [&] { return child_alive(pid); };
  for (int round = 0; round < 2000; ++round) {
    for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i % 97) + static_cast<float>(round);
    const float scale = 0.5f + static_cast<float>(round % 3);
    const uint64_t step = ch.post_request(kOpScale, bytes_of(scale));
    ASSERT_EQ(step, static_cast<uint64_t>(round) + 1);
    const Response r = ch.wait_response(step, 5s, alive);
    ASSERT_TRUE(r.ok()) << to_string(r.status) << " at round " << round;
    ASSERT_EQ(r.code, 0);
    for (std::size_t i = 0; i < out.size(); i += 511) {
      ASSERT_EQ(out[i], in[i] * scale + static_cast<float>(step)) << "round " << round << " index " << i;
    }
    EXPECT_EQ(value_of<double>(r.reply), static_cast<double>(out[0]) + out[out.size() - 1]);
  }
  const uint64_t bye = ch.post_request(kOpShutdown);
  EXPECT_TRUE(ch.wait_response(bye, 5s, alive).ok());
  EXPECT_EQ(wait_child(pid), 0);
}

TEST(Channel, ReplyCarriesErrorText) {
  Fixture f = make_fixture();
  const pid_t pid = fork_child([&] { return serve(f.arena.name(), f.channel, f.input, f.output); });
  Channel ch = Channel::attach(f.arena, f.channel);
  const Response r = ch.wait_response(ch.post_request(77), 5s);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.code, -1);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(r.reply.data())), "bad opcode");
  ch.wait_response(ch.post_request(kOpShutdown), 5s);
  EXPECT_EQ(wait_child(pid), 0);
}

TEST(Channel, WaitResponseTimesOutWithoutConsumer) {
  Fixture f = make_fixture();
  Channel ch = Channel::attach(f.arena, f.channel);
  const uint64_t step = ch.post_request(kOpScale);
  const auto t0 = Clock::now();
  const Response r = ch.wait_response(step, 50ms);
  const auto elapsed = Clock::now() - t0;
  EXPECT_EQ(r.status, WaitStatus::kTimeout);
  EXPECT_GE(elapsed, 50ms) << "a wait never ends early";
  EXPECT_LT(elapsed, 30s) << "it ends (a bound that holds on a loaded machine)";
}

TEST(Channel, WaitRequestTimesOutWhenNothingIsPosted) {
  Fixture f = make_fixture();
  const Request r = Channel::attach(f.arena, f.channel).wait_request(20ms);
  EXPECT_EQ(r.status, WaitStatus::kTimeout);
}

// kPeerDead (not kTimeout) shows that the death was seen by the liveness poll, not by the deadline:
// no clock needed, so it holds on a loaded machine.
TEST(Channel, DeadWorkerIsDetectedBeforeTheTimeout) {
  Fixture f = make_fixture();
  Channel ch = Channel::attach(f.arena, f.channel);
  const pid_t pid = fork_child([&] { return serve(f.arena.name(), f.channel, f.input, f.output); });
  const uint64_t step = ch.post_request(kOpCrash);  // the worker SIGKILLs itself mid-step
  const Response r = ch.wait_response(step, 300s, [&] { return child_alive(pid); });
  EXPECT_EQ(r.status, WaitStatus::kPeerDead);
  EXPECT_EQ(wait_child(pid), 128 + SIGKILL);
}

TEST(Channel, ResetLetsARestartedWorkerContinue) {
  Fixture f = make_fixture();
  Channel ch = Channel::attach(f.arena, f.channel);
  pid_t pid = fork_child([&] { return serve(f.arena.name(), f.channel, f.input, f.output); });
  const uint64_t crashed = ch.post_request(kOpCrash);
  EXPECT_EQ(ch.wait_response(crashed, 30s, [&] { return child_alive(pid); }).status, WaitStatus::kPeerDead);
  wait_child(pid);
  EXPECT_TRUE(ch.request_pending());
  EXPECT_THROW(ch.post_request(kOpScale), std::logic_error) << "a dead step must be reset, not overwritten";

  ch.reset();
  EXPECT_FALSE(ch.request_pending());
  pid = fork_child([&] { return serve(f.arena.name(), f.channel, f.input, f.output); });
  const float scale = 2.0f;
  f.arena.payload_span<float>(f.input)[3] = 4.0f;
  const uint64_t step = ch.post_request(kOpScale, bytes_of(scale));
  EXPECT_EQ(step, crashed + 1) << "step numbers keep increasing across a reset";
  const Response r = ch.wait_response(step, 5s, [&] { return child_alive(pid); });
  ASSERT_TRUE(r.ok()) << to_string(r.status);
  EXPECT_EQ(f.arena.payload_span<const float>(f.output)[3], 4.0f * 2.0f + static_cast<float>(step));
  ch.wait_response(ch.post_request(kOpShutdown), 5s);
  EXPECT_EQ(wait_child(pid), 0);
}

TEST(Channel, WorkerThatAttachesLateFindsThePendingRequest) {
  Fixture f = make_fixture();
  Channel ch = Channel::attach(f.arena, f.channel);
  const uint64_t step = ch.post_request(kOpShutdown);  // before the worker exists
  const pid_t pid = fork_child([&] { return serve(f.arena.name(), f.channel, f.input, f.output); });
  EXPECT_TRUE(ch.wait_response(step, 5s).ok());
  EXPECT_EQ(wait_child(pid), 0);
}

TEST(Channel, WorkerSeesOrchestratorDeath) {
  Fixture f = make_fixture();
  // Grandchild serves; its parent (the "orchestrator") dies; wait_request reports kPeerDead.
  int fds[2], ready[2];
  ASSERT_EQ(::pipe(fds), 0);
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t middle = fork_child([&] {
    const pid_t worker = ::fork();
    if (worker == 0) {
      ::close(fds[0]);
      ::close(ready[0]);
      const int code = serve(f.arena.name(), f.channel, f.input, f.output, ready[1]);
      const char c = static_cast<char>(code);
      if (::write(fds[1], &c, 1) != 1) ::_exit(1);
      ::_exit(0);
    }
    // Die only once the worker has recorded us as its parent (else it would watch init instead).
    ::close(ready[1]);
    char r = 0;
    return ::read(ready[0], &r, 1) == 1 ? 0 : 1;
  });
  ::close(fds[1]);
  ::close(ready[0]);
  ::close(ready[1]);
  EXPECT_EQ(wait_child(middle), 0);
  char code = 0;
  ASSERT_EQ(::read(fds[0], &code, 1), 1);
  ::close(fds[0]);
  // kPeerDead, not the 5 s timeout of serve's wait: the death was seen by the liveness poll.
  EXPECT_EQ(code, 10 + static_cast<int>(WaitStatus::kPeerDead));
}

TEST(Channel, ProtocolMisuseThrows) {
  Fixture f = make_fixture();
  Channel ch = Channel::attach(f.arena, f.channel);
  std::byte big[kChannelArgsBytes + 1] = {};
  EXPECT_THROW(ch.post_request(kOpScale, big), std::invalid_argument);
  EXPECT_THROW(ch.post_response(1, 0), std::logic_error) << "nothing is pending";
  const uint64_t step = ch.post_request(kOpScale);
  EXPECT_THROW(ch.post_response(step + 1, 0), std::logic_error);
  EXPECT_THROW(ch.post_response(step, 0, big), std::invalid_argument);
  ch.post_response(step, 0);
  EXPECT_THROW(ch.post_response(step, 0), std::logic_error) << "answered twice";
  EXPECT_TRUE(ch.wait_response(step, 0ns).ok());
}

TEST(Channel, AttachRefusesBlocksThatAreNotChannels) {
  Fixture f = make_fixture();
  EXPECT_THROW(Channel::attach(f.arena, f.input), ShmError);
  EXPECT_THROW(Channel::attach(f.arena, 99), std::out_of_range);
}

}  // namespace
}  // namespace segpipe::shm
