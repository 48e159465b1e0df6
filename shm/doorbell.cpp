#include "shm/doorbell.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <linux/futex.h>
#include <sys/syscall.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <ctime>

namespace segpipe::shm {
namespace {

// One pause of a spin-wait (x86 PAUSE, ARM64 YIELD): tells the core, and a sibling hardware thread,
// that this thread only waits.
inline void spin_pause() {
#if defined(__x86_64__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}


using Clock = std::chrono::steady_clock;

// FUTEX_WAIT takes a relative CLOCK_MONOTONIC timeout, the clock steady_clock uses on Linux.
void futex_wait(uint32_t* word, uint32_t expected, std::chrono::nanoseconds timeout) noexcept {
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(timeout);
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(secs.count());
  ts.tv_nsec = static_cast<long>((timeout - secs).count());
  // EAGAIN (word already changed), EINTR and ETIMEDOUT all mean "look again": the caller re-reads
  // the sequence and the clock, so the result is not needed here.
  syscall(SYS_futex, word, FUTEX_WAIT, expected, &ts, nullptr, 0);
}

void futex_wake_all(uint32_t* word) noexcept { syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0); }

Clock::time_point deadline_after(std::chrono::nanoseconds timeout) {
  const auto now = Clock::now();
  // Saturate: nanoseconds::max() means "forever" and must not overflow into the past.
  if (timeout >= Clock::time_point::max() - now) return Clock::time_point::max();
  return now + timeout;
}

}  // namespace

uint32_t Doorbell::sequence() const noexcept {
  return std::atomic_ref<uint32_t>(const_cast<uint32_t&>(seq_)).load(std::memory_order_acquire);
}

void Doorbell::ring() noexcept {
  std::atomic_ref<uint32_t> seq(seq_);
  std::atomic_ref<uint32_t> sleepers(sleepers_);
  // Dekker-style pairing with wait_for: we write seq then read sleepers; the waiter writes sleepers
  // then reads seq. Both sequentially consistent, so at least one side sees the other's write:
  // either we see the sleeper and wake it, or it sees the new sequence and does not sleep.
  // The hint shares the line we are about to write anyway; glibc's sched_getcpu reads rseq (~1 ns).
  std::atomic_ref<uint32_t>(ringer_cpu_).store(static_cast<uint32_t>(sched_getcpu() + 1), std::memory_order_relaxed);
  seq.fetch_add(1, std::memory_order_seq_cst);
  if (sleepers.load(std::memory_order_seq_cst) != 0) futex_wake_all(&seq_);
}

WaitResult Doorbell::wait_for(uint32_t seen, std::chrono::nanoseconds timeout, uint32_t spin_count) noexcept {
  std::atomic_ref<uint32_t> seq(seq_);
  uint32_t now = seq.load(std::memory_order_acquire);
  if (now != seen) return {true, now};
  if (timeout <= std::chrono::nanoseconds::zero()) return {false, now};

  // Spin first: a peer that answers within microseconds costs no syscall on either side
  // (the ringer skips FUTEX_WAKE because nobody registered as a sleeper). Not when the ringer last
  // ran on our CPU: it cannot ring while we occupy that CPU.
  if (spin_count != 0 &&
      std::atomic_ref<uint32_t>(ringer_cpu_).load(std::memory_order_relaxed) == static_cast<uint32_t>(sched_getcpu() + 1)) {
    spin_count = 0;
  }
  for (uint32_t i = 0; i < spin_count; ++i) {
    spin_pause();
    now = seq.load(std::memory_order_acquire);
    if (now != seen) return {true, now};
  }

  const auto deadline = deadline_after(timeout);
  std::atomic_ref<uint32_t> sleepers(sleepers_);
  for (;;) {
    sleepers.fetch_add(1, std::memory_order_seq_cst);
    now = seq.load(std::memory_order_seq_cst);
    if (now != seen) {
      sleepers.fetch_sub(1, std::memory_order_relaxed);
      return {true, now};
    }
    const auto remaining = deadline - Clock::now();
    if (remaining <= Clock::duration::zero()) {
      sleepers.fetch_sub(1, std::memory_order_relaxed);
      return {false, now};
    }
    futex_wait(&seq_, seen, remaining);
    sleepers.fetch_sub(1, std::memory_order_relaxed);
    now = seq.load(std::memory_order_acquire);
    if (now != seen) return {true, now};
  }
}

void Doorbell::reset_sleepers() noexcept {
  std::atomic_ref<uint32_t>(sleepers_).store(0, std::memory_order_seq_cst);
}

}  // namespace segpipe::shm
