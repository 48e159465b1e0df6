// What rank 0 (the orchestrator) and the host agents say to each other (net/mpi_link.h carries it).
// Every request names a segment by its index in the plan, and a port as in chain.h.
#pragma once
#include <cstdint>

#include "orchestrator/drivers/chain.h"

namespace segpipe::multihost {

enum Op : uint32_t {
  // rank 0 -> agent
  kOpen = 1,   // payload: {"plan", "capture_tokens", "cuda"} JSON; the agent starts its host's segments
  kReady,      // segment: wait until it has loaded
  kBegin,      // a: T, b: pos0, c: flags (1 all_logits, 2 observe, 4 media); payload: the ids [T] int32, then the media
  kRun,        // segment; a: in port, b: out port
  kSendPort,   // a: port, b: T, c: to rank: send the port's [T, H] floats there (kPortData)
  kRecvPort,   // a: port, b: T, c: from rank: the next kPortData from there is that port
  kRestart,    // segment
  kReports,    // -> kReportsData
  kClose,      // stop the host's segments; the agent waits for the next kOpen or kExit
  kExit,       // the job ends: the agent leaves it
  kBeat,       // both ways, every 100 ms: "still here" (consumed by the link, never queued)
  // agent -> rank 0 (or agent -> agent: kPortData)
  kDone,         // c: the request's op
  kLost,         // segment: lost (payload: how, as text); c: 1 when the segment's host is lost with it
  kFailed,       // c: 2 bad input / 3 runtime failure (payload: the message)
  kTensor,       // a: boundary (pack_boundary), b: rows, c: cols; payload floats
  kRoute,        // a: layer, b: T, c: k; payload: experts int32 [T, k] then weights float [T, k]
  kLogits,       // payload: the logits floats
  kPortData,     // payload: a port's floats
  kReportsData,  // payload: JSON array of reports
  // Expert banks on another host than the layers segment they serve (bank_exchange.h): the layers
  // host's proxy -> the bank's host, and back.
  kBankCall,    // segment: the bank; a: layer, b: T, c: k; payload: x [T, H] f32, experts [T, k] i32, weights [T, k] f32
  kBankSlots,   // segment: the bank; a: rows; payload: the bank's slot rows [rows, H] f32, in slot order
  kBankFailed,  // segment: the bank (or the segment found lost); c: 1 lost, 2 bad input, 3 runtime failure;
                // payload: the message
  kRevive,      // rank 0 -> agent; segment: a bank of another host was restarted: calls to it may go on
  // Qwen3-Omni media (media_wire.h). A step's media ride with its kBegin (c: flag 4, after the ids).
  kEncode,   // rank 0 -> agent; segment: an encoder; a: frames, b: grids; payload: pack_encode's
  kEncoded,  // agent -> rank 0, before its kDone: payload: the encoder's rows
};

inline int64_t pack_boundary(const Boundary& b) { return static_cast<int64_t>(b.kind) << 32 | static_cast<uint32_t>(b.layer + 1); }
inline Boundary unpack_boundary(int64_t v) {
  return Boundary{static_cast<Boundary::Kind>(v >> 32), static_cast<int>(static_cast<uint32_t>(v & 0xffffffff)) - 1};
}
inline int64_t pack_port(const Port& p) { return static_cast<int64_t>(p.kind) << 40 | pack_boundary(p.boundary); }
inline Port unpack_port(int64_t v) {
  return Port{static_cast<Port::Kind>(v >> 40), unpack_boundary(v & ((int64_t{1} << 40) - 1))};
}

}  // namespace segpipe::multihost
