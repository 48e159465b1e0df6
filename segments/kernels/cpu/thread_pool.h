// A fixed pool of worker threads for the CPU kernels. parallel_for splits [0, n) into contiguous
// chunks; every kernel computes each output element entirely inside one chunk with a fixed
// reduction order, so results do not depend on the number of threads (a segment process with 1
// thread and the in-process baseline with 2 agree bit for bit).
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
  // fn(begin, end) over contiguous chunks of [0, n); at most `size()` chunks, the caller runs one.
  // `grain` is the smallest chunk worth a thread.
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain = 1);

 private:
  void worker_loop(int index);
  std::vector<std::thread> workers_;
  std::atomic<uint64_t> generation_{0};  // bumped per job; workers wait on it (futex)
  std::atomic<int> pending_{0};          // workers still running the job; the caller waits on it
  std::atomic<bool> stop_{false};
  // The current job (valid while pending_ > 0).
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0;
  int chunks_ = 0;
};

// The process-wide pool used by kernels when no pool is given; sized by set_default_threads().
ThreadPool& default_pool();
void set_default_threads(int threads);

}  // namespace segpipe
