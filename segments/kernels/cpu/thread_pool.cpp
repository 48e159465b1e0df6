#include "segments/kernels/cpu/thread_pool.h"

#include <immintrin.h>

#include <algorithm>
#include <memory>

namespace segpipe {

namespace {
// Decode issues hundreds of small parallel_for calls per token, so both sides spin briefly before
// sleeping (a wake-up through the kernel costs tens of microseconds). The spin is short: on a busy
// machine a thread that spins while its partner is descheduled burns the partner's core.
constexpr int kSpin = 4000;
}  // namespace

ThreadPool::ThreadPool(int threads) {
  threads = std::max(1, threads);
  for (int i = 1; i < threads; i++) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_acq_rel);
  generation_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  for (;;) {
    for (int s = 0; s < kSpin && generation_.load(std::memory_order_acquire) == seen; s++) _mm_pause();
    generation_.wait(seen, std::memory_order_acquire);  // returns at once if it already moved
    seen = generation_.load(std::memory_order_acquire);
    if (stop_.load(std::memory_order_acquire)) return;
    if (index < chunks_) {
      int64_t b = n_ * index / chunks_, e = n_ * (index + 1) / chunks_;
      if (b < e) (*fn_)(b, e);
    }
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) pending_.notify_one();
  }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain) {
  if (n <= 0) return;
  int chunks = static_cast<int>(std::min<int64_t>(size(), std::max<int64_t>(1, n / std::max<int64_t>(1, grain))));
  if (chunks <= 1 || workers_.empty()) {
    fn(0, n);
    return;
  }
  fn_ = &fn;
  n_ = n;
  chunks_ = chunks;
  pending_.store(static_cast<int>(workers_.size()), std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_acq_rel);
  generation_.notify_all();
  fn(0, n / chunks);
  for (int s = 0; s < kSpin && pending_.load(std::memory_order_acquire) != 0; s++) _mm_pause();
  for (int p; (p = pending_.load(std::memory_order_acquire)) != 0;) pending_.wait(p, std::memory_order_acquire);
}

namespace {
std::unique_ptr<ThreadPool>& pool_slot() {
  static std::unique_ptr<ThreadPool> p;
  return p;
}
}  // namespace

ThreadPool& default_pool() {
  auto& p = pool_slot();
  if (!p) p = std::make_unique<ThreadPool>(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  return *p;
}

void set_default_threads(int threads) { pool_slot() = std::make_unique<ThreadPool>(threads); }

}  // namespace segpipe
