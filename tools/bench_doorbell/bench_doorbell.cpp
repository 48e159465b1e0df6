// Round-trip latency between two processes through a segpipe arena, with its ceiling and anchor:
//
//   busy-poll floor  both sides spin on a shared counter: the cost of moving cache lines between
//                    cores, i.e. what the hardware allows; nothing can be faster
//   doorbell         Doorbell::ring / wait_for with the default spin (the configuration we ship)
//   doorbell spin=0  every wait sleeps in FUTEX_WAIT and every ring pays FUTEX_WAKE: the slow path
//   channel          Channel post_request / wait_request / post_response / wait_response
//   pipe             1 byte each way through two pipes: the classic kernel IPC anchor
//
// Each case runs pinned (parent on CPU 0, child on CPU 1) when there are >= 2 CPUs, and unpinned.
// One round trip = the parent rings and waits for the child's answer; the parent timestamps each.
//
// Usage: segpipe_bench_doorbell [--iters N] [--warmup N] [--spin N]
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <string>
#include <vector>

#include "shm/arena.h"
#include "shm/arena_name.h"
#include "shm/channel.h"
#include "shm/cleanup.h"
#include "shm/doorbell.h"

// One pause of a spin-wait (x86 PAUSE, ARM64 YIELD): tells the core, and a sibling hardware thread,
// that this thread only waits.
static inline void spin_pause() {
#if defined(__x86_64__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}


namespace {

using namespace segpipe::shm;
using Clock = std::chrono::steady_clock;
constexpr auto kTimeout = std::chrono::seconds(10);

struct Options {
  uint32_t iters = 200000;
  uint32_t warmup = 20000;
  uint32_t spin = kDefaultSpinCount;
};

struct Stats {
  double p50, p99, p999, mean, max;
};

Stats summarize(std::vector<double>& us) {
  std::sort(us.begin(), us.end());
  auto at = [&](double q) { return us[std::min(us.size() - 1, static_cast<std::size_t>(q * us.size()))]; };
  double sum = 0;
  for (double v : us) sum += v;
  return {at(0.50), at(0.99), at(0.999), sum / us.size(), us.back()};
}

bool pin_to(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof set, &set) == 0;
}

// One case: `child` answers `total` round trips; `round_trip` performs one from the parent side.
// Returns microseconds per measured round trip (warm-up excluded), or empty on failure.
std::vector<double> run_case(const Options& o, bool pinned, const std::function<bool(uint32_t)>& child,
                             const std::function<bool(uint32_t)>& round_trip) {
  const uint32_t total = o.warmup + o.iters;
  cpu_set_t saved;
  sched_getaffinity(0, sizeof saved, &saved);
  if (pinned) pin_to(0);
  const pid_t pid = fork();
  if (pid == 0) {
    if (pinned) pin_to(1);
    for (uint32_t i = 0; i < total; ++i) {
      if (!child(i)) _exit(2);
    }
    _exit(0);
  }
  std::vector<double> samples;
  samples.reserve(o.iters);
  bool ok = true;
  for (uint32_t i = 0; i < total && ok; ++i) {
    const auto t0 = Clock::now();
    ok = round_trip(i);
    const auto t1 = Clock::now();
    if (i >= o.warmup) samples.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  if (!ok) kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  sched_setaffinity(0, sizeof saved, &saved);
  if (!ok || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "round trip failed (timeout or child error)\n");
    return {};
  }
  return samples;
}

// Cost of one pause instruction, to translate the spin count into time. The minimum of a few short
// runs: on a loaded machine a longer run mostly measures preemption.
double pause_ns() {
  constexpr int kN = 20000;
  double best = 1e9;
  for (int run = 0; run < 9; ++run) {
    const auto t0 = Clock::now();
    for (int i = 0; i < kN; ++i) spin_pause();
    best = std::min(best, std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / kN);
  }
  return best;
}

void print_row(const char* name, bool pinned, std::vector<double>& samples, double floor_p50) {
  if (samples.empty()) {
    std::printf("| %-16s | %-8s | failed |\n", name, pinned ? "pinned" : "unpinned");
    return;
  }
  const Stats s = summarize(samples);
  std::printf("| %-16s | %-8s | %7.2f | %7.2f | %7.2f | %7.2f | %8.1f | %6.1fx |\n", name,
              pinned ? "pinned" : "unpinned", s.p50, s.p99, s.p999, s.mean, s.max,
              floor_p50 > 0 ? s.p50 / floor_p50 : 0.0);
}

double p50_of(std::vector<double>& v) { return v.empty() ? 0 : summarize(v).p50; }

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const auto value = static_cast<uint32_t>(std::strtoul(argv[i + 1], nullptr, 10));
    if (flag == "--iters") o.iters = value;
    else if (flag == "--warmup") o.warmup = value;
    else if (flag == "--spin") o.spin = value;
    else {
      std::fprintf(stderr, "usage: %s [--iters N] [--warmup N] [--spin N]\n", argv[0]);
      return 2;
    }
  }
  if (argc % 2 == 0 || o.iters == 0) {
    std::fprintf(stderr, "usage: %s [--iters N] [--warmup N] [--spin N]\n", argv[0]);
    return 2;
  }

  remove_stale_arenas();
  ArenaLayout layout;
  const uint32_t bells_block = layout.add_block(BlockKind::kDoorbells, 4 * sizeof(Doorbell), 64, "bells");
  const uint32_t channel_block = layout.add_channel("bench");
  Arena arena = Arena::create(make_arena_name(), layout);
  const auto bells = arena.payload_span<Doorbell>(bells_block);
  // Fresh bells per case, so every case starts at sequence 0.
  auto reset_bells = [&] { std::memset(static_cast<void*>(bells.data()), 0, bells.size_bytes()); };

  const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  const double pns = pause_ns();
  std::printf("segpipe_bench_doorbell: %ld CPUs, %u round trips after %u warm-up, spin %u (%.0f ns/pause, %.1f us)\n\n",
              cpus, o.iters, o.warmup, o.spin, pns, o.spin * pns / 1000);
  std::printf("| case             | cpus     | p50 us  | p99 us  | p99.9us | mean us | max us   | p50/floor |\n");
  std::printf("|------------------|----------|---------|---------|---------|---------|----------|---------|\n");

  std::vector<bool> modes;
  if (cpus >= 2) modes.push_back(true);
  modes.push_back(false);
  for (const bool pinned : modes) {
    // Busy-poll floor on the doorbells' sequence words, without any of their logic.
    reset_bells();
    auto* ping = reinterpret_cast<uint32_t*>(&bells[0]);
    auto* pong = reinterpret_cast<uint32_t*>(&bells[1]);
    auto spin_until = [](uint32_t* word, uint32_t value) {
      const auto deadline = Clock::now() + kTimeout;
      std::atomic_ref<uint32_t> a(*word);
      for (uint32_t n = 0; a.load(std::memory_order_acquire) != value; ++n) {
        spin_pause();
        if ((n & 0xffff) == 0 && Clock::now() > deadline) return false;
      }
      return true;
    };
    auto floor = run_case(
        o, pinned,
        [&](uint32_t i) {
          if (!spin_until(ping, i + 1)) return false;
          std::atomic_ref<uint32_t>(*pong).store(i + 1, std::memory_order_release);
          return true;
        },
        [&](uint32_t i) {
          std::atomic_ref<uint32_t>(*ping).store(i + 1, std::memory_order_release);
          return spin_until(pong, i + 1);
        });
    const double floor_p50 = p50_of(floor);
    print_row("busy-poll floor", pinned, floor, floor_p50);

    for (const uint32_t spin : {o.spin, 0u}) {
      reset_bells();
      auto samples = run_case(
          o, pinned,
          [&](uint32_t i) {
            if (!bells[0].wait_for(i, kTimeout, spin).rung) return false;
            bells[1].ring();
            return true;
          },
          [&](uint32_t i) {
            bells[0].ring();
            return bells[1].wait_for(i, kTimeout, spin).rung;
          });
      print_row(spin == 0 ? "doorbell spin=0" : "doorbell", pinned, samples, floor_p50);
    }

    {
      std::memset(static_cast<void*>(arena.payload(channel_block).data()), 0, sizeof(ChannelControl));
      Channel ch = Channel::attach(arena, channel_block);
      ch.set_spin_count(o.spin);
      auto samples = run_case(
          o, pinned,
          [&](uint32_t) {
            const Request rq = ch.wait_request(kTimeout);
            if (!rq.ok()) return false;
            ch.post_response(rq.step, 0);
            return true;
          },
          [&](uint32_t) { return ch.wait_response(ch.post_request(1), kTimeout).ok(); });
      print_row("channel", pinned, samples, floor_p50);
    }

    {
      int to_child[2], to_parent[2];
      if (pipe(to_child) != 0 || pipe(to_parent) != 0) return 1;
      char byte = 'x';
      auto samples = run_case(
          o, pinned,
          [&](uint32_t) { return read(to_child[0], &byte, 1) == 1 && write(to_parent[1], &byte, 1) == 1; },
          [&](uint32_t) { return write(to_child[1], &byte, 1) == 1 && read(to_parent[0], &byte, 1) == 1; });
      for (int fd : {to_child[0], to_child[1], to_parent[0], to_parent[1]}) close(fd);
      print_row("pipe", pinned, samples, floor_p50);
    }
  }
  return 0;
}
