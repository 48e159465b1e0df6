// The serve loop of a segment process, whatever its backend: requests from the orchestrator's channel,
// answered in order until kStop or the orchestrator's death. The CPU worker (worker_main.cpp) and the GPU
// worker (cuda_worker.cpp) differ only in the ServedSegment they hand it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "segments/core/errors.h"
#include "segments/model/tensor_map.h"
#include "shm/channel.h"
#include "workers/protocol.h"

namespace segpipe::worker {

class ServedSegment {
 public:
  virtual ~ServedSegment() = default;
  // What the segment mapped or uploaded (kHello counts them, kNames lists them).
  virtual const std::vector<LoadedTensor>& loaded() const = 0;
  // kHello's weight bytes (the GPU reports what it uploaded, which may differ from the mapped bytes).
  virtual uint64_t weight_bytes() const {
    uint64_t b = 0;
    for (auto& t : loaded()) b += t.bytes;
    return b;
  }
  // kReport: the backend adds its counters (selective expert loading) to the memory figures.
  virtual void add_to_report(proto::ReportReply&) const {}
  virtual void step(const proto::StepArgs& a) = 0;
  // kExperts: the request's arguments as sent (their type differs by backend; see args_as).
  virtual void experts(std::span<const std::byte> args) = 0;
  // kEncode (an encoder segment): EncodeArgs.
  virtual void encode(std::span<const std::byte>) { throw RuntimeFailure("this segment runs no encoder on this backend"); }
};

// A request's arguments as T, refused when the request is too short (a malformed request fails the
// request, it never reads past the channel's buffer).
template <class T>
T args_as(std::span<const std::byte> args) {
  T a{};
  if (args.size() < sizeof a) throw RuntimeFailure("malformed request: " + std::to_string(args.size()) + " bytes of arguments");
  std::memcpy(&a, args.data(), sizeof a);
  return a;
}

// Serves until kStop (returns 0) or the orchestrator's death (returns 3). Failures of a request are
// answered (kBadInput / kFailed with the message), never thrown.
int serve(const proto::WorkerSpec& spec, shm::Channel& ch, proto::SegmentStatus* status, ServedSegment& seg);

}  // namespace segpipe::worker
