// Messages between the processes of an MPI job (one per host of a multi-host run): a fixed header and
// an optional payload of bytes, point to point, with deadlines. Knows no model: the network transport
// (orchestrator/drivers/net_transport.h) gives the headers their meaning.
//
// Why MPI: the launcher (mpirun, srun) starts the processes on the hosts and hands them the job's
// addresses, and the library moves bytes over whatever fabric the job has (TCP, InfiniBand through
// UCX), zero-copy where the fabric allows it (docs/multi-host.md).
//
// Threads: every call takes one lock (the job is initialized MPI_THREAD_SERIALIZED), so a thread that
// sends heartbeats and one that moves tensors can share the link.
#pragma once
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

namespace segpipe::net {

// Where this process stands in an MPI job, read from the launcher's environment (Open MPI, PMIx,
// Slurm/PMI); nullopt when no launcher started it.
struct JobPlace {
  int rank = 0;
  int size = 1;
};
std::optional<JobPlace> launched_job();

// A message's fixed part. What op and the fields mean is the user's business.
struct Header {
  uint32_t op = 0;
  int32_t segment = -1;
  int64_t a = 0, b = 0;
  int32_t c = 0, d = 0;
  uint64_t payload_bytes = 0;  // bytes of the payload message that follows (0: none)
};
static_assert(std::is_trivially_copyable_v<Header>);

struct Message {
  int from = -1;
  Header h;
  std::vector<std::byte> payload;
};

class Link {
 public:
  // MPI_Init_thread; the process must have been started by an MPI launcher (launched_job()).
  Link(int* argc, char*** argv);
  ~Link();  // MPI_Finalize (unless aborted)
  Link(const Link&) = delete;
  Link& operator=(const Link&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }

  // Returns once the peer has the message. Throws std::runtime_error (and marks the link lost) when the
  // peer takes nothing for the send timeout.
  void send(int to, const Header& h, std::span<const std::byte> payload = {});
  void set_send_timeout(std::chrono::milliseconds t) { send_timeout_ = t; }
  // The next message from `from`, or nullopt when `timeout` passes without one. Messages from other
  // ranks that arrive meanwhile are kept for their own receive.
  std::optional<Message> receive(int from, std::chrono::milliseconds timeout);
  // The next message from any rank, or nullopt after timeout.
  std::optional<Message> receive_any(std::chrono::milliseconds timeout);
  // The oldest message that `accept` takes (by its sender and header), or nullopt after timeout. The
  // others stay queued for their own receive: threads that wait for different messages from the same
  // peer (a stage's answer, an expert bank's) never take each other's.
  using Accept = std::function<bool(int from, const Header& h)>;
  std::optional<Message> receive_if(const Accept& accept, std::chrono::milliseconds timeout);
  // Time of the last message from `from` (receive or a drop below).
  std::chrono::steady_clock::time_point last_heard(int from) const;
  // Ends the whole job with this exit status (the launcher returns it), without waiting for peers.
  [[noreturn]] void abort(int code);
  // Messages with this op only say "still here": they update last_heard() and are never queued.
  void set_beat_op(uint32_t op) { beat_op_ = op; }
  // A peer was found lost: leaving the job cleanly (MPI_Finalize waits for every peer) would hang, so
  // the process must end with abort().
  void mark_lost() { lost_ = true; }
  bool lost() const { return lost_; }

 private:
  bool poll_one();  // takes one message if one is there; true if it did
  std::optional<Message> take(const Accept& accept, std::chrono::milliseconds timeout);
  mutable std::mutex mu_;
  int rank_ = 0, size_ = 1;
  bool finalized_ = false;
  uint32_t beat_op_ = 0;
  std::atomic<bool> lost_{false};
  std::vector<std::deque<Message>> queued_;  // per source
  struct Outgoing;  // a message being sent (mpi_link.cpp)
  std::vector<std::unique_ptr<Outgoing>> abandoned_;  // sends to a lost peer: MPI may still read them
  std::chrono::milliseconds send_timeout_{10000};
  std::vector<std::chrono::steady_clock::time_point> heard_;
};

}  // namespace segpipe::net
