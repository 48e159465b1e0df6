// The agent of one host of a multi-host run (rank k of the MPI job serves hosts[k]): it runs that host's
// segment processes through the shared-memory transport, exactly as rank 0 runs its own, and answers
// rank 0's requests (net_protocol.h). A request that waits on a segment (ready, run, restart, a port from
// another host) runs on a thread of its own, so that the agent keeps telling rank 0 it is alive; and
// the agent leaves, stopping its segments, when rank 0 has said nothing for the silence limit.
#include <signal.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <exception>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "orchestrator/drivers/shm_transport.h"
#include "orchestrator/multihost/bank_exchange.h"
#include "orchestrator/multihost/job.h"
#include "orchestrator/multihost/media_wire.h"
#include "orchestrator/multihost/net_protocol.h"
#include "orchestrator/multihost/report_json.h"
#include "orchestrator/reports/memory_report.h"
#include "orchestrator/planning/run_plan_json.h"
#include "segments/core/errors.h"

namespace segpipe::multihost {

namespace {

using Clock = std::chrono::steady_clock;
// Before the first plan (and between plans) rank 0 is loading its own side; it beats all the while.
constexpr std::chrono::milliseconds kDefaultSilence{10000};

std::span<const std::byte> bytes_of(const void* p, size_t n) { return {static_cast<const std::byte*>(p), n}; }

// The parent, when it is Open MPI's (orted) or PRRTE's (prted) per-host daemon of this job.
void end_launcher_daemon() {
  const pid_t parent = getppid();
  std::ifstream comm("/proc/" + std::to_string(parent) + "/comm");
  std::string name;
  std::getline(comm, name);
  if (name == "orted" || name == "prted") kill(parent, SIGTERM);
}

Port checked_port(int64_t v) {
  Port p = unpack_port(v);
  const auto k = static_cast<int>(p.kind), b = static_cast<int>(p.boundary.kind);
  if (k < 0 || k > 2 || b < 0 || b > 4) throw InputError("a request names an unknown port");
  return p;
}

// Sends what the host's segments show the observer to rank 0, in the order they show it.
class ForwardObserver : public BoundaryObserver {
 public:
  explicit ForwardObserver(net::Link& link) : link_(link) {}
  void on_tensor(const Boundary& b, const float* data, int64_t rows, int64_t cols) override {
    link_.send(0, net::Header{kTensor, -1, pack_boundary(b), rows, static_cast<int32_t>(cols)},
               bytes_of(data, static_cast<size_t>(rows * cols) * 4));
  }
  void on_route(int layer, const int32_t* experts, const float* weights, int64_t T, int k) override {
    std::vector<std::byte> p(static_cast<size_t>(T * k) * 8);
    std::memcpy(p.data(), experts, static_cast<size_t>(T * k) * 4);
    std::memcpy(p.data() + T * k * 4, weights, static_cast<size_t>(T * k) * 4);
    link_.send(0, net::Header{kRoute, -1, layer, T, k}, p);
  }

 private:
  net::Link& link_;
};

class Agent {
 public:
  explicit Agent(net::Link& link) : link_(link), observer_(link), exec_([this] { executor(); }) {}
  ~Agent() {
    {
      std::lock_guard lock(mu_);
      quit_ = true;
    }
    cv_.notify_all();
    exec_.join();
  }

  int serve() {
    for (;;) {
      // Rank 0's requests, and expert calls from any host (a bank here serves a layers segment there);
      // an answer to a bank call of this host is its proxy's.
      std::optional<net::Message> m = link_.receive_if(
          [](int from, const net::Header& h) {
            return h.op == kBankCall || (from == 0 && h.op != kBankSlots && h.op != kBankFailed);
          },
          std::chrono::milliseconds(100));
      if (!m) {
        if (Clock::now() - link_.last_heard(0) > silence()) {
          // Rank 0 is gone or unreachable: stop this host's segments and leave, and end the launcher's
          // daemon that started this process for the job (it would wait for its lost peer until TCP
          // gives up: minutes with a cut link). Nothing of the job is left on this host.
          close_plan();
          end_launcher_daemon();
          return 3;
        }
        continue;
      }
      if (m->h.op == kExit) {
        close_plan();
        return 0;
      }
      if (m->h.op == kBankCall) {
        serve_bank(std::move(*m));
        continue;
      }
      handle(*m);
    }
  }

 private:
  void executor() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return quit_ || job_; });
      if (quit_) return;
      std::function<void()> job = std::move(job_);
      job_ = nullptr;
      lock.unlock();
      job();
      lock.lock();
      *job_done_ = true;
      cv_.notify_all();
    }
  }

  std::chrono::milliseconds silence() const {
    return t_ ? std::chrono::milliseconds(plan_.timeout_ms) : kDefaultSilence;
  }
  void reply_done(uint32_t op) { link_.send(0, net::Header{kDone, -1, 0, 0, static_cast<int32_t>(op)}); }
  void reply_error(const std::exception& e, int code) {
    const std::string s = e.what();
    link_.send(0, net::Header{kFailed, -1, 0, 0, code}, bytes_of(s.data(), s.size()));
  }

  // The plan's segments stopped (the proxy first: it answers channels in their arena).
  void close_plan() {
    proxy_.reset();
    t_.reset();
  }

  // Runs fn on the executor thread and beats meanwhile, to rank 0 and to `also` (a bank call's caller);
  // returns its failure, if any. One long-lived thread runs them all, because a segment process dies
  // with the thread that started it (PR_SET_PDEATHSIG follows the creating thread): a restarted worker
  // must outlive its restart.
  template <typename Fn>
  std::exception_ptr run_beating(Fn fn, int also = 0) {
    std::exception_ptr error;
    bool done = false;
    {
      std::lock_guard lock(mu_);
      job_ = [&] {
        try {
          fn();
        } catch (...) {
          error = std::current_exception();
        }
      };
      job_done_ = &done;
    }
    cv_.notify_all();
    auto next_beat = Clock::now();
    for (;;) {
      {
        std::unique_lock lock(mu_);
        if (cv_.wait_for(lock, std::chrono::microseconds(200), [&] { return done; })) break;
      }
      if (Clock::now() >= next_beat) {
        // Best effort: the job runs on and holds references to this frame until it is done, so a
        // failed beat must not leave early (a lost peer is noticed by whoever waits on it).
        try {
          link_.send(0, net::Header{kBeat});
          if (also != 0) link_.send(also, net::Header{kBeat});
        } catch (const std::exception&) {
        }
        next_beat = Clock::now() + kBeatEvery;
      }
    }
    return error;
  }

  // Runs fn as run_beating does; answers rank 0 kDone, kLost or kFailed.
  template <typename Fn>
  void wait_on(uint32_t op, Fn fn) {
    std::exception_ptr error = run_beating(fn);
    if (!error) return reply_done(op);
    try {
      std::rethrow_exception(error);
    } catch (const SegmentLost& e) {
      // A bank of another host may be what was lost (bank_exchange.h), its host with it.
      const std::string s = e.what();
      const int32_t host_lost = proxy_ && proxy_->host_lost(e.segment) ? 1 : 0;
      link_.send(0, net::Header{kLost, e.segment, 0, 0, host_lost}, bytes_of(s.data(), s.size()));
    } catch (const InputError& e) {
      reply_error(e, 2);
    } catch (const std::exception& e) {
      reply_error(e, 3);
    }
  }

  // An expert bank of this host called by another host's layers segment: run on the executor (the
  // thread that started the bank, and may restart it), beating to the caller meanwhile.
  void serve_bank(net::Message&& m) {
    const int from = m.from, bank = m.h.segment;
    std::exception_ptr error;
    try {
      if (!t_) throw InputError("an expert call before the plan");
      BankCall c = parse_bank_call(plan_, link_.rank(), t_->config(), t_->max_step_tokens(), std::move(m));
      std::vector<float> rows;
      error = run_beating([&] { rows = run_bank_call(*t_, plan_, c); }, from);
      if (!error) return answer_bank_call(link_, c, rows, t_->config().hidden);
    } catch (...) {
      error = std::current_exception();
    }
    answer_bank_failure(link_, plan_, link_.rank(), from, bank, error);
  }

  void handle(const net::Message& m) {
    const net::Header& h = m.h;
    try {
      if (h.op != kOpen && h.op != kClose && h.op != kReports && !t_)
        throw InputError("a request before the plan (op " + std::to_string(h.op) + ")");
      if (h.segment >= 0 && t_ && h.segment >= static_cast<int>(plan_.segments.size()))
        throw InputError("a request names segment " + std::to_string(h.segment) + ", which the plan does not have");
      switch (h.op) {
        case kOpen: {
          const auto j = nlohmann::json::parse(std::string(reinterpret_cast<const char*>(m.payload.data()), m.payload.size()));
          plan_ = run_plan_from_json(j.at("plan"));
          link_.set_send_timeout(std::chrono::milliseconds(plan_.timeout_ms));
          ck_.reset();
          ShmOptions opt;
          opt.capture_tokens = j.at("capture_tokens");
          opt.host = link_.rank();
          CudaShmOptions cuda;
          const auto& c = j.at("cuda");
          cuda.synthetic = c.at("synthetic");
          cuda.seed = c.at("seed");
          cuda.graphs = c.at("graphs");
          cuda.spin_count = c.at("spin_count");
          close_plan();
          t_ = std::make_unique<ShmTransport>(plan_, opt, cuda);
          proxy_ = std::make_unique<BankProxy>(*t_, plan_, link_.rank(), link_);
          return reply_done(kOpen);
        }
        case kReady:
          return wait_on(kReady, [&] { t_->wait_ready(h.segment); });
        case kBegin: {
          const int64_t T = h.a;
          const size_t id_bytes = static_cast<size_t>(T) * 4;
          if (T < 1 || T > t_->max_step_tokens() || m.payload.size() < id_bytes ||
              (!(h.c & 4) && m.payload.size() != id_bytes))
            throw InputError("a step's ids are malformed");
          ids_.resize(static_cast<size_t>(T));
          std::memcpy(ids_.data(), m.payload.data(), id_bytes);
          StepInput in{ids_.data(), T, h.b, (h.c & 1) != 0, (h.c & 2) ? &observer_ : nullptr, &logits_};
          if (h.c & 4) {
            unpack_step_media(std::span<const std::byte>(m.payload).subspan(id_bytes), T, t_->config().hidden, media_);
            in.media = &media_.media;
          }
          logits_.assign(static_cast<size_t>((in.all_logits ? T : 1) * t_->config().vocab), 0.f);
          t_->begin_step(in);
          return;  // no answer: the next request's answer says whether the step went well
        }
        case kRun: {
          const Stage st{h.segment, checked_port(h.a), checked_port(h.b)};
          return wait_on(kRun, [&, st] {
            t_->run(st);
            if (st.out.is_logits()) link_.send(0, net::Header{kLogits}, bytes_of(logits_.data(), logits_.size() * 4));
          });
        }
        case kSendPort: {
          const Port p = checked_port(h.a);
          const int64_t T = h.b;
          if (!p.is_hidden() || T < 1 || T > t_->max_step_tokens() || h.c < 0 || h.c >= link_.size())
            throw InputError("a port request is malformed");
          link_.send(h.c, net::Header{kPortData},
                     bytes_of(t_->hidden_port(p), static_cast<size_t>(T * t_->config().hidden) * 4));
          return;
        }
        case kRecvPort: {
          const Port p = checked_port(h.a);
          const int64_t T = h.b;
          const int from = h.c;
          if (!p.is_hidden() || T < 1 || T > t_->max_step_tokens() || from < 0 || from >= link_.size())
            throw InputError("a port request is malformed");
          const size_t bytes = static_cast<size_t>(T * t_->config().hidden) * 4;
          // Waited for like a stage (the sender may be slow), but answered only through the next kRun.
          // The sender says nothing else to this host: its silence counts from this request on.
          std::optional<net::Message> data;
          const auto limit = std::chrono::milliseconds(plan_.timeout_ms);
          const Clock::time_point asked = Clock::now();
          while (!(data = link_.receive_if([from](int f, const net::Header& hd) { return f == from && hd.op == kPortData; },
                                           std::chrono::milliseconds(100)))) {
            link_.send(0, net::Header{kBeat});
            if (Clock::now() - std::max(asked, link_.last_heard(from)) > limit) {
              const std::string s = "no data from rank " + std::to_string(from) + " for " +
                                    std::to_string(plan_.timeout_ms) + " ms (" + p.boundary.name() + ")";
              throw RuntimeFailure(s);
            }
          }
          if (data->h.op != kPortData || data->payload.size() != bytes)
            throw RuntimeFailure("a port's data arrived malformed (" + p.boundary.name() + ")");
          std::memcpy(t_->hidden_port(p), data->payload.data(), bytes);
          return;
        }
        case kEncode: {
          const int seg = h.segment;
          if (seg < 0 || !is_encoder(plan_.segments[static_cast<size_t>(seg)].kind) ||
              plan_.segments[static_cast<size_t>(seg)].host != link_.rank())
            throw InputError("an encode request names no encoder segment of this host");
          unpack_encode(m.payload, h.a, h.b, t_->encoder_out_floats(seg), encode_);
          return wait_on(kEncode, [&, seg] {
            t_->encode(seg, encode_.io);
            link_.send(0, net::Header{kEncoded, seg}, bytes_of(encode_.rows.data(), encode_.rows.size() * 4));
          });
        }
        case kRestart:
          return wait_on(kRestart, [&] { t_->restart(h.segment); });
        case kRevive:
          if (h.segment < 0) throw InputError("a revive names no segment");
          t_->revive_elsewhere(h.segment);
          return reply_done(kRevive);
        case kReports: {
          nlohmann::json a = nlohmann::json::array();
          if (t_)
            for (const SegmentReport& r : t_->reports()) {
              nlohmann::json j = report_to_json(r);
              j["memory"] = measure_here(r);
              a.push_back(std::move(j));
            }
          const std::string s = a.dump();
          return link_.send(0, net::Header{kReportsData}, bytes_of(s.data(), s.size()));
        }
        case kClose:
          if (proxy_) proxy_->stop();
          if (t_) t_->shutdown();
          close_plan();
          return reply_done(kClose);
        default:
          throw InputError("unknown request (op " + std::to_string(h.op) + ")");
      }
    } catch (const nlohmann::json::exception& e) {
      reply_error(InputError(std::string("plan from the orchestrator: ") + e.what()), 2);
    } catch (const InputError& e) {
      reply_error(e, 2);
    } catch (const std::exception& e) {
      reply_error(e, 3);
    }
  }

  // The segment's process as this host sees it (rank 0 cannot: the pid is of this machine); a failure
  // travels as {"error": why}, for rank 0 to name the segment and host.
  nlohmann::json measure_here(const SegmentReport& r) {
    try {
      for (const SegmentDesc& d : plan_.segments)
        if (d.name == r.name) {
          if (!ck_) ck_ = Checkpoint::open(plan_.model_dir);
          return segment_memory_to_json(measure_segment_memory(r.pid, *ck_, t_->config(), d));
        }
      return {{"error", "not in the plan"}};
    } catch (const std::exception& e) {
      return {{"error", e.what()}};
    }
  }

  net::Link& link_;
  ForwardObserver observer_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::function<void()> job_;
  bool* job_done_ = nullptr;
  bool quit_ = false;
  std::thread exec_;  // last: started once the members above exist
  RunPlan plan_;
  std::unique_ptr<ShmTransport> t_;
  std::unique_ptr<BankProxy> proxy_;  // after t_: gone before it
  std::shared_ptr<Checkpoint> ck_;  // the plan's, opened for the first memory measurement
  std::vector<int32_t> ids_;
  UnpackedMedia media_;    // the step's, where it has some
  UnpackedEncode encode_;  // the encode request being served
  std::vector<float> logits_;
};

}  // namespace

int serve_agent(net::Link& link) { return Agent(link).serve(); }

}  // namespace segpipe::multihost
