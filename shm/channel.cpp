#include "shm/channel.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <stdexcept>
#include <string>

#include "shm/arena.h"
#include "shm/shm_error.h"

namespace segpipe::shm {
namespace {

using Clock = std::chrono::steady_clock;

uint64_t load_acquire(const uint64_t& v) {
  return std::atomic_ref<uint64_t>(const_cast<uint64_t&>(v)).load(std::memory_order_acquire);
}
void store_release(uint64_t& v, uint64_t value) {
  std::atomic_ref<uint64_t>(v).store(value, std::memory_order_release);
}

Clock::time_point deadline_after(std::chrono::nanoseconds timeout) {
  const auto now = Clock::now();
  if (timeout >= Clock::time_point::max() - now) return Clock::time_point::max();
  return now + timeout;
}

// Waits on `bell` until ready() holds, the deadline passes or alive() says the peer is gone.
// The sequence is read before ready() is checked (see doorbell.h), so no ring is ever lost.
template <typename Ready>
WaitStatus wait_until(Doorbell& bell, Ready ready, std::chrono::nanoseconds timeout, const AliveFn& alive,
                      std::chrono::nanoseconds poll_interval, uint32_t spin_count) {
  const auto deadline = deadline_after(timeout);
  if (poll_interval <= std::chrono::nanoseconds::zero()) poll_interval = kDefaultPollInterval;
  auto next_alive_check = deadline_after(poll_interval);
  for (;;) {
    const uint32_t seen = bell.sequence();
    if (ready()) return WaitStatus::kOk;
    const auto now = Clock::now();
    if (alive && now >= next_alive_check) {
      if (!alive()) return ready() ? WaitStatus::kOk : WaitStatus::kPeerDead;
      next_alive_check = now + poll_interval;
    }
    if (now >= deadline) return WaitStatus::kTimeout;
    const auto until = alive ? std::min(deadline, next_alive_check) : deadline;
    bell.wait_for(seen, std::chrono::duration_cast<std::chrono::nanoseconds>(until - now), spin_count);
  }
}

}  // namespace

const char* to_string(WaitStatus status) {
  switch (status) {
    case WaitStatus::kOk: return "ok";
    case WaitStatus::kTimeout: return "timeout";
    case WaitStatus::kPeerDead: return "peer dead";
  }
  return "?";
}

Channel Channel::attach(const Arena& arena, uint32_t index) {
  const BlockHeader& h = arena.block_header(index);
  if (h.kind != static_cast<uint16_t>(BlockKind::kChannel)) {
    throw ShmError("shm arena '" + arena.name() + "': block " + std::to_string(index) + " ('" + h.label +
                   "') has kind " + std::to_string(h.kind) + ", not a channel");
  }
  return Channel(arena.payload_as<ChannelControl>(index));
}

uint64_t Channel::post_request(uint32_t opcode, std::span<const std::byte> args) {
  if (args.size() > kChannelArgsBytes) {
    throw std::invalid_argument("shm channel: request args of " + std::to_string(args.size()) +
                                " bytes exceed " + std::to_string(kChannelArgsBytes));
  }
  if (request_pending()) {
    throw std::logic_error("shm channel: step " + std::to_string(last_request_step()) +
                           " is still pending; wait for its response or reset() the channel");
  }
  // Only the producer writes request_step, so a plain read of our own last value is exact.
  const uint64_t step = c_->request_step + 1;
  c_->opcode = opcode;
  c_->args_bytes = static_cast<uint32_t>(args.size());
  if (!args.empty()) std::memcpy(c_->args, args.data(), args.size());
  store_release(c_->request_step, step);  // publishes opcode, args and any payload written before
  c_->request_bell.ring();
  return step;
}

Response Channel::wait_response(uint64_t step, std::chrono::nanoseconds timeout, const AliveFn& alive,
                                std::chrono::nanoseconds poll_interval) const {
  const WaitStatus s = wait_until(
      c_->response_bell, [&] { return load_acquire(c_->response_step) == step; }, timeout, alive, poll_interval,
      spin_count_);
  Response r;
  r.status = s;
  r.step = step;
  if (s == WaitStatus::kOk) {
    r.code = c_->code;
    r.reply = std::span<const std::byte>(c_->reply, std::min<std::size_t>(c_->reply_bytes, kChannelReplyBytes));
  }
  return r;
}

Request Channel::wait_request(std::chrono::nanoseconds timeout, const AliveFn& alive,
                              std::chrono::nanoseconds poll_interval) const {
  const WaitStatus s =
      wait_until(c_->request_bell, [&] { return request_pending(); }, timeout, alive, poll_interval, spin_count_);
  Request r;
  r.status = s;
  if (s == WaitStatus::kOk) {
    r.step = load_acquire(c_->request_step);
    r.opcode = c_->opcode;
    r.args = std::span<const std::byte>(c_->args, std::min<std::size_t>(c_->args_bytes, kChannelArgsBytes));
  }
  return r;
}

void Channel::post_response(uint64_t step, int32_t code, std::span<const std::byte> reply) {
  if (reply.size() > kChannelReplyBytes) {
    throw std::invalid_argument("shm channel: reply of " + std::to_string(reply.size()) + " bytes exceeds " +
                                std::to_string(kChannelReplyBytes));
  }
  const uint64_t pending = load_acquire(c_->request_step);
  if (step != pending || load_acquire(c_->response_step) == pending) {
    throw std::logic_error("shm channel: response for step " + std::to_string(step) +
                           " but the pending request is " +
                           (request_pending() ? "step " + std::to_string(pending) : std::string("none")));
  }
  c_->code = code;
  c_->reply_bytes = static_cast<uint32_t>(reply.size());
  if (!reply.empty()) std::memcpy(c_->reply, reply.data(), reply.size());
  store_release(c_->response_step, step);  // publishes code, reply and the output payloads
  c_->response_bell.ring();
}

void Channel::reset() {
  store_release(c_->response_step, load_acquire(c_->request_step));
  c_->code = 0;
  c_->reply_bytes = 0;
  c_->request_bell.reset_sleepers();
  c_->response_bell.reset_sleepers();
  ++c_->resets;
}

bool Channel::request_pending() const {
  return load_acquire(c_->request_step) != load_acquire(c_->response_step);
}

uint64_t Channel::last_request_step() const { return load_acquire(c_->request_step); }

}  // namespace segpipe::shm
