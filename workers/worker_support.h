// Small pieces every worker kind (CPU and GPU) shares: reading its own memory figures, replying with
// a plain struct, and the fault-injection hook the failure tests use.
#pragma once
#include <signal.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <span>
#include <string>

#include <algorithm>
#include <vector>

#include "segments/kernels/cpu/linear.h"
#include "segments/model/tensor_map.h"
#include "shm/channel.h"
#include "workers/protocol.h"

namespace segpipe::worker {

// A field of /proc/self/status in kB (VmHWM:, VmRSS:).
inline uint64_t proc_status_kb(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  size_t n = std::strlen(key);
  while (std::getline(in, line))
    if (line.compare(0, n, key) == 0) return std::strtoull(line.c_str() + n + 1, nullptr, 10);
  return 0;
}

template <typename T>
std::span<const std::byte> bytes_of(const T& v) {
  return {reinterpret_cast<const std::byte*>(&v), sizeof(T)};
}

// Answers a names request: as many whole tensor names ('\n'-terminated) as fit in one reply, from
// the index the request carries on.
inline void post_names_page(shm::Channel& ch, const shm::Request& rq, const std::vector<LoadedTensor>& loaded) {
  uint64_t first = 0;
  std::memcpy(&first, rq.args.data(), std::min(rq.args.size(), sizeof first));
  std::string out;
  for (size_t i = first; i < loaded.size(); i++) {
    if (out.size() + loaded[i].name.size() + 1 > shm::kChannelReplyBytes) break;
    out += loaded[i].name + "\n";
  }
  ch.post_response(rq.step, proto::kOk, std::as_bytes(std::span<const char>(out.data(), out.size())));
}

// Answers a request with a status code and a one-line message (cut to the reply area).
inline void post_status(shm::Channel& ch, uint64_t step, int32_t code, std::string msg) {
  if (msg.size() > shm::kChannelReplyBytes) msg.resize(shm::kChannelReplyBytes);
  ch.post_response(step, code, std::as_bytes(std::span<const char>(msg.data(), msg.size())));
}

// Whether a worker busy with a request is still moving. The heartbeat thread beats only while the
// worker is idle, waiting on another segment, or has shown progress since the last beat: a compute
// thread spinning forever or a GPU kernel that never ends then stops the heartbeat, and after the
// pipeline's timeout_ms without one the orchestrator treats the segment as hung, as it does a
// stopped process. Progress is what the worker passes in: the CPU thread pool's finished chunks
// (each far shorter than any timeout); none on the GPU, where a whole request must then finish within
// the timeout (a step takes milliseconds there). One per worker process.
class BusyWatch {
 public:
  // A request's work starts / ends.
  void begin() { busy_.store(true, std::memory_order_relaxed); }
  void end() { busy_.store(false, std::memory_order_relaxed); }
  // Waiting on other segments (expert banks): their heartbeats answer for the wait, not ours.
  void pause() { paused_.fetch_add(1, std::memory_order_relaxed); }
  void resume() { paused_.fetch_sub(1, std::memory_order_relaxed); }
  // From the heartbeat thread at every tick: beat?
  bool moving(uint64_t progress) {
    const bool moved = progress != last_progress_;
    last_progress_ = progress;
    return !busy_.load(std::memory_order_relaxed) || paused_.load(std::memory_order_relaxed) > 0 || moved;
  }

 private:
  std::atomic<bool> busy_{false};
  std::atomic<int> paused_{0};
  uint64_t last_progress_ = 0;  // heartbeat thread only
};

inline BusyWatch& busy_watch() {
  static BusyWatch w;
  return w;
}

// One request's work, on every path out of it.
struct BusyScope {
  BusyScope() { busy_watch().begin(); }
  ~BusyScope() { busy_watch().end(); }
  BusyScope(const BusyScope&) = delete;
  BusyScope& operator=(const BusyScope&) = delete;
};

// Test hook for failure handling: SEGPIPE_FAULT="<segment>:<hello|step|experts>:<n>:<signal>" makes the
// first incarnation of that segment raise <signal> on itself when its n-th such request arrives
// (integration tests kill or stop segments at start-up and mid-generation this way, deterministically);
// signal 0 spins forever in the request's thread instead (wedged, its heartbeat thread alive).
struct FaultPlan {
  uint32_t op = 0;
  int at = 0, sig = 0, seen = 0;
  static FaultPlan from_env(const std::string& segment) {
    FaultPlan f;
    const char* e = std::getenv("SEGPIPE_FAULT");
    if (!e) return f;
    std::string s = e;
    auto a = s.find(':'), b = s.find(':', a + 1), c = s.find(':', b + 1);
    if (a == std::string::npos || b == std::string::npos || c == std::string::npos) return f;
    if (s.substr(0, a) != segment) return f;
    std::string op = s.substr(a + 1, b - a - 1);
    f.op = op == "hello"     ? uint32_t{proto::kHello}
           : op == "step"    ? uint32_t{proto::kStep}
           : op == "experts" ? uint32_t{proto::kExperts}
                             : 0u;
    f.at = std::atoi(s.substr(b + 1, c - b - 1).c_str());
    f.sig = std::atoi(s.substr(c + 1).c_str());
    return f;
  }
  void on(uint32_t opcode) {
    if (op == 0 || opcode != op || ++seen != at) return;
    if (sig != 0) raise(sig);
    for (volatile bool forever = true; forever;) {  // 0: a computation that never ends
    }
  }
};

}  // namespace segpipe::worker
