// Doorbell: a cross-process wake-up that lives in shared memory (one cache line).
//
//   Doorbell* bell = ...;                         // e.g. inside a ChannelControl, or arena.payload_as
//   uint32_t seen = bell->sequence();             // 1. read the sequence BEFORE checking your condition
//   if (!condition()) {                           // 2. check the shared state the bell announces
//     WaitResult r = bell->wait_for(seen, 100ms); // 3. sleep until the sequence moves or time is up
//   }
//   ... other process: publish the state, then bell->ring();
//
// It is a sequence counter, not a flag: ring() increments it, and wait_for(seen) returns as soon as
// the counter differs from `seen`. A ring that lands anywhere after the waiter read `seen` therefore
// cannot be lost, whether it comes before, during or after the waiter falls asleep (FUTEX_WAIT
// re-checks the word in the kernel). Several rings may collapse into one wake-up: callers keep their
// real state elsewhere (see channel.h) and use the bell only to learn that it changed.
//
// Cost model: ring() is one locked add plus one load when nobody sleeps; it enters the kernel
// (FUTEX_WAKE) only when the sleeper count says a waiter is in, or about to enter, FUTEX_WAIT.
// wait_for() spins spin_count times with a pause instruction first (about 25 ns each on current
// x86 cores, so the default is a few microseconds), which catches fast replies without a syscall,
// then sleeps with FUTEX_WAIT. The futex is shared (not FUTEX_PRIVATE) because the waker is another
// process. The spin is skipped when the last ring came from the CPU the waiter is running on: the
// ringer is then most likely queued behind us on this CPU and cannot answer while we spin (on a
// 2-core machine this turns a 17 us round trip into a 5 us one when the scheduler co-locates the
// two processes). Keep timeouts short (e.g. 100 ms) and loop to let the caller check that the peer is alive.
//
// A zero-filled Doorbell is valid (sequence 0, nobody asleep): fresh arena memory needs no setup.
#pragma once
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace segpipe::shm {

inline constexpr uint32_t kDefaultSpinCount = 200;

struct WaitResult {
  bool rung = false;      // false: the timeout passed with the sequence still equal to `seen`
  uint32_t sequence = 0;  // the sequence observed last (pass it as `seen` to the next wait)
};

class alignas(64) Doorbell {
 public:
  // The current sequence (acquire: data published before the matching ring() is visible).
  uint32_t sequence() const noexcept;
  // Increments the sequence (release) and wakes sleepers, if any.
  void ring() noexcept;
  // Waits until sequence() != seen or timeout passes. timeout <= 0 checks once; a huge timeout
  // (nanoseconds::max()) waits forever. Spins spin_count pauses before sleeping (0: sleep at once).
  WaitResult wait_for(uint32_t seen, std::chrono::nanoseconds timeout,
                      uint32_t spin_count = kDefaultSpinCount) noexcept;
  // For the orchestrator after a peer died inside wait_for: its sleeper count stays behind and
  // would make every later ring() pay for a FUTEX_WAKE (harmless, just slower). Only call this
  // while no live process waits on this bell.
  void reset_sleepers() noexcept;

 private:
  // Plain integers accessed through std::atomic_ref: std::atomic itself is not trivially copyable,
  // and everything in shared memory must be. The atomic operations are identical (lock-free,
  // address-free), which is what makes them valid across processes.
  uint32_t seq_;         // the futex word
  uint32_t sleepers_;    // waiters in (or about to enter) FUTEX_WAIT
  uint32_t ringer_cpu_;  // 1 + the CPU of the last ring(); 0 = unknown. A hint only
  // alignas(64) pads the rest of the line: the two bells of a channel never false-share.
};

static_assert(sizeof(Doorbell) == 64);
static_assert(std::is_trivially_copyable_v<Doorbell> && std::is_standard_layout_v<Doorbell>);
static_assert(std::atomic_ref<uint32_t>::is_always_lock_free);
static_assert(std::atomic_ref<uint32_t>::required_alignment <= alignof(uint32_t));

}  // namespace segpipe::shm
