#include "segments/kernels/cpu/thread_pool.h"

#include <immintrin.h>

#include <algorithm>
#include <memory>

namespace segpipe {

ThreadPool::ThreadPool(int threads) {
  threads = std::max(1, threads);
  for (int i = 1; i < threads; i++) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    generation_++;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  for (;;) {
    // Decode issues hundreds of small parallel_for calls per token: spin briefly before sleeping
    // so that the next job starts without a wake-up's latency.
    int spins = 0;
    while (generation_.load(std::memory_order_acquire) == seen && spins < 20000) {
      _mm_pause();
      spins++;
    }
    if (generation_.load(std::memory_order_acquire) == seen) {
      std::unique_lock<std::mutex> lock(mu_);
      sleepers_++;
      cv_.wait(lock, [&] { return generation_.load() != seen; });
      sleepers_--;
    }
    seen = generation_.load(std::memory_order_acquire);
    if (stop_) return;
    if (index < chunks_) {
      int64_t b = n_ * index / chunks_, e = n_ * (index + 1) / chunks_;
      if (b < e) (*fn_)(b, e);
    }
    pending_.fetch_sub(1, std::memory_order_acq_rel);
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
  {
    std::lock_guard<std::mutex> lock(mu_);
    generation_.fetch_add(1, std::memory_order_acq_rel);
  }
  if (sleepers_.load() > 0) cv_.notify_all();
  int64_t e0 = n / chunks;
  fn(0, e0);
  while (pending_.load(std::memory_order_acquire) != 0) _mm_pause();
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
