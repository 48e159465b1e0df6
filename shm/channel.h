// Channel: a single-producer single-consumer request/response mailbox in shared memory.
// The orchestrator is the producer (posts requests), a segment worker the consumer (answers them).
//
//   // orchestrator                                   // worker
//   Channel ch = Channel::attach(arena, idx);         Channel ch = Channel::attach(arena, idx);
//   write activations into arena.payload(in)          for (;;) {
//   uint64_t step = ch.post_request(kOpForward, a);     Request rq = ch.wait_request(1s, parent_alive);
//   Response r = ch.wait_response(step, 30s,            if (!rq.ok()) { ...timeout / orchestrator gone... }
//                                 worker_alive);        read arena.payload(in), write arena.payload(out)
//   if (r.ok() && r.code == 0) read payload(out)        ch.post_response(rq.step, 0);
//                                                     }
//
// Only the control block travels through the channel: step number, opcode, status and small
// fixed-size argument / reply areas. Activations live in separate arena blocks, written in place by
// one process and read in place by the next: no copy, no serialization. Publishing the request step
// (release) and observing it (acquire) orders those payload writes, so payloads need no locks.
//
// State, not messages: a request is pending while request_step != response_step. A consumer that
// (re)attaches late still finds a request posted before it started, and a stale or duplicate
// doorbell ring never makes anyone act twice. The doorbells only say "look again".
//
// Failures: every wait has a timeout and an optional `alive` callback that is called every
// poll_interval (100 ms by default) while nothing arrives; when it returns false the wait ends with
// kPeerDead, so a dead process is noticed within about 100 ms rather than at the full timeout.
// If the worker dies mid-step the orchestrator sees kPeerDead/kTimeout, kills and reaps it, calls
// reset() and may post the step again to a restarted worker.
//
// Opcodes and status codes are the caller's: shm gives them no meaning (opcode 0 is fine too).
#pragma once
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <type_traits>

#include "shm/doorbell.h"

namespace segpipe::shm {

class Arena;

inline constexpr std::size_t kChannelArgsBytes = 256;
inline constexpr std::size_t kChannelReplyBytes = 256;
inline constexpr std::chrono::milliseconds kDefaultPollInterval{100};

// The shared part. All zero is the valid idle state, so a fresh arena block needs no setup.
// Each half sits on its own cache lines: the producer writes the request half, the consumer the
// response half, and neither side's writes invalidate the other's lines.
struct alignas(64) ChannelControl {
  Doorbell request_bell;   // rung by the producer after publishing request_step
  Doorbell response_bell;  // rung by the consumer after publishing response_step

  alignas(64) uint64_t request_step;  // last posted step (producer writes, release)
  uint32_t opcode;
  uint32_t args_bytes;
  std::byte args[kChannelArgsBytes];

  alignas(64) uint64_t response_step;  // last answered step (consumer writes, release)
  int32_t code;                        // the consumer's status for that step (0 = success by convention)
  uint32_t reply_bytes;
  std::byte reply[kChannelReplyBytes];

  alignas(64) uint64_t resets;  // how often reset() ran: diagnostics only
};
static_assert(std::is_trivially_copyable_v<ChannelControl> && std::is_standard_layout_v<ChannelControl>);
static_assert(alignof(ChannelControl) == 64);

enum class WaitStatus {
  kOk,        // the request / response arrived
  kTimeout,   // the timeout passed
  kPeerDead,  // the alive callback returned false
};
const char* to_string(WaitStatus status);

// Spans point into shared memory: valid until the producer posts the next request (args) or the
// consumer answers the next step (reply). Copy what you need to keep.
// What either wait gives back: whether the message arrived, and the step it belongs to.
struct Arrival {
  WaitStatus status = WaitStatus::kTimeout;
  uint64_t step = 0;
  bool ok() const { return status == WaitStatus::kOk; }
};
struct Request : Arrival {
  uint32_t opcode = 0;
  std::span<const std::byte> args;
};
struct Response : Arrival {
  int32_t code = 0;
  std::span<const std::byte> reply;
};

// Returns false once the peer process is gone (e.g. waitpid(pid, WNOHANG) != 0 in the
// orchestrator, getppid() changed in a worker). Called from the waiting thread.
using AliveFn = std::function<bool()>;

// A per-process handle; cheap to copy. Exactly one producer and one consumer per ChannelControl.
class Channel {
 public:
  explicit Channel(ChannelControl* control) : c_(control) {}
  // The channel in block `index`; throws ShmError if that block is not a channel.
  static Channel attach(const Arena& arena, uint32_t index);

  // --- producer (orchestrator) ---
  // Copies args (<= kChannelArgsBytes) into the control block, publishes the next step and rings.
  // Returns the step. Throws std::logic_error if the previous request was not answered (call
  // reset() after a failed step) and std::invalid_argument if args are too large.
  uint64_t post_request(uint32_t opcode, std::span<const std::byte> args = {});
  Response wait_response(uint64_t step, std::chrono::nanoseconds timeout, const AliveFn& alive = {},
                         std::chrono::nanoseconds poll_interval = kDefaultPollInterval) const;

  // --- consumer (worker) ---
  // Returns the pending request, waiting for one if none is pending yet.
  Request wait_request(std::chrono::nanoseconds timeout, const AliveFn& alive = {},
                       std::chrono::nanoseconds poll_interval = kDefaultPollInterval) const;
  // Answers `step` (must be the pending request's step) with a status code and an optional reply
  // (<= kChannelReplyBytes, e.g. an error message). Throws std::logic_error on a wrong step.
  void post_response(uint64_t step, int32_t code, std::span<const std::byte> reply = {});

  // --- orchestrator, recovery ---
  // Drops a pending request and clears the sleeper counts a dead process left behind. Call only
  // after the consumer process has been killed and reaped, and not while another thread of the
  // producer waits on this channel; the next post_request continues the
  // step numbering, so late writes from before the reset can never match a new step.
  void reset();
  bool request_pending() const;
  uint64_t last_request_step() const;

  // Spin before sleeping in the doorbells (see doorbell.h); 0 sleeps at once.
  void set_spin_count(uint32_t spins) { spin_count_ = spins; }
  ChannelControl* control() const { return c_; }

 private:
  ChannelControl* c_;
  uint32_t spin_count_ = kDefaultSpinCount;
};

}  // namespace segpipe::shm
