#include "segments/kernels/cpu/thread_pool.h"

#include <algorithm>
#include <memory>

#include "segments/kernels/cpu/simd8.h"

namespace segpipe {

namespace {
// Decode issues hundreds of small parallel_for calls per token, so workers spin briefly before
// sleeping (a wake-up through the kernel costs tens of microseconds). Kept short: on a busy machine a
// spinning thread takes a core from someone else.
constexpr int kSpin = 4000;
}  // namespace

ThreadPool::ThreadPool(int threads) {
  threads = std::max(1, threads);
  for (int i = 1; i < threads; i++) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_release);
  job_.fetch_add(1, std::memory_order_acq_rel);
  job_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::run_chunks(uint32_t job) {
  uint64_t t = ticket_.load(std::memory_order_acquire);
  for (;;) {
    if (static_cast<uint32_t>(t >> 32) != job) return;
    // Fields of `job` are stable while one of its chunks is unclaimed or running; read after the CAS.
    if (static_cast<int64_t>(t & 0xffffffffu) >= chunks_) return;
    if (!ticket_.compare_exchange_weak(t, t + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
    int64_t c = static_cast<int64_t>(t & 0xffffffffu);
    int64_t b = n_ * c / chunks_, e = n_ * (c + 1) / chunks_;
    if (b < e) (*fn_)(b, e);
    progress_.fetch_add(1, std::memory_order_relaxed);
    if (done_.fetch_add(1, std::memory_order_acq_rel) + 1 == chunks_) done_.notify_one();
    t = ticket_.load(std::memory_order_acquire);
  }
}

void ThreadPool::worker_loop() {
  uint32_t seen = 0;
  for (;;) {
    for (int s = 0; s < kSpin && job_.load(std::memory_order_acquire) == seen; s++) simd::cpu_relax();
    job_.wait(seen, std::memory_order_acquire);
    seen = job_.load(std::memory_order_acquire);
    if (stop_.load(std::memory_order_acquire)) return;
    run_chunks(seen);
  }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain) {
  if (n <= 0) return;
  int64_t by_grain = std::max<int64_t>(1, n / std::max<int64_t>(1, grain));
  // A few chunks per thread: a late worker still finds work, and a slow chunk does not hold all.
  int64_t chunks = std::min<int64_t>(by_grain, 4 * static_cast<int64_t>(size()));
  if (chunks <= 1 || workers_.empty()) {
    fn(0, n);
    progress_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  uint32_t job = job_.load(std::memory_order_relaxed) + 1;
  fn_ = &fn;
  n_ = n;
  chunks_ = chunks;
  done_.store(0, std::memory_order_relaxed);
  ticket_.store(static_cast<uint64_t>(job) << 32, std::memory_order_release);
  job_.store(job, std::memory_order_release);
  job_.notify_all();
  run_chunks(job);
  for (int s = 0; s < kSpin && done_.load(std::memory_order_acquire) != chunks; s++) simd::cpu_relax();
  for (int64_t d; (d = done_.load(std::memory_order_acquire)) != chunks;) done_.wait(d, std::memory_order_acquire);
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
