// The worker processes of a shm run, one per segment: started from this executable with the arena's
// descriptor, asked over their channels, watched while we wait (a death is seen by waitpid within a
// poll of 50 ms, a stopped or wedged process by its heartbeat going stale for the plan's timeout_ms),
// restarted, and stopped. A lost worker is a SegmentLost naming the segment, its pid and how it ended.
#pragma once
#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "orchestrator/drivers/shm_run_arena.h"
#include "orchestrator/drivers/transport.h"
#include "shm/channel.h"

namespace segpipe {

class ShmWorkers {
 public:
  // Attaches a channel per segment; starts nothing.
  ShmWorkers(ShmRunArena& arena, const RunPlan& plan);
  ~ShmWorkers() { shutdown(); }

  // Starts every worker and asks each for its handshake: they all load at once.
  void start_all();
  // Returns once worker i has answered its handshake. Throws SegmentLost (for any worker found lost).
  void wait_ready(int i);
  // One request and its reply. Throws SegmentLost; a worker's own error as InputError / RuntimeFailure.
  std::vector<std::byte> call(int i, uint32_t op, std::span<const std::byte> args);
  // Replaces worker i with a fresh process and waits for its handshake. Its inputs, the KV caches and
  // the sequence state live in the arena, so repeating the interrupted step continues exactly where
  // the run was.
  void restart(int i);
  // Stops every worker (kStop, then SIGKILL) and reaps it. Idempotent; never throws.
  void shutdown() noexcept;
  // A segment of another host that a worker here calls through a proxy (an expert bank, multi-host
  // runs): found lost there (`how` names it and its host). Its status here reads dead, so the caller
  // stops waiting, and the caller's failure is reported as this loss. Any thread may call these.
  void note_lost_elsewhere(int i, const std::string& how);
  // ... restarted there: calls to it may go on.
  void revive_elsewhere(int i);

  const proto::HelloReply& hello(int i) const { return procs_[static_cast<size_t>(i)].hello; }
  long pid(int i) const { return static_cast<long>(procs_[static_cast<size_t>(i)].pid); }

 private:
  using Clock = std::chrono::steady_clock;
  struct Proc {
    pid_t pid = -1;
    std::optional<shm::Channel> ch;
    proto::HelloReply hello{};
    uint64_t hello_step = 0;
    bool ready = false;                // its handshake answered since it was (re)started
    uint64_t last_heartbeat = 0;
    Clock::time_point heartbeat_seen{};
    std::optional<int> reaped_status;  // reaped by restart()'s settling, not yet reported
    std::string ended;                 // how it ended, once reported (until it is restarted)
  };
  const ShmSegment& seg(size_t i) const { return arena_.segments()[i]; }
  void spawn(int i);
  void check_all();
  std::vector<std::byte> wait(int i, uint64_t step);
  void await_hello(int i);
  ShmRunArena& arena_;
  const RunPlan& plan_;
  std::vector<Proc> procs_;
  std::mutex elsewhere_mu_;
  std::map<int, std::string> lost_elsewhere_;  // segment -> how it was lost on its host
  bool stopped_ = false;
};

}  // namespace segpipe
