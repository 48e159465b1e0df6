#include "net/mpi_link.h"

#include <mpi.h>

#include <cstdlib>
#include <stdexcept>
#include <thread>

namespace segpipe::net {

namespace {
constexpr int kTagHeader = 1;
constexpr int kTagPayload = 2;
// A payload is sent as one message; MPI counts are ints.
constexpr uint64_t kMaxPayload = (uint64_t{1} << 31) - 1;
constexpr int kSpinProbes = 2000;

std::optional<int> env_int(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  if (*end || x < 0 || x > (1 << 24)) return std::nullopt;
  return static_cast<int>(x);
}
}  // namespace

struct Link::Outgoing {
  Header h;
  std::vector<std::byte> payload;
  MPI_Request req[2];
  int n = 0;
};

std::optional<JobPlace> launched_job() {
  // Open MPI's mpirun; PMIx launchers (prterun, srun --mpi=pmix); Slurm's PMI.
  const std::pair<const char*, const char*> vars[] = {{"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"},
                                                      {"PMIX_RANK", "PMIX_SIZE"},
                                                      {"PMI_RANK", "PMI_SIZE"}};
  for (auto [r, s] : vars) {
    auto rank = env_int(r), size = env_int(s);
    if (rank && size && *rank < *size) return JobPlace{*rank, *size};
  }
  return std::nullopt;
}

Link::Link(int* argc, char*** argv) {
  int provided = 0;
  MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided);
  if (provided < MPI_THREAD_SERIALIZED) {
    MPI_Finalize();
    throw std::runtime_error("the MPI library offers no MPI_THREAD_SERIALIZED");
  }
  // Errors come back as codes (checked below) instead of aborting inside the library.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  queued_.resize(static_cast<size_t>(size_));
  heard_.assign(static_cast<size_t>(size_), std::chrono::steady_clock::now());
}

Link::~Link() {
  std::lock_guard lock(mu_);
  // A send to a lost peer never completes, and MPI_Finalize would wait for it: the process leaves the
  // job without it (the launcher then ends the job, which is ending anyway).
  if (!finalized_ && !lost_) MPI_Finalize();
  finalized_ = true;
}

void Link::send(int to, const Header& h0, std::span<const std::byte> payload) {
  if (payload.size() > kMaxPayload) throw std::runtime_error("a message payload over 2 GiB");
  // The message is the link's until the peer has it (a send abandoned below keeps it alive for MPI).
  auto o = std::make_unique<Outgoing>();
  o->h = h0;
  o->h.payload_bytes = payload.size();
  o->payload.assign(payload.begin(), payload.end());
  {
    // Header and payload posted together: a peer pairs each header with the next payload from here.
    std::lock_guard lock(mu_);
    int rc = MPI_Isend(&o->h, sizeof o->h, MPI_BYTE, to, kTagHeader, MPI_COMM_WORLD, &o->req[o->n++]);
    if (rc == MPI_SUCCESS && !o->payload.empty())
      rc = MPI_Isend(o->payload.data(), static_cast<int>(o->payload.size()), MPI_BYTE, to, kTagPayload, MPI_COMM_WORLD,
                     &o->req[o->n++]);
    if (rc != MPI_SUCCESS) throw std::runtime_error("MPI_Isend to rank " + std::to_string(to) + " failed");
  }
  // A large message leaves only once the peer receives it, and the peer may itself be sending to this
  // process: waiting in a blocking send, each holding its link, the two would wait for each other for
  // ever (an expert call going out while the answer to another comes in). So the send waits without
  // the lock and takes in what arrives meanwhile. A peer that takes nothing for the send timeout is
  // lost (its host, its link): the send is abandoned (MPI keeps reading its buffer, so the link keeps
  // it) and the failure thrown, instead of waiting for TCP to give up (minutes).
  const auto start = std::chrono::steady_clock::now();
  for (int idle = 0;;) {
    {
      std::lock_guard lock(mu_);
      int done = 0;
      if (MPI_Testall(o->n, o->req, &done, MPI_STATUSES_IGNORE) != MPI_SUCCESS)
        throw std::runtime_error("MPI_Isend to rank " + std::to_string(to) + " failed");
      if (done) return;
      if (std::chrono::steady_clock::now() - start > send_timeout_) {
        abandoned_.push_back(std::move(o));
        lost_ = true;
        throw std::runtime_error("rank " + std::to_string(to) + " took no message for " +
                                 std::to_string(send_timeout_.count()) + " ms (its host or its link is lost)");
      }
    }
    if (poll_one()) {
      idle = 0;
      continue;
    }
    if (++idle > kSpinProbes) std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

bool Link::poll_one() {
  std::lock_guard lock(mu_);
  int flag = 0;
  MPI_Status st;
  if (MPI_Iprobe(MPI_ANY_SOURCE, kTagHeader, MPI_COMM_WORLD, &flag, &st) != MPI_SUCCESS || !flag) return false;
  Message m;
  m.from = st.MPI_SOURCE;
  if (MPI_Recv(&m.h, sizeof m.h, MPI_BYTE, m.from, kTagHeader, MPI_COMM_WORLD, MPI_STATUS_IGNORE) != MPI_SUCCESS)
    throw std::runtime_error("MPI_Recv from rank " + std::to_string(m.from) + " failed");
  if (m.h.payload_bytes > kMaxPayload) throw std::runtime_error("a message header announces over 2 GiB");
  if (m.h.payload_bytes) {
    // The payload follows its header from the same sender: MPI keeps one sender's messages in order.
    m.payload.resize(m.h.payload_bytes);
    if (MPI_Recv(m.payload.data(), static_cast<int>(m.payload.size()), MPI_BYTE, m.from, kTagPayload, MPI_COMM_WORLD,
                 MPI_STATUS_IGNORE) != MPI_SUCCESS)
      throw std::runtime_error("MPI_Recv from rank " + std::to_string(m.from) + " failed");
  }
  heard_[static_cast<size_t>(m.from)] = std::chrono::steady_clock::now();
  if (beat_op_ && m.h.op == beat_op_) return true;
  queued_[static_cast<size_t>(m.from)].push_back(std::move(m));
  return true;
}

std::optional<Message> Link::receive(int from, std::chrono::milliseconds timeout) {
  return take([from](int f, const Header&) { return f == from; }, timeout);
}

std::optional<Message> Link::receive_any(std::chrono::milliseconds timeout) {
  return take([](int, const Header&) { return true; }, timeout);
}

std::optional<Message> Link::receive_if(const Accept& accept, std::chrono::milliseconds timeout) {
  return take(accept, timeout);
}

// The oldest queued message that `accept` takes (per sender in arrival order), receiving until one is
// there or the time is up.
std::optional<Message> Link::take(const Accept& accept, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (int idle = 0;;) {
    {
      std::lock_guard lock(mu_);
      for (size_t r = 0; r < queued_.size(); r++) {
        auto& q = queued_[r];
        for (auto it = q.begin(); it != q.end(); ++it) {
          if (!accept(static_cast<int>(r), it->h)) continue;
          Message m = std::move(*it);
          q.erase(it);
          return m;
        }
      }
    }
    if (poll_one()) {
      idle = 0;
      continue;
    }
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    // Spin first (a hop takes tens of microseconds), then sleep between probes. Measured on 2 cores,
    // three simulated hosts: sleeping after 100 probes instead of 2000 gave 0.81 of the decode rate
    // (a sleep's wake-up costs more than the probes it saves).
    if (++idle > kSpinProbes) std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

std::chrono::steady_clock::time_point Link::last_heard(int from) const {
  std::lock_guard lock(mu_);
  return heard_[static_cast<size_t>(from)];
}

void Link::abort(int code) {
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);  // MPI_Abort does not return; should it, the exit status is the same
}

}  // namespace segpipe::net
