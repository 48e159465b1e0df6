// A fixed pool of worker threads for the CPU kernels. parallel_for splits [0, n) into contiguous
// chunks; every kernel computes each output element entirely inside one chunk with a fixed reduction
// order, so results do not depend on the number of threads or on which thread ran which chunk (a
// segment process with 1 thread and the in-process baseline with 2 agree bit for bit).
//
// Chunks are claimed dynamically: the calling thread starts on them at once and takes whatever the
// workers have not claimed, so a worker that is not scheduled (a busy machine, several segment
// processes on two cores) delays nothing; the caller waits only for chunks a worker actually took.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

namespace segpipe {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }
  // Chunks finished since the pool was made: a computation that moves shows it here (a worker
  // process's heartbeat stops when a request's work stops moving; workers/worker_support.h).
  uint64_t progress() const { return progress_.load(std::memory_order_relaxed); }
  // fn(begin, end) over contiguous chunks of [0, n); `grain` is the smallest chunk worth a thread.
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain = 1);

 private:
  void worker_loop();
  // Claims and runs chunks of job `job` until none is left; returns when the ticket moved on.
  void run_chunks(uint32_t job);
  std::vector<std::thread> workers_;
  // (job id << 32) | next chunk index: one CAS claims a chunk of exactly one job.
  std::atomic<uint64_t> ticket_{0};
  std::atomic<uint32_t> job_{0};   // workers sleep on it (futex) between jobs
  std::atomic<int64_t> done_{0};   // chunks finished in the current job; the caller waits on it
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> progress_{0};
  // The current job: written before ticket_ is published, stable until all its chunks are done.
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0;
  int64_t chunks_ = 0;
};

// The process-wide pool used by kernels when no pool is given; sized by set_default_threads().
ThreadPool& default_pool();
void set_default_threads(int threads);

}  // namespace segpipe
